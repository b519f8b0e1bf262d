"""Attachment endpoints (chttpd_db.erl db_attachment_req/4)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..database import Database
from ..revisions import Attachment, validate_docid
from ..errors import conflict, not_found
from .base import SERVER_HEADER, Request, allow, json_response, not_modified
from .documents import doc_location, read_doc, rev_from_request, validate_attachment_name

async def attachment_request(req: Request, db: Database, docid: str, name: str) -> web.StreamResponse:
    allow(req, "GET", "HEAD", "PUT", "DELETE")
    if req.method in ("GET", "HEAD"):
        entry, node = db.open_doc(docid, req.query.get("rev"))
        read_doc(req, db, entry, node)  # the database's read rules apply to attachments too
        att = (node.atts or {}).get(name)
        if att is None:
            raise not_found("Document is missing attachment")
        etag = '"' + att.digest.partition("-")[2] + '"'
        if req.http.headers.get("If-None-Match") == etag:
            return not_modified(etag)
        return web.Response(body=att.data, headers={"Content-Type": att.content_type, "ETag": etag,
                                                    "Accept-Ranges": "none", "Cache-Control": "must-revalidate",
                                                    "Server": SERVER_HEADER})
    validate_docid(docid)
    validate_attachment_name(name)
    rev = rev_from_request(req, None)
    entry = db.entry(docid)
    if rev is None and entry is not None and not entry.deleted:
        raise conflict()
    if rev is not None:
        entry, node = db.open_doc(docid, rev)
        doc = db.doc_json(entry, node)
    elif req.method == "DELETE":
        raise conflict()
    else:
        doc = {"_id": docid}
    atts: dict[str, Any] = dict(doc.get("_attachments") or {})
    if req.method == "DELETE":
        if name not in atts:
            raise not_found("Document is missing attachment")
        del atts[name]
    else:
        data = await req.http.read()
        atts[name] = Attachment(req.http.headers.get("Content-Type", "application/octet-stream"), data, 0)
    doc["_attachments"] = atts
    location = None
    if req.method == "PUT":
        location = doc_location(req, db, docid) + "/" + quote(name)
    result = await db.update_doc(doc, req.ctx)
    return json_response(result, 201 if req.method == "PUT" else 200,
                         {"ETag": f'"{result["rev"]}"', **({"Location": location} if location else {})})
