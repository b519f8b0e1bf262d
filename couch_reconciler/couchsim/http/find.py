"""Mango endpoints (mango_httpd.erl): `_find` and `_index`."""

from __future__ import annotations

from aiohttp import web

from ..database import Database
from ..revisions import DESIGN_PREFIX
from ..errors import not_found
from ..mango import SPECIAL_INDEX, find, index_view, json_indexes, new_index
from .base import Request, allow, json_response
from .documents import read_doc


async def find_handler(req: Request, db: Database) -> web.Response:
    allow(req, "POST")
    body = await req.json(require_ctype=True)
    return json_response(find(db, body, lambda entry: read_doc(req, db, entry, entry.winner)))


async def index_handler(req: Request, db: Database) -> web.Response:
    """mango_httpd:handle_index_req/2 for json indexes (stored as `language: query` design docs)."""
    parts = req.parts
    if len(parts) == 2:
        allow(req, "GET", "POST")
        if req.method == "GET":
            indexes = [SPECIAL_INDEX] + json_indexes(db)
            return json_response({"total_rows": len(indexes), "indexes": indexes})
        ddoc_id, name, definition = new_index(await req.json(require_ctype=True))
        ddoc = db.get_design_doc(ddoc_id) or {"_id": ddoc_id, "language": "query", "views": {}}
        view = index_view(definition)
        if ddoc.get("views", {}).get(name) == view:
            return json_response({"result": "exists", "id": ddoc_id, "name": name})
        ddoc.setdefault("views", {})[name] = view
        await db.update_doc(ddoc, req.ctx)
        return json_response({"result": "created", "id": ddoc_id, "name": name})
    allow(req, "DELETE")
    rest = parts[2:]
    if rest and rest[0] == "_design":
        rest = ["_design/" + rest[1]] + rest[2:] if len(rest) > 1 else rest
    if len(rest) != 3:
        raise not_found("missing")
    ddoc_id = rest[0] if rest[0].startswith(DESIGN_PREFIX) else DESIGN_PREFIX + rest[0]
    ddoc = db.get_design_doc(ddoc_id)
    if ddoc is None or rest[1] != "json" or rest[2] not in (ddoc.get("views") or {}):
        raise not_found("missing")
    del ddoc["views"][rest[2]]
    change = ddoc if ddoc["views"] else {"_id": ddoc_id, "_rev": ddoc["_rev"], "_deleted": True}
    await db.update_doc(change, req.ctx)
    return json_response({"ok": True})
