"""`/{db}/_changes` (chttpd_db:handle_changes_req/2) with the built-in and design-document filters."""

from __future__ import annotations

from typing import Any, Callable

from aiohttp import web

from ..database import Database, format_seq
from ..revisions import DESIGN_PREFIX, DocEntry, RevNode
from ..errors import bad_request, not_found
from ..mango import Selector
from ..query import ABSENT, boolean, integer, json_value
from .base import Request, allow, json_response
from .documents import read_doc
from .feeds import stream_feed


async def changes(req: Request, db: Database) -> web.StreamResponse:
    """chttpd_db:handle_changes_req/2 with the built-in and design-document filters."""
    allow(req, "GET", "HEAD", "POST")
    body = await req.json_object() if req.method == "POST" else {}
    feed = req.query.get("feed", "normal")
    if feed not in ("normal", "longpoll", "continuous", "eventsource"):
        raise bad_request("Supported `feed` types: normal, continuous, live, longpoll, eventsource")
    descending = boolean(req.query, "descending")
    number, marks = db.parse_position(req.query.get("since", body.get("since")))
    if descending and "since" not in req.query:
        number, marks = 0, [0] * db.q
    limit = integer(req.query, "limit")
    include_docs = boolean(req.query, "include_docs")
    conflicts = boolean(req.query, "conflicts")
    att_encoding_info = boolean(req.query, "att_encoding_info")
    all_leaves = req.query.get("style") == "all_docs"
    timeout = integer(req.query, "timeout", 60000) / 1000
    accept = change_filter(req, db, body)

    def passing(entry: DocEntry) -> list[RevNode]:
        """The revisions a filter lets through: couch_changes:filter/5 matches each one style lists (the winner,
        or every leaf with style=all_docs), tombstones included, and the row lists only those that pass."""
        leaves = sorted(entry.leaves, key=lambda n: (n.pos, n.digest), reverse=True) if all_leaves else [entry.winner]
        return [node for node in leaves if accept(entry, node)]

    def row(entry: DocEntry, leaves: list[RevNode], seq: str) -> dict:
        out: dict[str, Any] = {"seq": seq, "id": entry.id, "changes": [{"rev": n.rev} for n in leaves]}
        if entry.deleted:
            out["deleted"] = True
        if include_docs:
            out["doc"] = read_doc(req, db, entry, entry.winner, conflicts=conflicts,
                                  att_encoding_info=att_encoding_info)
        return out

    def last_seq() -> str:
        return format_seq(number, marks)

    def rows_after() -> tuple[list[dict], int]:
        """(rows, changes left after the last one looked at); the position moves past what was looked at.
        A row's seq is the feed's position after it: used as `since`, it resumes right there."""
        nonlocal number, marks
        changed = db.changes_after(marks, descending)
        rows = []
        for index, entry in enumerate(changed):
            if limit is not None and len(rows) >= limit:
                return rows, len(changed) - index
            if descending:
                number, marks = entry.seq, [entry.seq] * db.q
            else:
                # The number a q > 1 seq starts with sums its shards' seqs: it grows with every row.
                number = entry.seq if db.q == 1 else number + 1
                marks = marks.copy()
                marks[entry.shard] = entry.seq
            leaves = passing(entry)
            if leaves:
                rows.append(row(entry, leaves, last_seq()))
        if not descending:
            number, marks = db.seq, [db.seq] * db.q
        return rows, 0

    if feed == "continuous":
        return await stream_feed(req, db, lambda: rows_after()[0], timeout, req.query.get("heartbeat"),
                                 lambda: {"last_seq": last_seq(), "pending": 0})
    rows, pending = rows_after()
    if feed == "longpoll" and not rows:
        while await db.wait_for_change(timeout):
            rows, pending = rows_after()
            if rows:
                break
    return json_response({"results": rows, "last_seq": last_seq(), "pending": pending})


def change_filter(req: Request, db: Database, body: dict) -> Callable[[DocEntry, RevNode], bool]:
    """Whether one revision of a document passes the request's filter."""
    name = req.query.get("filter")
    if name is None:
        return lambda entry, node: True
    if name == "_doc_ids":
        ids = json_value(req.query, "doc_ids")
        if ids is ABSENT:
            ids = body.get("doc_ids")
        if not isinstance(ids, list):
            raise bad_request("`doc_ids` filter parameter is not a list of doc ids.")
        wanted = set(i for i in ids if isinstance(i, str))
        return lambda entry, node: entry.id in wanted
    if name == "_design":
        return lambda entry, node: entry.id.startswith(DESIGN_PREFIX)
    if name == "_selector":
        if "selector" not in body:
            raise bad_request("Selector must be specified in POST payload")
        selector = Selector(body["selector"])
        # couch_changes:filter/5 matches couch_doc:to_json_obj of the revision: a tombstone is
        # {"_id", "_rev", "_deleted": true} plus what its body kept, so a selector can let deletions through.
        return lambda entry, node: selector.matches(db.doc_json(entry, node))
    if name == "_view":
        return req.cluster.design.view_filter(db, req.query.get("view", ""))
    ddoc_name, _, filter_name = name.partition("/")
    if not filter_name:
        raise bad_request("`filter` parameter is not correct: it must be `_doc_ids`, `_selector`, `_design`, "
                          "`_view` or `designname/filtername`")
    ddoc = db.get_design_doc(DESIGN_PREFIX + ddoc_name)
    if ddoc is None:
        raise not_found("missing")
    if filter_name not in (ddoc.get("filters") or {}):
        raise not_found(f"missing json key: {filter_name}")
    # couch_httpd_external:json_req_obj/2, the fields a filter reads
    req_json = {
        "method": req.method,
        "path": list(req.parts),
        "query": dict(req.query),
        "headers": dict(req.http.headers),
        "peer": req.http.remote,
        "userCtx": {"db": db.name, **req.ctx.json()},
        "secObj": db.security,
    }
    return req.cluster.design.change_filter(db, ddoc, filter_name, req_json)
