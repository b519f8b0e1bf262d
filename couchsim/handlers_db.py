"""Database and document endpoints (chttpd_db.erl), with chttpd_auth_request's checks per route."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .app import (Request, allow, bool_param, int_param, json_param, json_response, stream_feed,
                  SERVER_HEADER)
from .database import (DESIGN_PREFIX, LOCAL_PREFIX, SPECIAL_MEMBERS, Attachment, Database, DocEntry, RevNode,
                       format_seq, parse_rev, parse_since, validate_docid)
from .errors import CouchError, bad_request, conflict, db_not_found, forbidden, not_found
from .mango import SPECIAL_INDEX, Selector, find, index_view, json_indexes, new_index
from .security import check_db_admin, check_member, is_db_admin, validate_security_object


async def handle_db(req: Request) -> web.StreamResponse:
    parts = req.parts
    name = parts[0]
    cluster = req.cluster
    if len(parts) == 1 and req.method in ("PUT", "DELETE"):
        return await (create_db(req, name) if req.method == "PUT" else delete_db(req, name))
    db = cluster.dbs.get(name)
    if db is None:
        raise db_not_found()
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


# ---------------------------------------------------------------------------------------------- databases
async def create_db(req: Request, name: str) -> web.Response:
    """chttpd_db:create_db_req/2."""
    q = shard_param(req, "q")
    n = shard_param(req, "n")
    partitioned = req.query.get("partitioned", "false")
    if partitioned not in ("true", "false"):
        raise bad_request("Invalid `partitioned` parameter")
    if partitioned == "true" and name.startswith("_"):
        raise bad_request("Cannot partition a system database")
    req.cluster.create_db(name, q=q, n=n, partitioned=partitioned == "true")
    return json_response({"ok": True}, 201, {"Location": req.absolute("/" + quote(name, safe=""))})


def shard_param(req: Request, param: str) -> int | None:
    value = req.query.get(param)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise bad_request(f"The `{param}` value should be a positive integer.")
    return int(value)


async def delete_db(req: Request, name: str) -> web.Response:
    if "rev" in req.query:
        raise bad_request("You tried to DELETE a database with a ?=rev parameter. "
                          "Did you mean to DELETE a document instead?")
    req.cluster.delete_db(name)
    return json_response({"ok": True})


async def security(req: Request, db: Database) -> web.Response:
    allow(req, "GET", "HEAD", "PUT")
    if req.method != "PUT":
        return json_response(db.security)
    if (db.name == req.cluster.config.get("chttpd_auth", "authentication_db")
            and not req.cluster.config.get_bool("couchdb", "users_db_security_editable")):
        raise forbidden("You can't edit the security object of the user database.")
    body = await req.json()
    # fabric_db_meta:set_security/3: every shard refuses (not a db admin, or an invalid object), so the
    # coordinator reports that no majority of shards took it.
    if not is_db_admin(req.ctx, db.security) or not validate_security_object(body):
        raise CouchError(500, "error", "no_majority")
    db.set_security(body)
    return json_response({"ok": True})


async def revs_limit(req: Request, db: Database) -> web.Response:
    allow(req, "GET", "PUT")
    if req.method == "GET":
        return json_response(db.revs_limit)
    check_db_admin(req.ctx, db.security)
    value = await req.json()
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise bad_request("Rev limit has to be an integer")
    db.revs_limit = value
    return json_response({"ok": True})


async def ensure_full_commit(req: Request, db: Database) -> web.Response:
    allow(req, "POST")
    return json_response({"ok": True, "instance_start_time": "0"}, 201)


# ---------------------------------------------------------------------------------------------- documents
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
        new_edits = bool_param(req, "new_edits", True)
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
        "revs": bool_param(req, "revs"),
        "attachments": bool_param(req, "attachments"),
        "conflicts": bool_param(req, "conflicts"),
        "deleted_conflicts": bool_param(req, "deleted_conflicts"),
        "revs_info": bool_param(req, "revs_info"),
        "local_seq": bool_param(req, "local_seq"),
    }
    if bool_param(req, "meta"):
        options.update(conflicts=True, deleted_conflicts=True, revs_info=True)
    since = json_param(req, "atts_since")
    if since is not ...:
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
        return web.Response(status=304, headers={"ETag": etag, "Server": SERVER_HEADER})
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
    latest = bool_param(req, "latest")
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
    rev = rev_from_request(req, None)
    if rev is None:
        db.get_local(docid)
        raise conflict()
    return json_response(db.put_local({"_id": docid, "_rev": rev, "_deleted": True}))


# ---------------------------------------------------------------------------------------------- attachments
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
            return web.Response(status=304, headers={"ETag": etag, "Server": SERVER_HEADER})
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


# ---------------------------------------------------------------------------------------------- bulk
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
    latest = bool_param(req, "latest")
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


# ---------------------------------------------------------------------------------------------- _all_docs
def explicit_keys(req: Request, body: dict | None) -> list | None:
    """`keys` from the query string or a POST body; rows then come in the order of the keys."""
    keys = json_param(req, "keys")
    if keys is ... and body is not None:
        keys = body.get("keys", ...)
    if keys is ...:
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
    include_docs = bool_param(req, "include_docs")
    conflicts = bool_param(req, "conflicts")
    descending = bool_param(req, "descending")
    skip = int_param(req, "skip", 0)
    limit = int_param(req, "limit")
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
    start = json_param(req, "start_key", "startkey")
    end = json_param(req, "end_key", "endkey")
    key = json_param(req, "key")
    if key is not ...:
        start = end = key
    if body is not None:
        start = body.get("start_key", body.get("startkey", start))
        end = body.get("end_key", body.get("endkey", end))
    inclusive_end = bool_param(req, "inclusive_end", True)
    if prefix is not None:
        low, high = prefix, prefix + "\ufff0"
        start = low if start is ... else start
        end = high if end is ... else end
    ids = db.ids()
    ordered = reversed(ids) if descending else ids
    rows = []
    offset = 0
    for docid in ordered:
        entry = db.docs[docid]
        if entry.deleted or (prefix is not None and not docid.startswith(prefix)):
            continue
        if start is not ... and start is not None:
            if (docid < start) if not descending else (docid > start):
                offset += 1
                continue
        if end is not ... and end is not None:
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
    include_docs = bool_param(req, "include_docs")
    rows = []
    for docid in sorted(db.local or {}):
        doc = db.get_local(docid)
        row = {"id": docid, "key": docid, "value": {"rev": doc["_rev"]}}
        if include_docs:
            row["doc"] = doc
        rows.append(row)
    return json_response({"total_rows": None, "offset": None, "rows": rows})


# ---------------------------------------------------------------------------------------------- _changes
async def changes(req: Request, db: Database) -> web.StreamResponse:
    """chttpd_db:handle_changes_req/2 with the built-in filters; design-doc filters need part 2."""
    allow(req, "GET", "HEAD", "POST")
    body = await req.json_object() if req.method == "POST" else {}
    feed = req.query.get("feed", "normal")
    if feed not in ("normal", "longpoll", "continuous", "eventsource"):
        raise bad_request("Supported `feed` types: normal, continuous, live, longpoll, eventsource")
    descending = bool_param(req, "descending")
    since = parse_since(req.query.get("since", body.get("since")), db.seq)
    if descending and "since" not in req.query:
        since = 0
    limit = int_param(req, "limit")
    include_docs = bool_param(req, "include_docs")
    conflicts = bool_param(req, "conflicts")
    all_leaves = req.query.get("style") == "all_docs"
    timeout = int_param(req, "timeout", 60000) / 1000
    accept = change_filter(req, db, body)

    def row(entry: DocEntry) -> dict:
        leaves = sorted(entry.leaves, key=lambda n: (n.pos, n.digest), reverse=True) if all_leaves else [entry.winner]
        out: dict[str, Any] = {"seq": format_seq(entry.seq), "id": entry.id,
                               "changes": [{"rev": n.rev} for n in leaves]}
        if entry.deleted:
            out["deleted"] = True
        if include_docs:
            out["doc"] = read_doc(req, db, entry, entry.winner, conflicts=conflicts)
        return out

    position = {"since": since}

    def rows_after() -> tuple[list[dict], int, int]:
        """(rows, last seq looked at, changes left after it)."""
        changed = db.changes_since(position["since"], descending)
        rows, last = [], position["since"]
        for index, entry in enumerate(changed):
            if limit is not None and len(rows) >= limit:
                return rows, last, len(changed) - index
            last = entry.seq
            if accept(entry):
                rows.append(row(entry))
        return rows, (db.seq if not descending else last), 0

    if feed == "continuous":
        def advance(last: int) -> None:
            position["since"] = last
        return await stream_feed(req, db, lambda: rows_after()[0], timeout, req.query.get("heartbeat"),
                                 lambda last: {"last_seq": format_seq(max(last, position["since"])), "pending": 0},
                                 advance)
    rows, last, pending = rows_after()
    if feed == "longpoll" and not rows:
        while await db.wait_for_change(timeout):
            rows, last, pending = rows_after()
            if rows:
                break
    return json_response({"results": rows, "last_seq": format_seq(last), "pending": pending})


def change_filter(req: Request, db: Database, body: dict):
    name = req.query.get("filter")
    if name is None:
        return lambda entry: True
    if name == "_doc_ids":
        ids = json_param(req, "doc_ids")
        if ids is ...:
            ids = body.get("doc_ids")
        if not isinstance(ids, list):
            raise bad_request("`doc_ids` filter parameter is not a list of doc ids.")
        wanted = set(i for i in ids if isinstance(i, str))
        return lambda entry: entry.id in wanted
    if name == "_design":
        return lambda entry: entry.id.startswith(DESIGN_PREFIX)
    if name == "_selector":
        if "selector" not in body:
            raise bad_request("Selector must be specified in POST payload")
        selector = Selector(body["selector"])
        return lambda entry: not entry.deleted and selector.matches(db.doc_json(entry, entry.winner))
    if name == "_view":
        return req.cluster.design.view_filter(db, req)
    ddoc_name, _, filter_name = name.partition("/")
    if not filter_name:
        raise bad_request("`filter` parameter is not correct: it must be `_doc_ids`, `_selector`, `_design`, "
                          "`_view` or `designname/filtername`")
    ddoc = db.get_design_doc(DESIGN_PREFIX + ddoc_name)
    if ddoc is None:
        raise not_found("missing")
    if filter_name not in (ddoc.get("filters") or {}):
        raise not_found(f"missing json key: {filter_name}")
    return req.cluster.design.change_filter(db, ddoc, filter_name, req)


# ---------------------------------------------------------------------------------------------- _find
async def find_handler(req: Request, db: Database) -> web.Response:
    allow(req, "POST")
    body = await req.json(require_ctype=True)
    return json_response(find(db, body, lambda entry: read_doc(req, db, entry, entry.winner)))


async def index_handler(req: Request, db: Database) -> web.Response:
    """mango_httpd:handle_index_req/2 for json indexes (stored as `language: query` design docs)."""
    parts = req.parts
    if len(parts) == 2:
        allow(req, "GET", "POST")
        if req.method == "GET":
            indexes = [SPECIAL_INDEX] + json_indexes(db)
            return json_response({"total_rows": len(indexes), "indexes": indexes})
        ddoc_id, name, definition = new_index(await req.json(require_ctype=True))
        ddoc = db.get_design_doc(ddoc_id) or {"_id": ddoc_id, "language": "query", "views": {}}
        view = index_view(definition)
        if ddoc.get("views", {}).get(name) == view:
            return json_response({"result": "exists", "id": ddoc_id, "name": name})
        ddoc.setdefault("views", {})[name] = view
        await db.update_doc(ddoc, req.ctx)
        return json_response({"result": "created", "id": ddoc_id, "name": name})
    allow(req, "DELETE")
    rest = parts[2:]
    if rest and rest[0] == "_design":
        rest = ["_design/" + rest[1]] + rest[2:] if len(rest) > 1 else rest
    if len(rest) != 3:
        raise not_found("missing")
    ddoc_id = rest[0] if rest[0].startswith(DESIGN_PREFIX) else DESIGN_PREFIX + rest[0]
    ddoc = db.get_design_doc(ddoc_id)
    if ddoc is None or rest[1] != "json" or rest[2] not in (ddoc.get("views") or {}):
        raise not_found("missing")
    del ddoc["views"][rest[2]]
    change = ddoc if ddoc["views"] else {"_id": ddoc_id, "_rev": ddoc["_rev"], "_deleted": True}
    await db.update_doc(change, req.ctx)
    return json_response({"ok": True})


# ---------------------------------------------------------------------------------------------- design docs
async def view_request(req: Request, db: Database, ddoc_id: str) -> web.Response:
    if len(req.parts) != 5:
        raise not_found("missing")
    allow(req, "GET", "HEAD", "POST")
    ddoc = db.get_design_doc(ddoc_id)
    if ddoc is None:
        raise not_found("missing")
    keys = None
    if req.method == "POST":
        body = await req.json_object(require_ctype=True)
        keys = body.get("keys")
    return json_response(await req.cluster.design.query_view(db, ddoc, req.parts[4], dict(req.query), keys,
                                                             req.ctx))


async def info_request(req: Request, db: Database, ddoc_id: str) -> web.Response:
    allow(req, "GET", "HEAD")
    ddoc = db.get_design_doc(ddoc_id)
    if ddoc is None:
        raise not_found("missing")
    return json_response(await req.cluster.design.design_info(db, ddoc))


async def javascript_only(req: Request, db: Database, ddoc_id: str) -> web.Response:
    if db.get_design_doc(ddoc_id) is None:
        raise not_found("missing")
    raise CouchError(501, "not_implemented", f"couchsim part 1 runs no JavaScript: {req.parts[3]}")


DB_HANDLERS = {
    "_all_docs": all_docs,
    "_design_docs": design_docs,
    "_local_docs": local_docs,
    "_bulk_docs": bulk_docs,
    "_bulk_get": bulk_get,
    "_changes": changes,
    "_revs_diff": revs_diff,
    "_missing_revs": missing_revs,
    "_ensure_full_commit": ensure_full_commit,
    "_security": security,
    "_revs_limit": revs_limit,
    "_find": find_handler,
    "_index": index_handler,
}

DESIGN_HANDLERS = {
    "_view": view_request,
    "_info": info_request,
    "_show": javascript_only,
    "_list": javascript_only,
    "_update": javascript_only,
    "_rewrite": javascript_only,
}
