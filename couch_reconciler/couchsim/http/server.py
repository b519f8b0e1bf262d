"""Server-wide endpoints (chttpd_misc.erl, global_changes_httpd.erl): `/`, `_up`, `_uuids`, `_all_dbs`,
`_dbs_info`, `_membership`, `_active_tasks`, `_db_updates`."""

from __future__ import annotations

import uuid

from aiohttp import web

from .. import COUCHDB_VERSION
from ..database import format_seq, parse_since, seq_number
from ..errors import bad_request
from ..query import boolean, integer, json_value, ABSENT
from ..security import check_server_admin
from .base import Request, allow, etag, json_response
from .feeds import stream_feed

FEATURES = ["access-ready", "partitioned", "pluggable-storage-engines", "reshard", "scheduler"]


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
    count = integer(req.query, "count", 1)
    if count > req.cluster.config.get_int("uuids", "max_count"):
        raise bad_request("count parameter too large")
    ids = [uuid.uuid4().hex for _ in range(count)]
    return json_response({"uuids": ids}, headers={
        "Cache-Control": "must-revalidate, no-cache", "Pragma": "no-cache", "ETag": etag(ids),
        "Expires": "Fri, 01 Jan 1990 00:00:00 GMT"})


def key_range(req: Request) -> dict:
    start = json_value(req.query, "start_key", "startkey")
    end = json_value(req.query, "end_key", "endkey")
    return {"start": None if start is ABSENT else start, "end": None if end is ABSENT else end,
            "descending": boolean(req.query, "descending"), "inclusive_end": boolean(req.query, "inclusive_end", True),
            "skip": integer(req.query, "skip", 0), "limit": integer(req.query, "limit")}


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
        keys = body.get("keys", ABSENT)
        if keys is ABSENT:
            raise bad_request("`keys` member must exist.")
        if not isinstance(keys, list):
            raise bad_request("`keys` member must be an array.")
        if len(keys) > cluster.config.get_int("chttpd", "max_db_number_for_dbs_info_req"):
            raise bad_request("too_many_keys")
        rows = []
        for name in keys:
            db = cluster.dbs.get(name) if isinstance(name, str) else None
            if db is None:
                rows.append({"key": name, "error": "not_found"})
            else:
                await cluster.open_dbs.use(db.name, db.q)  # fabric:get_db_info/1 opens every shard
                rows.append({"key": name, "info": db.info()})
        return json_response(rows)
    rows = []
    for name in page_names(list(cluster.dbs), key_range(req)):
        db = cluster.dbs[name]
        await cluster.open_dbs.use(db.name, db.q)
        rows.append({"key": name, "info": db.info()})
    return json_response(rows)


async def membership(req: Request) -> web.Response:
    allow(req, "GET", "HEAD")
    return json_response({"all_nodes": req.cluster.node_names, "cluster_nodes": req.cluster.node_names})


async def active_tasks(req: Request) -> web.Response:
    allow(req, "GET", "HEAD")
    check_server_admin(req.ctx)  # chttpd_misc:handle_task_status_req/1
    return json_response(req.cluster.replicator.active_tasks())


async def db_updates(req: Request) -> web.StreamResponse:
    """global_changes_httpd: rows `{db_name, type, seq}` from the `_global_changes` database."""
    allow(req, "GET", "HEAD", "POST")
    cluster = req.cluster
    store = cluster.get_db("_global_changes")
    feed = req.query.get("feed", "normal")
    position = parse_since(req.query.get("since"), cluster.db_updates_seq)
    timeout = integer(req.query, "timeout", 60000) / 1000
    limit = integer(req.query, "limit")

    def rows_after() -> list[dict]:
        # db_updates keeps one row per (type, db), re-inserted on each event: dict order is seq order
        nonlocal position
        found = []
        for key, row_seq in cluster.db_updates.items():
            if row_seq > position:
                kind, _, name = key.partition(":")
                found.append({"db_name": name, "type": kind, "seq": format_seq(row_seq)})
        found = found if limit is None else found[:limit]
        if found:
            position = seq_number(found[-1]["seq"])
        return found

    if feed == "continuous":
        return await stream_feed(req, store, rows_after, timeout, req.query.get("heartbeat"),
                                 lambda: {"last_seq": format_seq(position)})
    rows = rows_after()
    if feed == "longpoll" and not rows:
        await store.wait_for_change(timeout)
        rows = rows_after()
    return json_response({"results": rows, "last_seq": format_seq(position)})
