"""`_all_docs`, `_design_docs` and `_local_docs` (couch_mrview all_docs, raw collation of ids)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..database import Database
from ..revisions import DESIGN_PREFIX, DocEntry
from ..errors import bad_request
from ..query import ABSENT, boolean, integer, json_value
from .base import Request, allow, json_response
from .documents import read_doc


def explicit_keys(req: Request, body: dict | None) -> list | None:
    """`keys` from the query string or a POST body; rows then come in the order of the keys."""
    keys = json_value(req.query, "keys")
    if keys is ABSENT and body is not None:
        keys = body.get("keys", ABSENT)
    if keys is ABSENT:
        return None
    if not isinstance(keys, list):
        raise bad_request("`keys` member must be an array.")
    return keys


def all_docs_row(req: Request, db: Database, entry: DocEntry, include_docs: bool, conflicts: bool) -> dict:
    row: dict[str, Any] = {"id": entry.id, "key": entry.id, "value": {"rev": entry.winner.rev}}
    if entry.deleted:
        row["value"]["deleted"] = True
        if include_docs:
            row["doc"] = None
    elif include_docs:
        row["doc"] = read_doc(req, db, entry, entry.winner, conflicts=conflicts)
    return row


def query_options(req: Request, body: dict | None) -> dict[str, Any]:
    """The options every `_all_docs`-like listing reads from the query string, then from a POST body."""
    options = {"include_docs": boolean(req.query, "include_docs"), "descending": boolean(req.query, "descending"),
               "skip": integer(req.query, "skip", 0), "limit": integer(req.query, "limit"),
               "start": json_value(req.query, "start_key", "startkey"),
               "end": json_value(req.query, "end_key", "endkey"),
               "inclusive_end": boolean(req.query, "inclusive_end", True)}
    key = json_value(req.query, "key")
    if key is not ABSENT:
        options["start"] = options["end"] = key
    if body is not None:
        for name in ("limit", "skip", "descending", "include_docs"):
            options[name] = body.get(name, options[name])
        options["start"] = body.get("start_key", body.get("startkey", options["start"]))
        options["end"] = body.get("end_key", body.get("endkey", options["end"]))
    return options


def in_range(ids: list[str], options: dict[str, Any]) -> tuple[int, list[str]]:
    """The ids (sorted, raw collation) between the start and end keys, in the asked direction, and how many
    came before the start: couch_mrview all_docs' row selection before skip and limit."""
    start, end, descending = options["start"], options["end"], options["descending"]
    rows: list[str] = []
    offset = 0
    for docid in reversed(ids) if descending else ids:
        if start is not ABSENT and start is not None:
            if (docid < start) if not descending else (docid > start):
                offset += 1
                continue
        if end is not ABSENT and end is not None:
            past = (docid > end or (docid == end and not options["inclusive_end"])) if not descending else (
                docid < end or (docid == end and not options["inclusive_end"]))
            if past:
                break
        rows.append(docid)
    return offset, rows


def page(rows: list, options: dict[str, Any]) -> list:
    skip, limit = options["skip"], options["limit"]
    return rows[skip:] if limit is None else rows[skip:skip + limit]


async def all_docs(req: Request, db: Database, prefix: str | None = None) -> web.Response:
    """_all_docs and _design_docs (couch_mrview all_docs): raw (byte order) collation of ids."""
    allow(req, "GET", "HEAD", "POST")
    body = await req.json_object(require_ctype=True) if req.method == "POST" else None
    options = query_options(req, body)
    include_docs, conflicts = options["include_docs"], boolean(req.query, "conflicts")
    keys = explicit_keys(req, body)
    if prefix is None:
        total = db.doc_count
    else:
        total = sum(1 for e in (db.docs or {}).values() if e.id.startswith(prefix) and not e.deleted)
    if keys is not None:
        rows = []
        for key in keys:
            entry = db.entry(key) if isinstance(key, str) else None
            rows.append(all_docs_row(req, db, entry, include_docs, conflicts) if entry
                        else {"key": key, "error": "not_found"})
        return json_response({"total_rows": total, "offset": None, "rows": page(rows, options)})
    if prefix is not None:
        options["start"] = prefix if options["start"] is ABSENT else options["start"]
        options["end"] = prefix + "\ufff0" if options["end"] is ABSENT else options["end"]
    ids = [docid for docid in db.ids()
           if not db.docs[docid].deleted and (prefix is None or docid.startswith(prefix))]
    offset, selected = in_range(ids, options)
    return json_response({"total_rows": total, "offset": offset + min(options["skip"], len(selected)),
                          "rows": [all_docs_row(req, db, db.docs[docid], include_docs, conflicts)
                                   for docid in page(selected, options)]})


async def design_docs(req: Request, db: Database) -> web.Response:
    return await all_docs(req, db, DESIGN_PREFIX)


async def local_docs(req: Request, db: Database) -> web.Response:
    """`_local_docs` (couch_mrview all_docs over the local tree): as `_all_docs`, with `null` totals."""
    allow(req, "GET", "HEAD", "POST")
    body = await req.json_object(require_ctype=True) if req.method == "POST" else None
    options = query_options(req, body)
    keys = explicit_keys(req, body)

    def row(docid: str) -> dict:
        doc = db.get_local(docid)
        found = {"id": docid, "key": docid, "value": {"rev": doc["_rev"]}}
        return {**found, "doc": doc} if options["include_docs"] else found

    stored = db.local or {}
    if keys is not None:
        rows = [row(key) if isinstance(key, str) and key in stored else {"key": key, "error": "not_found"}
                for key in keys]
    else:
        rows = [row(docid) for docid in page(in_range(sorted(stored), options)[1], options)]
    return json_response({"total_rows": None, "offset": None, "rows": rows if keys is None else page(rows, options)})
