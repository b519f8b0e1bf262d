"""Document endpoints (chttpd_db.erl db_doc_req/3): one document, its revisions, `_local` documents."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..database import Database
from ..revisions import DESIGN_PREFIX, LOCAL_PREFIX, SPECIAL_MEMBERS, DocEntry, RevNode, parse_rev, validate_docid
from ..errors import CouchError, bad_request, conflict, not_found
from ..query import ABSENT, boolean, json_value
from .base import SERVER_HEADER, Request, allow, json_response, not_modified


def parse_doc_body(req: Request, db: Database, body: Any, docid: str | None = None) -> dict:
    """couch_doc:from_json_obj_validate/1: an object within `[couchdb] max_document_size` whose `_` members
    are known, with a valid id (`partition:id` in a partitioned database, couch_partition:validate_docid/1)."""
    if not isinstance(body, dict):
        raise bad_request("Document must be a JSON object")
    if len(json.dumps(body, separators=(",", ":"))) > req.cluster.config.get_int("couchdb", "max_document_size"):
        raise CouchError(413, "document_too_large", str(docid or body.get("_id", "")))
    for key in body:
        if key.startswith("_") and key not in SPECIAL_MEMBERS:
            raise CouchError(400, "doc_validation", f"Bad special document member: {key}")
    for name in (body.get("_attachments") or {}) if isinstance(body.get("_attachments"), dict) else ():
        validate_attachment_name(name)
    doc = dict(body)
    if docid is not None:
        doc["_id"] = docid
    elif "_id" not in doc:
        doc["_id"] = uuid.uuid4().hex
    validate_docid(doc["_id"])
    if db.partitioned and not doc["_id"].startswith((DESIGN_PREFIX, LOCAL_PREFIX)):
        partition, colon, rest = doc["_id"].partition(":")
        if not partition or not colon:
            raise CouchError(400, "illegal_docid", "Doc id must be of form partition:id")
        validate_docid(rest)
    if "_rev" in doc and not doc["_id"].startswith(LOCAL_PREFIX):
        parse_rev(doc["_rev"])
    return doc


def validate_attachment_name(name: str) -> None:
    """chttpd_db:validate_attachment_name/1."""
    if name.startswith("_"):
        raise bad_request(f"Attachment name '{name}' starts with prohibited character '_'")


def rev_from_request(req: Request, body_rev: str | None) -> str | None:
    """couch_httpd_db:extract_header_rev/2: `?rev=`, `If-Match` and the body's `_rev` must agree."""
    rev = req.query.get("rev")
    if rev is not None and body_rev is not None and rev != body_rev:
        raise bad_request("Document rev from request body and query string have different values")
    explicit = rev if rev is not None else body_rev
    header = req.http.headers.get("If-Match")
    if header:
        header = header.strip('"')
        if explicit is not None and explicit != header:
            raise bad_request("Document rev and etag have different values")
        return header
    return explicit


def doc_location(req: Request, db: Database, docid: str) -> str:
    if docid.startswith(DESIGN_PREFIX):
        path = "/_design/" + quote(docid[len(DESIGN_PREFIX):], safe="")
    else:
        path = "/" + quote(docid, safe="")
    return req.absolute("/" + quote(db.name, safe="") + path)


async def write_one(req: Request, db: Database, doc: dict, location: str | None = None,
                    new_edits: bool = True) -> web.Response:
    result = await db.update_doc(doc, req.ctx, new_edits=new_edits)
    if req.query.get("batch") == "ok":
        return json_response({"ok": True, "id": doc["_id"]}, 202)
    headers = {"ETag": f'"{result["rev"]}"'}
    if location:
        headers["Location"] = location
    status = 200 if doc.get("_deleted") is True else 201
    return json_response(result, status, headers)


async def post_doc(req: Request, db: Database) -> web.Response:
    body = await req.json(require_ctype=True)
    doc = parse_doc_body(req, db, body)
    return await write_one(req, db, doc, doc_location(req, db, doc["_id"]))


async def doc_request(req: Request, db: Database, docid: str) -> web.StreamResponse:
    allow(req, "GET", "HEAD", "PUT", "DELETE", "COPY")
    if req.method in ("GET", "HEAD"):
        return await get_doc(req, db, docid)
    if req.method == "PUT":
        if req.http.content_type.startswith("multipart/"):
            raise CouchError(415, "bad_content_type", "couchsim does not take multipart document bodies")
        doc = parse_doc_body(req, db, await req.json(), docid)
        rev = rev_from_request(req, doc.get("_rev"))
        if rev is not None:
            doc["_rev"] = rev
        new_edits = boolean(req.query, "new_edits", True)
        return await write_one(req, db, doc, doc_location(req, db, docid), new_edits)
    if req.method == "COPY":
        return await copy_doc(req, db, docid)
    # chttpd_db:db_doc_req 'DELETE': 404 for a missing doc first, then the rev (409 without one)
    validate_docid(docid)
    db.open_doc(docid)
    rev = rev_from_request(req, None)
    doc = {"_id": docid, "_deleted": True}
    if rev is None:
        raise conflict()
    doc["_rev"] = rev
    return await write_one(req, db, doc)


async def copy_doc(req: Request, db: Database, docid: str) -> web.Response:
    destination = req.http.headers.get("Destination")
    if not destination:
        raise bad_request("Destination header is mandatory for COPY.")
    target, _, target_rev = destination.partition("?rev=")
    entry, node = db.open_doc(docid, req.query.get("rev"))
    source = db.doc_json(entry, node, attachments=True)
    copy = {k: v for k, v in source.items() if k not in ("_id", "_rev")}
    copy["_id"] = validate_docid(target)
    if target_rev:
        copy["_rev"] = target_rev
    return await write_one(req, db, copy, doc_location(req, db, target))


def read_doc(req: Request, db: Database, entry: DocEntry, node: RevNode, **options) -> dict:
    doc = db.doc_json(entry, node, **options)
    if db.behaviour is not None:
        doc = db.behaviour.after_doc_read(db, doc, req.ctx)
    return doc


def doc_options(req: Request) -> dict:
    options = {
        "revs": boolean(req.query, "revs"),
        "attachments": boolean(req.query, "attachments"),
        "conflicts": boolean(req.query, "conflicts"),
        "deleted_conflicts": boolean(req.query, "deleted_conflicts"),
        "revs_info": boolean(req.query, "revs_info"),
        "local_seq": boolean(req.query, "local_seq"),
        "att_encoding_info": boolean(req.query, "att_encoding_info"),
    }
    if boolean(req.query, "meta"):
        options.update(conflicts=True, deleted_conflicts=True, revs_info=True)
    since = json_value(req.query, "atts_since")
    if since is not ABSENT:
        options["atts_since"] = since
    return options


async def get_doc(req: Request, db: Database, docid: str) -> web.Response:
    options = doc_options(req)
    open_revs = req.query.get("open_revs")
    if open_revs is not None:
        answers = open_revs_json(req, db, docid, open_revs, options)
        if "application/json" in req.http.headers.get("Accept", ""):
            return json_response(answers)
        return open_revs_multipart(answers)
    entry, node = db.open_doc(docid, req.query.get("rev"))
    etag = f'"{node.rev}"'
    if req.http.headers.get("If-None-Match") == etag:
        return not_modified(etag)
    return json_response(read_doc(req, db, entry, node, **options), headers={"ETag": etag})


def open_revs_json(req: Request, db: Database, docid: str, open_revs: str, options: dict) -> list:
    """`open_revs=all` or a JSON list of revs: `{"ok": doc}` per leaf, `{"missing": rev}` for unknown revs."""
    entry = db.entry(docid)
    if open_revs == "all":
        if entry is None:
            raise not_found("missing")
        return [{"ok": read_doc(req, db, entry, leaf, **options)}
                for leaf in sorted(entry.leaves, key=lambda n: (n.pos, n.digest))]
    try:
        wanted = json.loads(open_revs)
    except ValueError:
        raise bad_request("invalid UTF-8 JSON")
    if not isinstance(wanted, list):
        raise bad_request("`open_revs` must be a JSON array")
    latest = boolean(req.query, "latest")
    answers = []
    for rev in wanted:
        try:
            entry, node = db.open_doc(docid, rev, latest)
        except CouchError:
            answers.append({"missing": rev})
            continue
        answers.append({"ok": read_doc(req, db, entry, node, **options)})
    return answers


def open_revs_multipart(answers: list[dict]) -> web.Response:
    """chttpd_db:send_docs_multipart/3, the answer replicators get without `Accept: application/json`: one
    JSON part per revision (attachments, when asked for, inline as base64), `error="true"` on a missing one."""
    boundary = uuid.uuid4().hex
    parts = []
    for answer in answers:
        if "ok" in answer:
            parts.append(b"Content-Type: application/json\r\n\r\n" + json.dumps(answer["ok"]).encode())
        else:
            parts.append(b'Content-Type: application/json; error="true"\r\n\r\n' + json.dumps(answer).encode())
    delimiter = f"--{boundary}".encode()
    body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts) + delimiter + b"--"
    return web.Response(body=body, headers={"Content-Type": f'multipart/mixed; boundary="{boundary}"',
                                            "Cache-Control": "must-revalidate", "Server": SERVER_HEADER})


async def local_request(req: Request, db: Database, docid: str) -> web.Response:
    allow(req, "GET", "HEAD", "PUT", "DELETE")
    if req.method in ("GET", "HEAD"):
        return json_response(db.get_local(docid))
    if req.method == "PUT":
        doc = parse_doc_body(req, db, await req.json(), docid)
        rev = rev_from_request(req, doc.get("_rev"))
        if rev is not None:
            doc["_rev"] = rev
        result = db.put_local(doc)
        return json_response(result, 201, {"ETag": f'"{result["rev"]}"'})
    db.get_local(docid)  # 404 when there is none; with one, no rev is needed (couch_db_updater, local docs)
    return json_response(db.put_local({"_id": docid, "_deleted": True}))
