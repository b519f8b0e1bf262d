"""HTTP front: the aiohttp application, CouchDB's routing (path parts split like chttpd, `%2F` kept inside
a part), authentication, authorisation per route (chttpd_auth_request), and error bodies.

Handlers for server-wide endpoints live here; database and document endpoints in handlers_db.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
import traceback
import uuid
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

from aiohttp import web

from . import COUCHDB_VERSION
from .auth import session_info, unauthorized_login
from .cluster import Cluster
from .config import BLACKLISTED_SECTIONS
from .database import format_seq, parse_since, seq_number
from .errors import CouchError, bad_request, method_not_allowed, not_found
from .faults import FaultInjector
from .scheduler import split_scheduler_docs_path
from .security import UserCtx, check_server_admin

SERVER_HEADER = f"CouchDB/{COUCHDB_VERSION} (Erlang OTP/25)"
JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "must-revalidate", "Server": SERVER_HEADER}
FEATURES = ["access-ready", "partitioned", "pluggable-storage-engines", "reshard", "scheduler"]


class Request:
    """What a handler needs: the aiohttp request, CouchDB's path parts, the user and the cluster."""
    __slots__ = ("http", "parts", "ctx", "cluster", "query", "method")

    def __init__(self, http: web.Request, parts: list[str], ctx: UserCtx, cluster: Cluster):
        self.http = http
        self.parts = parts
        self.ctx = ctx
        self.cluster = cluster
        self.query = http.query
        self.method = http.method

    async def json(self, require_ctype: bool = False) -> Any:
        """chttpd:json_body/1 (and validate_ctype/2 where CouchDB checks it)."""
        if require_ctype and not self.http.content_type.startswith("application/json"):
            raise CouchError(415, "bad_content_type", "Content-Type must be application/json")
        raw = await self.http.read()
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise bad_request("invalid UTF-8 JSON")

    async def json_object(self, require_ctype: bool = False) -> dict:
        body = await self.json(require_ctype)
        if not isinstance(body, dict):
            raise bad_request("Request body must be a JSON object")
        return body

    def absolute(self, path: str) -> str:
        return f"{self.http.scheme}://{self.http.host}{path}"


def dumps(body: Any) -> bytes:
    return (json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=status,
                        headers={**JSON_HEADERS, **headers} if headers else JSON_HEADERS)


def etag(value: Any) -> str:
    """couch_httpd:make_etag/1: a quoted hash of the answer's term."""
    return '"' + hashlib.md5(dumps(value)).hexdigest() + '"'


def error_response(exc: CouchError) -> web.Response:
    return json_response(exc.body(), exc.status, exc.headers or None)


def bool_param(req: Request, name: str, default: bool = False) -> bool:
    value = req.query.get(name)
    if value is None:
        return default
    if value in ("true", "false"):
        return value == "true"
    raise CouchError(400, "query_parse_error", f'Invalid boolean parameter: "{value}"')


def int_param(req: Request, name: str, default: int | None = None) -> int | None:
    value = req.query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise CouchError(400, "query_parse_error", f'Invalid value for integer: "{value}"')
    if number < 0:
        raise CouchError(400, "query_parse_error", f'Invalid value for positive integer: "{value}"')
    return number


def json_param(req: Request, *names: str) -> Any:
    """The first of `names` present, JSON-decoded (startkey, start_key, keys...). Returns ... when absent."""
    for name in names:
        value = req.query.get(name)
        if value is not None:
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request("invalid UTF-8 JSON")
    return ...


# ---------------------------------------------------------------------------------------------- server
async def welcome(req: Request) -> web.Response:
    allow(req, "GET", "HEAD")
    return json_response({"couchdb": "Welcome", "version": COUCHDB_VERSION, "git_sha": "6e5ad2a5c",
                          "uuid": req.cluster.uuid, "features": FEATURES,
                          "vendor": {"name": "The Apache Software Foundation"}})


async def up(req: Request) -> web.Response:
    allow(req, "GET", "HEAD")
    return json_response({"status": "ok", "seeds": {}})


async def uuids(req: Request) -> web.Response:
    allow(req, "GET", "HEAD")
    count = int_param(req, "count", 1)
    if count > req.cluster.config.get_int("uuids", "max_count"):
        raise bad_request("count parameter too large")
    ids = [uuid.uuid4().hex for _ in range(count)]
    return json_response({"uuids": ids}, headers={
        "Cache-Control": "must-revalidate, no-cache", "Pragma": "no-cache", "ETag": etag(ids),
        "Expires": "Fri, 01 Jan 1990 00:00:00 GMT"})


def key_range(req: Request) -> dict:
    start = json_param(req, "start_key", "startkey")
    end = json_param(req, "end_key", "endkey")
    return {"start": None if start is ... else start, "end": None if end is ... else end,
            "descending": bool_param(req, "descending"), "inclusive_end": bool_param(req, "inclusive_end", True),
            "skip": int_param(req, "skip", 0), "limit": int_param(req, "limit")}


def page_names(names: list[str], rng: dict) -> list[str]:
    """_all_dbs / GET _dbs_info paging (fabric_view_all_dbs): key range, then skip and limit."""
    ordered = sorted(names, reverse=rng["descending"])
    start, end = rng["start"], rng["end"]

    def within(name: str) -> bool:
        if rng["descending"]:
            after_start = start is None or name <= start
            before_end = end is None or (name >= end if rng["inclusive_end"] else name > end)
        else:
            after_start = start is None or name >= start
            before_end = end is None or (name <= end if rng["inclusive_end"] else name < end)
        return after_start and before_end

    selected = [n for n in ordered if within(n)][rng["skip"]:]
    return selected if rng["limit"] is None else selected[: rng["limit"]]


async def all_dbs(req: Request) -> web.Response:
    allow(req, "GET", "HEAD")
    if req.cluster.config.get_bool("chttpd", "admin_only_all_dbs"):
        check_server_admin(req.ctx)
    names = page_names(list(req.cluster.dbs), key_range(req))
    return json_response(names, headers={"ETag": etag(names)})


async def dbs_info(req: Request) -> web.Response:
    allow(req, "GET", "HEAD", "POST")
    cluster = req.cluster
    if req.method == "POST":
        # chttpd_misc:handle_dbs_info_req/1
        body = await req.json_object(require_ctype=True)
        keys = body.get("keys", ...)
        if keys is ...:
            raise bad_request("`keys` member must exist.")
        if not isinstance(keys, list):
            raise bad_request("`keys` member must be an array.")
        if len(keys) > cluster.config.get_int("chttpd", "max_db_number_for_dbs_info_req"):
            raise bad_request("too_many_keys")
        rows = []
        for name in keys:
            db = cluster.dbs.get(name) if isinstance(name, str) else None
            rows.append({"key": name, "info": db.info()} if db else {"key": name, "error": "not_found"})
        return json_response(rows)
    names = page_names(list(cluster.dbs), key_range(req))
    return json_response([{"key": n, "info": cluster.dbs[n].info()} for n in names])


async def membership(req: Request) -> web.Response:
    allow(req, "GET", "HEAD")
    return json_response({"all_nodes": req.cluster.node_names, "cluster_nodes": req.cluster.node_names})


async def active_tasks(req: Request) -> web.Response:
    allow(req, "GET", "HEAD")
    check_server_admin(req.ctx)  # chttpd_misc:handle_task_status_req/1
    return json_response(req.cluster.replicator.active_tasks())


async def node(req: Request) -> web.Response:
    """chttpd_node:handle_node_req/1 for `_config`; `/_node/{node}` alone names the node."""
    parts = req.parts
    if len(parts) == 1:
        raise bad_request("Incomplete path to _node request")
    if len(parts) == 2:
        if parts[1] != "_local":
            raise not_found("missing")
        return json_response({"name": req.cluster.local_node})
    config = req.cluster.node_config(parts[1])
    if parts[2] != "_config":
        if parts[2] in ("_stats", "_system", "_versions", "_prometheus"):
            raise CouchError(501, "not_implemented", f"couchsim keeps no {parts[2]}")
        raise not_found("missing")
    if len(parts) == 3:
        allow(req, "GET")
        return json_response({section: dict(values) for section, values in config.sections.items()})
    section = parts[3]
    if len(parts) == 4:
        if section == "_reload":
            allow(req, "POST")
            return json_response({"ok": True})
        allow(req, "GET")
        return json_response(config.section(section))
    if len(parts) > 5:
        raise not_found("missing")
    key = parts[4]
    allow(req, "GET", "PUT", "DELETE")
    if req.method == "GET":
        value = config.get_set(section, key)
        if value is None:
            raise not_found("unknown_config_value")
        return json_response(value)
    if section in BLACKLISTED_SECTIONS:
        raise CouchError(403, "forbidden", "Config section blacklisted for modification over HTTP API.")
    if req.method == "PUT":
        value = await req.json()
        if not isinstance(value, str):
            raise bad_request("config values must be JSON strings")
        old = config.set(section, key, value.strip())
        return json_response(old if old is not None else "")
    old = config.get_set(section, key)
    if old is None:
        raise not_found("unknown_config_value")
    config.delete(section, key)
    return json_response(old)


async def session(req: Request) -> web.Response:
    """couch_httpd_auth:handle_session_req/2."""
    auth = req.cluster.auth
    if req.method in ("GET", "HEAD"):
        if req.ctx.name is None and req.query.get("basic") == "true":
            raise CouchError(401, "unauthorized", "Please login.")
        return json_response(session_info(req.ctx))
    if req.method == "DELETE":
        return json_response({"ok": True}, headers={"Set-Cookie": auth.set_cookie_header("", expire=True)})
    allow(req, "GET", "HEAD", "POST", "DELETE")
    ctype = req.http.content_type
    if ctype.startswith("application/x-www-form-urlencoded"):
        form = await req.http.post()
        name, password = form.get("name"), form.get("password")
    elif ctype.startswith("application/json"):
        body = await req.json_object()
        name, password = body.get("name"), body.get("password")
    else:
        raise CouchError(415, "bad_content_type",
                         "Content-Type must be application/x-www-form-urlencoded or application/json")
    if not isinstance(name, str):
        raise bad_request("request body must contain a username")
    ctx = await auth.verify(name, password) if isinstance(password, str) else None
    if ctx is None:
        # couch_httpd_auth:handle_session_req/2 clears the cookie along with the 401
        error = unauthorized_login()
        error.headers["Set-Cookie"] = auth.set_cookie_header("", expire=True)
        raise error
    headers = {"Set-Cookie": auth.set_cookie_header(auth.make_cookie(name))}
    next_url = req.query.get("next")
    if next_url:
        return json_response({"ok": True, "name": ctx.name, "roles": ctx.roles}, 302, {**headers, "Location": next_url})
    return json_response({"ok": True, "name": ctx.name, "roles": ctx.roles}, headers=headers)


async def db_updates(req: Request) -> web.StreamResponse:
    """global_changes_httpd: rows `{db_name, type, seq}` from the `_global_changes` database."""
    allow(req, "GET", "HEAD", "POST")
    cluster = req.cluster
    store = cluster.get_db("_global_changes")
    feed = req.query.get("feed", "normal")
    position = parse_since(req.query.get("since"), cluster.db_updates_seq)
    timeout = int_param(req, "timeout", 60000) / 1000
    limit = int_param(req, "limit")

    def rows_after() -> list[dict]:
        # db_updates keeps one row per (type, db), re-inserted on each event: dict order is seq order
        found = []
        for key, row_seq in cluster.db_updates.items():
            if row_seq > position:
                kind, _, name = key.partition(":")
                found.append({"db_name": name, "type": kind, "seq": format_seq(row_seq)})
        return found if limit is None else found[:limit]

    def advance(last: int) -> None:
        nonlocal position
        position = last

    if feed == "continuous":
        return await stream_feed(req, store, rows_after, timeout, req.query.get("heartbeat"),
                                 lambda last: {"last_seq": format_seq(max(last, position))}, advance)
    rows = rows_after()
    if feed == "longpoll" and not rows:
        await store.wait_for_change(timeout)
        rows = rows_after()
    last = seq_number(rows[-1]["seq"]) if rows else position
    return json_response({"results": rows, "last_seq": format_seq(last)})


async def stream_feed(req: Request, db, rows_since: Callable[[], list[dict]], timeout: float,
                      heartbeat: str | None, closing: Callable[[int], dict], advance: Callable[[int], None]
                      ) -> web.StreamResponse:
    """A continuous feed: one JSON row per line, newlines as heartbeats, a closing line on timeout.

    `rows_since()` returns the rows after the feed's position; `advance(seq)` moves the position past what
    was sent (callers that filter keep their own cursor)."""
    response = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "must-revalidate",
                                           "Server": SERVER_HEADER})
    response.enable_chunked_encoding()
    await response.prepare(req.http)
    beat = None
    if heartbeat is not None:
        beat = 60.0 if heartbeat in ("true", "") else max(int(heartbeat), 1) / 1000
    deadline = None if (beat is not None and "timeout" not in req.query) else time.monotonic() + timeout
    last = 0
    while req.cluster.dbs.get(db.name) is db:  # a deleted database ends its feeds, as in CouchDB
        rows = rows_since()
        for row in rows:
            await response.write(dumps(row))
            last = max(last, seq_number(row["seq"]))
        if rows:
            advance(last)
        wait = beat
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = remaining if wait is None else min(wait, remaining)
        changed = await db.wait_for_change(wait)
        if not changed and beat is not None and (deadline is None or time.monotonic() < deadline):
            await response.write(b"\n")
    await response.write(dumps(closing(last)))
    await response.write_eof()
    return response


async def scheduler(req: Request) -> web.Response:
    allow(req, "GET", "HEAD")
    hooks = req.cluster.replicator
    parts = req.parts
    if len(parts) >= 2 and parts[1] == "jobs":
        return json_response(hooks.scheduler_job(parts[2]) if len(parts) == 3 else hooks.scheduler_jobs(req.query))
    if len(parts) >= 2 and parts[1] == "docs":
        db_name, doc_id = split_scheduler_docs_path(parts[2:])
        if doc_id is None:
            return json_response(hooks.scheduler_docs(db_name, req.query))
        return json_response(hooks.scheduler_doc(db_name, doc_id))
    raise not_found("missing")


# chttpd_auth_request:server_authorization_check/1: the `_` endpoints anyone may reach; all others need an admin.
OPEN_ENDPOINTS = frozenset({"_up", "_uuids", "_session", "_replicate", "_stats", "_active_tasks", "_all_dbs"})
GUARDED_SYSTEM_DBS = ("_users", "_replicator")


def authorize(req: Request) -> None:
    """chttpd_auth_request:authorize_request_int/1, before any handler runs. Database-level checks (member,
    db admin) need the database and happen in handlers_db."""
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


def allow(req: Request, *methods: str) -> None:
    if req.method not in methods:
        raise method_not_allowed(",".join(methods))


GLOBAL_HANDLERS: dict[str, Callable[[Request], Awaitable[web.StreamResponse]]] = {
    "_up": up,
    "_uuids": uuids,
    "_all_dbs": all_dbs,
    "_dbs_info": dbs_info,
    "_membership": membership,
    "_active_tasks": active_tasks,
    "_node": node,
    "_session": session,
    "_db_updates": db_updates,
    "_scheduler": scheduler,
}


# ---------------------------------------------------------------------------------------------- app
def split_path(raw_path: str) -> list[str]:
    """chttpd: path parts split on `/` before percent-decoding, so `a%2Fb` stays one database name."""
    path = raw_path.split("?", 1)[0]
    return [unquote(part) for part in path.split("/") if part]


def make_app(cluster: Cluster, faults: FaultInjector | None = None) -> web.Application:
    from .handlers_db import handle_db

    async def handle(http: web.Request) -> web.StreamResponse:
        if faults is not None:
            fault = faults.match(http.method, http.raw_path)
            if fault is not None:
                if fault.latency:
                    await asyncio.sleep(fault.latency)
                if fault.drop:
                    if http.transport is not None:
                        http.transport.abort()
                    raise ConnectionResetError("couchsim fault: connection dropped")
                if fault.status == 409:
                    return error_response(CouchError(409, "conflict", "Document update conflict."))
                if fault.status is not None:
                    return json_response({"error": "couchsim_fault", "reason": "injected by the test"},
                                         fault.status)
        parts = split_path(http.raw_path)
        try:
            ctx, fresh_cookie = await cluster.auth.authenticate(http.headers, http.cookies)
            req = Request(http, parts, ctx, cluster)
            authorize(req)
            handler = GLOBAL_HANDLERS.get(parts[0], handle_db) if parts else welcome
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
