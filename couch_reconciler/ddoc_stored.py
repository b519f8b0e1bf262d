"""A design document as CouchDB stores it: its content as manifests own it (attachments as stubs), the body
to upload (attachments the server holds as stubs, the others with their bytes), and which stored attachments
hold the wanted files although CouchDB reports another digest for them.
"""

from __future__ import annotations

import base64
import functools
import os
import zlib
from typing import Any, Mapping

from .client import CouchSession, db_path
from .ddoc_folder import ATTACHMENTS, md5_digest
from .errors import ReconcileError
from .model import Desired

# Fields CouchDB keeps about a document, not content a manifest could own.
SERVER_FIELDS = frozenset({"_id", "_rev", "_revisions", "_conflicts", "_deleted_conflicts", "_local_seq"})
STUB_FIELDS = ("content_type", "digest", "length")
# How CouchDB gzips compressible attachments by default: `[attachments] compression_level = 8`, a gzip stream
# (couch_stream:gzip_init/1: zlib:deflateInit(Z, Level, deflated, 16 + 15, 8, default)).
GZIP_LEVEL = 8
GZIP_WBITS = 16 + 15


def stored_content(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A design document as manifests own it: every field but the server's, attachments as stubs."""
    body = {key: value for key, value in doc.items() if key not in SERVER_FIELDS and key != ATTACHMENTS}
    attachments = doc.get(ATTACHMENTS)
    if attachments:
        body[ATTACHMENTS] = {name: {field: stub.get(field) for field in STUB_FIELDS}
                             for name, stub in attachments.items()}
    return body


def upload_body(desired: Desired, before: Mapping[str, Any] | None, subject: str) -> dict[str, Any]:
    """The document to PUT: attachments the server already holds with the same digest go as stubs, the
    others with their bytes, read now and checked against the digest the plan was made with."""
    body = {key: value for key, value in desired.body.items() if key != ATTACHMENTS}
    wanted = desired.body.get(ATTACHMENTS) or {}
    if not wanted:
        return body
    held = (before or {}).get(ATTACHMENTS) or {}
    folder = desired.options["attachments"]
    attachments: dict[str, dict[str, Any]] = {}
    for name, stub in wanted.items():
        if held.get(name, {}).get("digest") == stub["digest"]:
            attachments[name] = {"stub": True}
            continue
        try:
            with open(os.path.join(folder, *name.split("/")), "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise ReconcileError(f"{subject}: cannot read attachment {name} ({error.strerror}); "
                                 "run plan again") from None
        if md5_digest(data) != stub["digest"]:
            raise ReconcileError(f"{subject}: attachment {name} changed since the plan was made; run plan again")
        attachments[name] = {"content_type": stub["content_type"], "data": base64.b64encode(data).decode("ascii")}
    body[ATTACHMENTS] = attachments
    return body


def as_wanted(session: CouchSession, database: str, doc: Mapping[str, Any], wanted: Desired) -> Mapping[str, Any]:
    """The document with the digest of each attachment that holds the wanted file replaced by the file's own.

    CouchDB stores attachments whose type is in `[attachments] compressible_types` (text, JavaScript, JSON,
    XML by default) gzip-encoded, and reports the MD5 of the gzip stream as their `digest`, with `length`
    still the file's (couch_db:with_stream/3, couch_att:to_json/4): the file's MD5 never equals it. A stub
    that differs in digest only holds the file when its digest is that of the file gzipped as CouchDB does
    by default (zlib, level 8: couch_stream:gzip_init/1), or, on a server that compresses otherwise, when
    the attachment read back (decoded) has the file's MD5."""
    live, want = doc.get(ATTACHMENTS), wanted.body.get(ATTACHMENTS)
    if not live or not want:
        return doc
    name = doc["_id"].removeprefix("_design/")
    same: dict[str, Any] = {}
    for attachment, stub in live.items():
        file = want.get(attachment)
        if (file is not None and stub.get("digest") != file["digest"]
                and (stub.get("length"), stub.get("content_type")) == (file["length"], file["content_type"])
                and (stub.get("digest") == _gzip_digest(wanted.options["attachments"], attachment, file["digest"])
                     or _read_digest(session, database, name, attachment) == file["digest"])):
            stub = {**stub, "digest": file["digest"]}
        same[attachment] = stub
    return {**doc, ATTACHMENTS: same}


@functools.lru_cache(maxsize=1024)
def _gzip_digest(folder: str, attachment: str, digest: str) -> str | None:
    """The digest CouchDB reports for the file stored gzip-encoded at the default level; None when the file
    changed since it was read for the plan (its MD5 is no longer `digest`)."""
    try:
        with open(os.path.join(folder, *attachment.split("/")), "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if md5_digest(data) != digest:
        return None
    deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    return md5_digest(deflate.compress(data) + deflate.flush())


def _read_digest(session: CouchSession, database: str, name: str, attachment: str) -> str | None:
    """The MD5 of an attachment's content as CouchDB serves it (decoded); None when it is gone."""
    response = session.request("GET", db_path(database, "_design", name, *attachment.split("/")), ok=(404,),
                               what=f"reading attachment {attachment} of {database}/_design/{name}")
    return None if response.status_code == 404 else md5_digest(response.content)
