"""The aiohttp application: CouchDB's routing (path parts split like chttpd, `%2F` kept inside a part),
authentication, authorisation per route (chttpd_auth_request.erl), faults, and error bodies."""

from __future__ import annotations

import asyncio
import sys
import traceback
from typing import Awaitable, Callable
from urllib.parse import unquote

from aiohttp import web

from ..cluster import Cluster
from ..revisions import DESIGN_PREFIX, LOCAL_PREFIX
from ..errors import CouchError, db_not_found, not_found
from ..faults import Fault, FaultInjector
from ..security import check_member, check_server_admin, is_db_admin
from . import all_docs, bulk, changes, databases, find, server
from .attachments import attachment_request
from .base import Request, allow, error_response, json_response
from .config import node
from .design_docs import DESIGN_HANDLERS
from .documents import doc_request, local_request, post_doc
from .scheduler import scheduler
from .session import session

Handler = Callable[[Request], Awaitable[web.StreamResponse]]

GLOBAL_HANDLERS: dict[str, Handler] = {
    "_up": server.up,
    "_uuids": server.uuids,
    "_all_dbs": server.all_dbs,
    "_dbs_info": server.dbs_info,
    "_membership": server.membership,
    "_active_tasks": server.active_tasks,
    "_node": node,
    "_session": session,
    "_db_updates": server.db_updates,
    "_scheduler": scheduler,
}

DB_HANDLERS = {
    "_all_docs": all_docs.all_docs,
    "_design_docs": all_docs.design_docs,
    "_local_docs": all_docs.local_docs,
    "_bulk_docs": bulk.bulk_docs,
    "_bulk_get": bulk.bulk_get,
    "_changes": changes.changes,
    "_revs_diff": bulk.revs_diff,
    "_missing_revs": bulk.missing_revs,
    "_ensure_full_commit": databases.ensure_full_commit,
    "_security": databases.security,
    "_revs_limit": databases.revs_limit,
    "_shards": databases.shards,
    "_find": find.find_handler,
    "_index": find.index_handler,
}

# chttpd_auth_request:server_authorization_check/1: the `_` endpoints anyone may reach; all others need an admin.
OPEN_ENDPOINTS = frozenset({"_up", "_uuids", "_session", "_replicate", "_stats", "_active_tasks", "_all_dbs"})
GUARDED_SYSTEM_DBS = ("_users", "_replicator")


def authorize(req: Request) -> None:
    """chttpd_auth_request:authorize_request_int/1, before any handler runs. Database-level checks (member,
    db admin) need the database and happen in handle_db."""
    parts = req.parts
    if not parts:
        return
    first = parts[0]
    if first in GUARDED_SYSTEM_DBS:
        if (len(parts) == 1 and req.method in ("PUT", "DELETE")) or (
                len(parts) > 1 and parts[1] in ("_all_docs", "_changes")):
            check_server_admin(req.ctx)
        return
    if first.startswith("_"):
        if first in OPEN_ENDPOINTS or (first == "_utils" and req.method in ("GET", "HEAD")):
            return
        check_server_admin(req.ctx)
    elif len(parts) == 1 and req.method in ("PUT", "DELETE"):
        check_server_admin(req.ctx)


async def handle_db(req: Request) -> web.StreamResponse:
    """chttpd_db:handle_request/1: `/{db}/...`, after the member check of chttpd_auth_request."""
    parts = req.parts
    name = parts[0]
    if len(parts) == 1 and req.method in ("PUT", "DELETE"):
        return await (databases.create_db(req, name) if req.method == "PUT" else databases.delete_db(req, name))
    db = req.cluster.dbs.get(name)
    if db is None:
        raise db_not_found()
    await req.cluster.open_dbs.use(db.name, db.q)
    if len(parts) > 1 and parts[1] in ("_compact", "_view_cleanup"):
        # chttpd_auth_request:require_db_admin/1
        if not is_db_admin(req.ctx, db.security):
            raise CouchError(401, "unauthorized", "You are not a server or db admin.")
        allow(req, "POST")
        if parts[1] == "_compact":
            db.compact()
        return json_response({"ok": True}, 202)
    check_member(req.ctx, db.security)
    if len(parts) == 1:
        allow(req, "GET", "HEAD", "POST", "PUT", "DELETE")
        if req.method == "POST":
            return await post_doc(req, db)
        return json_response(db.info())
    section = parts[1]
    handler = DB_HANDLERS.get(section)
    if handler is not None:
        return await handler(req, db)
    if section == "_design":
        if len(parts) < 3:
            raise not_found("missing")
        docid = DESIGN_PREFIX + parts[2]
        if len(parts) > 3 and parts[3] in DESIGN_HANDLERS:
            return await DESIGN_HANDLERS[parts[3]](req, db, docid)
        return await (doc_request(req, db, docid) if len(parts) == 3
                      else attachment_request(req, db, docid, "/".join(parts[3:])))
    if section == "_local":
        if len(parts) != 3:
            raise not_found("missing")
        return await local_request(req, db, LOCAL_PREFIX + parts[2])
    if len(parts) == 2:
        return await doc_request(req, db, section)
    return await attachment_request(req, db, section, "/".join(parts[2:]))


def split_path(raw_path: str) -> list[str]:
    """chttpd: path parts split on `/` before percent-decoding, so `a%2Fb` stays one database name."""
    path = raw_path.split("?", 1)[0]
    return [unquote(part) for part in path.split("/") if part]


async def injected_fault(fault: Fault, http: web.Request) -> web.Response | None:
    if fault.latency:
        await asyncio.sleep(fault.latency)
    if fault.drop:
        if http.transport is not None:
            http.transport.abort()
        raise ConnectionResetError("couchsim fault: connection dropped")
    if fault.status == 409:
        return error_response(CouchError(409, "conflict", "Document update conflict."))
    if fault.status is not None:
        return json_response({"error": "couchsim_fault", "reason": "injected by the test"}, fault.status)
    return None


def make_app(cluster: Cluster, faults: FaultInjector | None = None) -> web.Application:
    async def handle(http: web.Request) -> web.StreamResponse:
        fault = faults.match(http.method, http.raw_path) if faults is not None else None
        if faults is None or fault is None:
            return await serve(http)
        try:
            return await injected_fault(fault, http) or await serve(http)
        finally:
            faults.handled()

    async def serve(http: web.Request) -> web.StreamResponse:
        parts = split_path(http.raw_path)
        try:
            ctx, fresh_cookie = await cluster.auth.authenticate(http.headers, http.cookies)
            req = Request(http, parts, ctx, cluster)
            authorize(req)
            handler = GLOBAL_HANDLERS.get(parts[0], handle_db) if parts else server.welcome
            response = await handler(req)
            if fresh_cookie and not response.prepared and "Set-Cookie" not in response.headers:
                response.headers["Set-Cookie"] = cluster.auth.set_cookie_header(fresh_cookie)
            return response
        except CouchError as exc:
            return error_response(exc)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:  # noqa: BLE001 - CouchDB answers 500 with the reason, and so do we
            traceback.print_exc(file=sys.stderr)
            return json_response({"error": "unknown_error", "reason": repr(exc)}, 500)

    app = web.Application(client_max_size=4 * 1024 ** 3)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
