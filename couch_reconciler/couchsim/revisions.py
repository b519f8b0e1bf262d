"""A document as CouchDB keeps it: its id rules, its revision tree with the winning revision, and its
attachments (couch_doc.erl, couch_key_tree.erl, couch_att.erl)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zlib
from typing import Any, Iterator

from .errors import CouchError, bad_request


# couch_doc:transfer_fields/3: the only `_` members a document body may carry.
SPECIAL_MEMBERS = frozenset({
    "_id", "_rev", "_attachments", "_deleted", "_revisions", "_revs_info", "_conflicts", "_deleted_conflicts",
    "_local_seq", "_replication_state", "_replication_state_time", "_replication_state_reason",
    "_replication_id", "_replication_stats",
})
# Members that describe the revision rather than the content: never stored in the body.
META_MEMBERS = frozenset({"_id", "_rev", "_attachments", "_deleted", "_revisions", "_revs_info", "_conflicts",
                          "_deleted_conflicts", "_local_seq"})
DESIGN_PREFIX = "_design/"
LOCAL_PREFIX = "_local/"

def validate_docid(docid: Any) -> str:
    """couch_doc:validate_docid/1."""
    if not isinstance(docid, str):
        raise CouchError(400, "illegal_docid", "Document id must be a string")
    if docid == "":
        raise CouchError(400, "illegal_docid", "Document id must not be empty")
    if docid.startswith("_"):
        for prefix in (DESIGN_PREFIX, LOCAL_PREFIX):
            if docid.startswith(prefix):
                if docid == prefix:
                    raise CouchError(400, "illegal_docid", f"Illegal document id `{docid}`")
                return docid
        raise CouchError(400, "illegal_docid", "Only reserved document ids may start with underscore.")
    return docid


def parse_rev(rev: Any) -> tuple[int, str]:
    if isinstance(rev, str) and "-" in rev:
        pos, _, digest = rev.partition("-")
        if pos.isdigit() and digest:
            return int(pos), digest
    raise bad_request("Invalid rev format")


def md5_digest(data: bytes) -> str:
    return "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def compressible_type(content_type: str, compressible_types: str) -> bool:
    """couch_db:compressible_att_type/1: `[attachments] compressible_types` is a comma-separated list of
    MIME types where `*` matches anything, compared without case and ignoring parameters (`; charset=...`)."""
    for pattern in re.split(r"\s*,\s*", compressible_types.strip()):
        if pattern:
            regexp = "^\\s*" + ".*".join(re.escape(part) for part in pattern.split("*")) + r"(?:\s*;.*?)?\s*$"
            if re.match(regexp, content_type, re.IGNORECASE):
                return True
    return False


class Attachment:
    """An attachment as couch_att keeps it. couch_db:with_stream/3 gzips a compressible type on its way to
    disk (couch_stream: `zlib:deflateInit(Z, Level, deflated, 16 + 15, 8, default)`, nothing at level 0), and
    the `md5` it records is of the bytes written: the stub's `digest` is the MD5 of the gzip stream, while
    `length` stays the identity length and `encoded_length` the stored one (couch_att:to_json/4)."""
    __slots__ = ("content_type", "data", "digest", "revpos", "encoded")

    def __init__(self, content_type: str, data: bytes, revpos: int, compression_level: int = 0):
        self.content_type = content_type
        self.data = data  # the identity bytes
        self.revpos = revpos
        self.encoded: bytes | None = None  # the gzip stream when stored gzip-encoded
        if 1 <= compression_level <= 9:
            deflate = zlib.compressobj(compression_level, zlib.DEFLATED, 16 + 15, 8, zlib.Z_DEFAULT_STRATEGY)
            self.encoded = deflate.compress(data) + deflate.flush()
        self.digest = md5_digest(self.stored)

    @property
    def stored(self) -> bytes:
        return self.data if self.encoded is None else self.encoded

    @property
    def encoding(self) -> str:
        return "identity" if self.encoded is None else "gzip"

    def _encoding_info(self) -> dict:
        return {} if self.encoded is None else {"encoding": "gzip", "encoded_length": len(self.encoded)}

    def stub(self, encoding_info: bool = False) -> dict:
        return {"content_type": self.content_type, "revpos": self.revpos, "digest": self.digest,
                "length": len(self.data), "stub": True, **(self._encoding_info() if encoding_info else {})}

    def inline(self, encoding_info: bool = False) -> dict:
        """`attachments=true`: the identity bytes, gunzipped when stored encoded (couch_att:to_json/4)."""
        return {"content_type": self.content_type, "revpos": self.revpos, "digest": self.digest,
                "data": base64.b64encode(self.data).decode("ascii"),
                **(self._encoding_info() if encoding_info else {})}


class RevNode:
    """One revision. `body` is None for an ancestor whose content we never had, or dropped by compaction
    (which, as in CouchDB, keeps only the leaves' bodies)."""
    __slots__ = ("pos", "digest", "parent", "deleted", "body", "atts")

    def __init__(self, pos: int, digest: str, parent: RevNode | None, deleted: bool,
                 body: dict | None, atts: dict[str, Attachment] | None):
        self.pos = pos
        self.digest = digest
        self.parent = parent
        self.deleted = deleted
        self.body = body
        self.atts = atts

    @property
    def rev(self) -> str:
        return f"{self.pos}-{self.digest}"

    def ancestry(self) -> Iterator[RevNode]:
        node: RevNode | None = self
        while node is not None:
            yield node
            node = node.parent


class DocEntry:
    """A document id with its revision tree; `winner` is CouchDB's deterministic winning leaf."""
    __slots__ = ("id", "revs", "leaves", "winner", "seq", "shard")

    def __init__(self, docid: str, shard: int = 0):
        self.id = docid
        self.revs: dict[str, RevNode] = {}
        self.leaves: list[RevNode] = []
        self.winner: RevNode | None = None
        self.seq = 0
        self.shard = shard  # the index of the database shard that holds it

    def add(self, node: RevNode) -> None:
        self.revs[node.rev] = node
        if node.parent is not None and node.parent in self.leaves:
            self.leaves.remove(node.parent)
        self.leaves.append(node)
        # couch_doc:to_doc_info: live leaves beat deleted ones, then the longest branch, then the greater hash.
        self.winner = max(self.leaves, key=lambda n: (not n.deleted, n.pos, n.digest))

    @property
    def deleted(self) -> bool:
        return self.winner.deleted

    def latest(self, node: RevNode) -> RevNode:
        """`latest=true`: the greatest leaf descending from `node` (the node itself when it is a leaf)."""
        descendants = [leaf for leaf in self.leaves if node in leaf.ancestry()]
        return max(descendants, key=lambda n: (n.pos, n.digest)) if descendants else node

    def conflicts(self) -> list[RevNode]:
        return sorted((n for n in self.leaves if n is not self.winner and not n.deleted),
                      key=lambda n: (n.pos, n.digest), reverse=True)

    def deleted_conflicts(self) -> list[RevNode]:
        return sorted((n for n in self.leaves if n is not self.winner and n.deleted),
                      key=lambda n: (n.pos, n.digest), reverse=True)


def new_rev_digest(parent: RevNode | None, deleted: bool, body: dict, atts: dict[str, Attachment] | None) -> str:
    """Deterministic like couch_db:new_revid/1: the same edit on the same parent yields the same revision."""
    material = json.dumps([deleted, parent.rev if parent else None, body,
                           sorted((k, a.digest) for k, a in (atts or {}).items())],
                          sort_keys=True, separators=(",", ":"))
    return hashlib.md5(material.encode("utf-8")).hexdigest()
