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


async def all_docs(req: Request, db: Database, prefix: str | None = None) -> web.Response:
    """_all_docs and _design_docs (couch_mrview all_docs): raw (byte order) collation of ids."""
    allow(req, "GET", "HEAD", "POST")
    body = await req.json_object(require_ctype=True) if req.method == "POST" else None
    include_docs = boolean(req.query, "include_docs")
    conflicts = boolean(req.query, "conflicts")
    descending = boolean(req.query, "descending")
    skip = integer(req.query, "skip", 0)
    limit = integer(req.query, "limit")
    if body is not None:
        limit = body.get("limit", limit)
        skip = body.get("skip", skip)
        descending = body.get("descending", descending)
        include_docs = body.get("include_docs", include_docs)
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
        rows = rows[skip:] if limit is None else rows[skip:skip + limit]
        return json_response({"total_rows": total, "offset": None, "rows": rows})
    start = json_value(req.query, "start_key", "startkey")
    end = json_value(req.query, "end_key", "endkey")
    key = json_value(req.query, "key")
    if key is not ABSENT:
        start = end = key
    if body is not None:
        start = body.get("start_key", body.get("startkey", start))
        end = body.get("end_key", body.get("endkey", end))
    inclusive_end = boolean(req.query, "inclusive_end", True)
    if prefix is not None:
        low, high = prefix, prefix + "\ufff0"
        start = low if start is ABSENT else start
        end = high if end is ABSENT else end
    ids = db.ids()
    ordered = reversed(ids) if descending else ids
    rows = []
    offset = 0
    for docid in ordered:
        entry = db.docs[docid]
        if entry.deleted or (prefix is not None and not docid.startswith(prefix)):
            continue
        if start is not ABSENT and start is not None:
            if (docid < start) if not descending else (docid > start):
                offset += 1
                continue
        if end is not ABSENT and end is not None:
            past = (docid > end or (docid == end and not inclusive_end)) if not descending else (
                docid < end or (docid == end and not inclusive_end))
            if past:
                break
        rows.append(entry)
    selected = rows[skip:] if limit is None else rows[skip:skip + limit]
    return json_response({"total_rows": total, "offset": offset + min(skip, len(rows)),
                          "rows": [all_docs_row(req, db, e, include_docs, conflicts) for e in selected]})


async def design_docs(req: Request, db: Database) -> web.Response:
    return await all_docs(req, db, DESIGN_PREFIX)


async def local_docs(req: Request, db: Database) -> web.Response:
    allow(req, "GET", "HEAD", "POST")
    include_docs = boolean(req.query, "include_docs")
    rows = []
    for docid in sorted(db.local or {}):
        doc = db.get_local(docid)
        row = {"id": docid, "key": docid, "value": {"rev": doc["_rev"]}}
        if include_docs:
            row["doc"] = doc
        rows.append(row)
    return json_response({"total_rows": None, "offset": None, "rows": rows})
