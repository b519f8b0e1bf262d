"""A document as CouchDB keeps it: its id rules, its revision tree with the winning revision, and its
attachments (couch_doc.erl, couch_key_tree.erl, couch_att.erl)."""

from __future__ import annotations

import base64
import hashlib
import json
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


class Attachment:
    __slots__ = ("content_type", "data", "digest", "revpos")

    def __init__(self, content_type: str, data: bytes, revpos: int, digest: str | None = None):
        self.content_type = content_type
        self.data = data
        self.revpos = revpos
        self.digest = digest or "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode("ascii")

    def stub(self) -> dict:
        return {"content_type": self.content_type, "revpos": self.revpos, "digest": self.digest,
                "length": len(self.data), "stub": True}

    def inline(self) -> dict:
        return {"content_type": self.content_type, "revpos": self.revpos, "digest": self.digest,
                "data": base64.b64encode(self.data).decode("ascii")}


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
    __slots__ = ("id", "revs", "leaves", "winner", "seq")

    def __init__(self, docid: str):
        self.id = docid
        self.revs: dict[str, RevNode] = {}
        self.leaves: list[RevNode] = []
        self.winner: RevNode | None = None
        self.seq = 0

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
