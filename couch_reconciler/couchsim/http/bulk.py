"""Bulk endpoints the replicator and clients use (chttpd_db.erl): `_bulk_docs`, `_bulk_get`, `_revs_diff`,
`_missing_revs`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..database import Database
from ..revisions import parse_rev
from ..errors import CouchError, bad_request
from ..query import boolean
from .base import Request, allow, json_response
from .documents import doc_options, parse_doc_body, read_doc


async def bulk_docs(req: Request, db: Database) -> web.Response:
    allow(req, "POST")
    body = await req.json_object(require_ctype=True)
    if "docs" not in body:
        raise bad_request("POST body must include `docs` parameter.")
    if not isinstance(body["docs"], list):
        raise bad_request("`docs` parameter must be an array.")
    new_edits = body.get("new_edits", True)
    docs = [parse_doc_body(req, db, doc) for doc in body["docs"]]
    results = await db.update_docs(docs, req.ctx, new_edits=new_edits is not False)
    rows = []
    for doc, result in zip(docs, results):
        if isinstance(result, CouchError):
            rows.append({"id": doc["_id"], "error": result.error, "reason": result.reason})
        elif new_edits is not False:
            rows.append(result)
    return json_response(rows, 201)


async def bulk_get(req: Request, db: Database) -> web.Response:
    """chttpd_db:db_req for _bulk_get (JSON answer)."""
    allow(req, "POST")
    body = await req.json_object(require_ctype=True)
    docs = body.get("docs")
    if not isinstance(docs, list):
        raise bad_request("Missing JSON list of 'docs'.")
    options = doc_options(req)
    latest = boolean(req.query, "latest")
    results = []
    for spec in docs:
        if not isinstance(spec, dict) or not isinstance(spec.get("id"), str):
            results.append({"id": None, "docs": [{"error": {"id": None, "rev": None, "error": "bad_request",
                                                            "reason": "document id missed"}}]})
            continue
        docid, rev = spec["id"], spec.get("rev")
        spec_options = dict(options)
        if "atts_since" in spec:
            spec_options["atts_since"] = spec["atts_since"]
        try:
            entry, node = db.open_doc(docid, rev, latest)
            answer = {"ok": read_doc(req, db, entry, node, **spec_options)}
        except CouchError as exc:
            answer = {"error": {"id": docid, "rev": rev if rev is not None else "undefined", "error": exc.error,
                                "reason": exc.reason}}
        results.append({"id": docid, "docs": [answer]})
    return json_response({"results": results})


async def revs_diff(req: Request, db: Database) -> web.Response:
    allow(req, "POST")
    body = await req.json_object(require_ctype=True)
    answer = {}
    for docid, revs in body.items():
        if not isinstance(revs, list):
            raise bad_request("Document revisions must be an array")
        entry = db.entry(docid)
        known = entry.revs if entry else {}
        missing = [r for r in revs if r not in known or known[r].body is None and not known[r].deleted]
        if missing:
            row: dict[str, Any] = {"missing": missing}
            if entry:
                lowest = min(parse_rev(r)[0] for r in missing)
                ancestors = [leaf.rev for leaf in entry.leaves if leaf.pos < lowest]
                if ancestors:
                    row["possible_ancestors"] = ancestors
            answer[docid] = row
    return json_response(answer)


async def missing_revs(req: Request, db: Database) -> web.Response:
    allow(req, "POST")
    body = await req.json_object(require_ctype=True)
    found = {}
    for docid, revs in body.items():
        entry = db.entry(docid)
        missing = [r for r in revs if not entry or r not in entry.revs]
        if missing:
            found[docid] = missing
    return json_response({"missing_revs": found})
