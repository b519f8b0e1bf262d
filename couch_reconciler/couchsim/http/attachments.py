"""Attachment endpoints (chttpd_db.erl db_attachment_req/4)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..database import Database
from ..errors import conflict, not_found
from ..revisions import Attachment, validate_docid
from .base import SERVER_HEADER, Request, allow, json_response, not_modified
from .documents import doc_location, read_doc, rev_from_request, validate_attachment_name


def accepts_gzip(accept_encoding: str | None) -> bool:
    """mochiweb_request:accepted_encodings/1 as couch_httpd:accepted_encodings/1 asks it: `gzip`, or `*`
    not excluding it, with a q-value above 0. No header accepts only identity."""
    if not accept_encoding:
        return False
    qualities = {}
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        quality = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        qualities[coding.strip().lower()] = quality
    return qualities.get("gzip", qualities.get("*", 0.0)) > 0


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
        headers = {"Content-Type": att.content_type, "ETag": etag, "Cache-Control": "must-revalidate",
                   "Server": SERVER_HEADER, "Accept-Ranges": "bytes" if att.encoded is None else "none"}
        config = req.cluster.config
        # chttpd_util:maybe_add_csp_header("attachments", ..., "sandbox"): on unless [csp] attachments_enable
        # is false, so a page served from an attachment runs no script unless the server says otherwise.
        if config.get("csp", "attachments_enable", "true") == "true":
            headers["Content-Security-Policy"] = config.get("csp", "attachments_header_value", "sandbox")
        body = att.data
        if att.encoded is not None and accepts_gzip(req.http.headers.get("Accept-Encoding")):
            # Served as stored, the client decodes (chttpd_db:db_attachment_req/4, ReqAcceptsAttEnc).
            body, headers["Content-Encoding"] = att.encoded, "gzip"
        return web.Response(body=body, headers=headers)
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
