"""Design document endpoints (chttpd_db.erl, couch_mrview_http.erl): `_view` and `_info`; `_show`, `_list`,
`_update` and `_rewrite` are not served."""

from __future__ import annotations

from aiohttp import web

from ..database import Database
from ..errors import CouchError, not_found
from .base import Request, allow, json_response


async def view_request(req: Request, db: Database, ddoc_id: str) -> web.Response:
    if len(req.parts) != 5:
        raise not_found("missing")
    allow(req, "GET", "HEAD", "POST")
    ddoc = db.get_design_doc(ddoc_id)
    if ddoc is None:
        raise not_found("missing")
    keys = None
    if req.method == "POST":
        body = await req.json_object(require_ctype=True)
        keys = body.get("keys")
    return json_response(await req.cluster.design.query_view(db, ddoc, req.parts[4], dict(req.query), keys,
                                                             req.ctx))


async def info_request(req: Request, db: Database, ddoc_id: str) -> web.Response:
    allow(req, "GET", "HEAD")
    ddoc = db.get_design_doc(ddoc_id)
    if ddoc is None:
        raise not_found("missing")
    return json_response(await req.cluster.design.design_info(db, ddoc))


async def javascript_only(req: Request, db: Database, ddoc_id: str) -> web.Response:
    if db.get_design_doc(ddoc_id) is None:
        raise not_found("missing")
    raise CouchError(501, "not_implemented", f"couchsim does not serve {req.parts[3]}")


DESIGN_HANDLERS = {
    "_view": view_request,
    "_info": info_request,
    "_show": javascript_only,
    "_list": javascript_only,
    "_update": javascript_only,
    "_rewrite": javascript_only,
}
