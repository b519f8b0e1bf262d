"""One database: documents with real revision trees, `_local` docs, attachments, the sequence index and
the changes subscription that feeds, the replicator and couch_peruser follow.

Per-database memory is kept small (tens of thousands of user databases): everything a database only needs
once it holds documents is created on the first write.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import functools
import random
import time
import zlib
from typing import Any, Callable, Iterator, Protocol

from .config import Config
from .errors import CouchError, bad_request, conflict, not_found
from .revisions import (DESIGN_PREFIX, LOCAL_PREFIX, META_MEMBERS, Attachment, DocEntry, RevNode, compressible_type,
                        new_rev_digest, parse_rev)
from .security import UserCtx, check_db_admin



class DesignHooks(Protocol):
    """What a write asks of the design documents (couch_reconciler/couchsim/design.py)."""

    def check_design_doc(self, db: Database, ddoc: dict) -> None: ...

    def validators(self, db: Database) -> list[Validator]: ...


class DatabaseHost(Protocol):
    """What a database needs from the cluster that holds it."""

    design: DesignHooks
    config: Config

    def doc_updated(self, db: Database, entry: DocEntry) -> None: ...

    def db_event(self, name: str, kind: str) -> None: ...


# A validator is what a design document's validate_doc_update becomes (couch_reconciler/couchsim/design.py compiles
# JavaScript ones): validator(new_doc, old_doc, user_ctx, security) raises CouchError 403/401 to refuse the write.
Validator = Callable[[dict, "dict | None", UserCtx, dict], None]


class Database:
    __slots__ = ("name", "cluster", "q", "n", "partitioned", "security", "seq", "docs", "local", "by_seq",
                 "doc_count", "del_count", "waiters", "sorted_ids", "revs_limit", "behaviour", "created", "lagging")

    def __init__(self, cluster: DatabaseHost, name: str, q: int, n: int, partitioned: bool, security: dict):
        self.name = name
        self.cluster = cluster
        self.q = q
        self.n = n
        self.partitioned = partitioned
        self.security = security
        self.seq = 0
        self.docs: dict[str, DocEntry] | None = None
        self.local: dict[str, tuple[int, dict]] | None = None
        self.by_seq: dict[int, DocEntry] | None = None
        self.doc_count = 0
        self.del_count = 0
        self.waiters: list[asyncio.Future] | None = None
        self.sorted_ids: list[str] | None = None
        self.revs_limit = 1000
        self.behaviour = None  # system databases (_users, _replicator) plug their before/after hooks here
        # mem3 names shard files `<name>.<creation time in seconds>`; mem3:shard_creation_time/1 reads it back.
        self.created = int(time.time())
        # Per shard range, how many updates its copies other than the first counted fewer (see `_commit`).
        self.lagging: list[int] | None = None

    # ------------------------------------------------------------------ shards
    def shard_index(self, docid: str) -> int:
        """mem3_hash: the shard whose range holds the CRC-32 of the id (of its partition in a partitioned
        database)."""
        if self.q == 1:
            return 0
        key = docid.partition(":")[0] if self.partitioned and ":" in docid else docid
        crc = zlib.crc32(key.encode("utf-8"))
        return next(i for i, (_, end) in enumerate(shard_ranges(self.q)) if crc <= end)

    def shard_name(self, docid: str) -> str:
        """mem3_util:make_name/3: `shards/<begin>-<end>/<name>.<creation time>` of the shard holding `docid`."""
        begin, end = shard_ranges(self.q)[self.shard_index(docid)]
        return f"shards/{begin:08x}-{end:08x}/{self.name}.{self.created}"

    # ------------------------------------------------------------------ info
    def on_copies(self) -> bool:
        """Whether each shard range has several copies, on several nodes."""
        return self.n > 1 and len(self.cluster.node_names) > 1

    def update_seq(self) -> str:
        if self.on_copies():
            # fabric_db_info takes each range's seq from the first copy to answer, and a seq names its copy:
            # on a real 3-node cluster two reads with no write between them differ after the number, and the
            # number is the sum of what the copies that answered counted.
            copies = [random.randrange(self.n) for _ in range(self.q)]
            behind = sum(self.lagging[shard] for shard, copy in enumerate(copies) if copy) if self.lagging else 0
            return format_seq(self.seq, copies=copies, counted=self.seq - behind)
        return format_seq(self.seq)

    def info(self) -> dict:
        # `sizes` are opaque to clients (the recorded exchanges normalise them); an estimate from the counts
        # keeps GET /db and _dbs_info O(1) per database.
        external = 64 * self.doc_count
        return {
            "instance_start_time": "0",
            "db_name": self.name,
            "purge_seq": format_seq(0),
            "update_seq": self.update_seq(),
            "sizes": {"file": 16692 + external * 2, "external": external, "active": external},
            "props": {"partitioned": True} if self.partitioned else {},
            "doc_del_count": self.del_count,
            "doc_count": self.doc_count,
            "disk_format_version": 8,
            "compact_running": False,
            "cluster": {"q": self.q, "n": self.n, "w": self.n // 2 + 1, "r": self.n // 2 + 1},
        }

    def set_security(self, security: dict) -> None:
        self.security = security
        # A clustered database's seq sums its shards' seqs and a security write touches every shard
        # (3.4.3 with q=2 moved update_seq by 2).
        self.bump(self.q)

    def compact(self) -> None:
        """Drops the bodies of non-leaf revisions, as compaction does: older revs then read as missing."""
        for entry in (self.docs or {}).values():
            for node in entry.revs.values():
                if node not in entry.leaves:
                    node.body = node.atts = None

    def bump(self, by: int = 1) -> None:
        self.seq += by
        self.notify()

    # ------------------------------------------------------------------ reads
    def entry(self, docid: str) -> DocEntry | None:
        return self.docs.get(docid) if self.docs else None

    def get_design_doc(self, ddoc_id: str) -> dict | None:
        """A design document's current body with `_id`/`_rev`, or None: what views are compiled from."""
        entry = self.entry(ddoc_id)
        if entry is None or entry.deleted:
            return None
        return self.doc_json(entry, entry.winner)

    def design_docs(self) -> list[dict]:
        return [self.doc_json(e, e.winner) for e in self.iter_entries(DESIGN_PREFIX, DESIGN_PREFIX + "\ufff0")
                if not e.deleted]

    def ids(self) -> list[str]:
        if self.sorted_ids is None:
            self.sorted_ids = sorted(self.docs) if self.docs else []
        return self.sorted_ids

    def iter_entries(self, start: str | None = None, end: str | None = None) -> Iterator[DocEntry]:
        ids = self.ids()
        i = bisect.bisect_left(ids, start) if start is not None else 0
        for docid in ids[i:]:
            if end is not None and docid > end:
                break
            yield self.docs[docid]

    def doc_json(self, entry: DocEntry, node: RevNode, *, revs: bool = False, attachments: bool = False,
                 atts_since: list[str] | None = None, conflicts: bool = False, deleted_conflicts: bool = False,
                 revs_info: bool = False, local_seq: bool = False, att_encoding_info: bool = False) -> dict:
        doc: dict[str, Any] = {"_id": entry.id, "_rev": node.rev}
        doc.update(node.body or {})
        if node.atts:
            since_pos = min((parse_rev(r)[0] for r in atts_since), default=None) if atts_since else None
            doc["_attachments"] = {
                name: (att.inline(att_encoding_info)
                       if attachments or (since_pos is not None and att.revpos > since_pos)
                       else att.stub(att_encoding_info))
                for name, att in node.atts.items()}
        if node.deleted:
            doc["_deleted"] = True
        if local_seq:
            doc["_local_seq"] = entry.seq
        if conflicts:
            found = entry.conflicts() if node is entry.winner else []
            if found:
                doc["_conflicts"] = [n.rev for n in found]
        if deleted_conflicts and node is entry.winner:
            found = entry.deleted_conflicts()
            if found:
                doc["_deleted_conflicts"] = [n.rev for n in found]
        if revs:
            chain = list(node.ancestry())[: self.revs_limit]
            doc["_revisions"] = {"start": node.pos, "ids": [n.digest for n in chain]}
        if revs_info:
            doc["_revs_info"] = [
                {"rev": n.rev, "status": "deleted" if n.deleted else ("available" if n.body is not None
                                                                        else "missing")}
                for n in node.ancestry()]
        return doc

    def open_doc(self, docid: str, rev: str | None = None, latest: bool = False) -> tuple[DocEntry, RevNode]:
        """The winning (or the given, or with `latest` its newest descendant) revision; 404 `missing` or
        `deleted` as couch_doc_open answers."""
        entry = self.entry(docid)
        if entry is None:
            raise not_found("missing")
        if rev is None:
            if entry.deleted:
                raise not_found("deleted")
            return entry, entry.winner
        node = entry.revs.get(rev)
        if node is not None and latest:
            node = entry.latest(node)
        if node is None or (node.body is None and not node.deleted):
            raise not_found("missing")
        return entry, node

    # ------------------------------------------------------------------ _local docs
    def get_local(self, docid: str) -> dict:
        if not self.local or docid not in self.local:
            raise not_found("missing")
        generation, body = self.local[docid]
        return {"_id": docid, "_rev": f"0-{generation}", **body}

    def put_local(self, doc: dict) -> dict:
        """couch_db_updater.erl `increment_local_doc_revs`: a local doc has no revision check. A write stores
        rev `0-N+1` after the `0-N` it names (`0-1` naming none), whatever is stored; a delete always succeeds,
        stored or not (rev `0-0`); a rev not of the form `0-N` is an error."""
        docid = doc["_id"]
        if self.local is None:
            self.local = {}
        body = {k: v for k, v in doc.items() if k not in META_MEMBERS}
        if doc.get("_deleted"):
            self.local.pop(docid, None)
            return {"ok": True, "id": docid, "rev": "0-0"}
        given = doc.get("_rev")
        generation = 1 if given is None else _local_generation(given) + 1
        self.local[docid] = (generation, body)
        return {"ok": True, "id": docid, "rev": f"0-{generation}"}

    # ------------------------------------------------------------------ writes
    async def update_docs(self, docs: list[dict], user_ctx: UserCtx, *,
                          new_edits: bool = True) -> list[dict | CouchError]:
        """The one write path (HTTP PUT/POST/DELETE, _bulk_docs, attachments, internal writers).

        Per document, as couch_db:update_docs does: the database's before_doc_update hook (may be slow, e.g.
        hashing a `_users` password, so it runs before the atomic part), then in one step without awaiting:
        the revision check (409), design-doc authorisation, every validate_doc_update, and the commit.
        Returns one result per doc: `{"ok", "id", "rev"}`, or the CouchError that refused it.
        """
        prepared: list[dict | CouchError] = []
        for doc in docs:
            try:
                if self.behaviour is not None and not doc["_id"].startswith(LOCAL_PREFIX):
                    doc = await self.behaviour.before_doc_update(self, doc, user_ctx)
                prepared.append(doc)
            except CouchError as exc:
                prepared.append(exc)
        results = []
        touched = False
        for doc in prepared:
            try:
                if isinstance(doc, CouchError):
                    raise doc
                if doc["_id"].startswith(LOCAL_PREFIX):
                    results.append(self.put_local(doc))
                    continue
                if new_edits:
                    results.append(self._edit(doc, user_ctx))
                else:
                    self._merge_replicated(doc, user_ctx)
                    results.append({"ok": True, "id": doc["_id"], "rev": doc["_rev"]})
                touched = True
            except CouchError as exc:
                results.append(exc)
        if touched:
            self.notify()
        return results

    async def update_doc(self, doc: dict, user_ctx: UserCtx, *, new_edits: bool = True) -> dict:
        """One document through update_docs; its refusal is raised."""
        result = (await self.update_docs([doc], user_ctx, new_edits=new_edits))[0]
        if isinstance(result, CouchError):
            raise result
        return result

    def _authorize_and_validate(self, doc: dict, old: dict | None, user_ctx: UserCtx) -> None:
        if doc["_id"].startswith(DESIGN_PREFIX):
            # couch_db:validate_doc_update/3: a design doc passes the db-admin rule and validate_ddoc (its
            # views compile), never validate_doc_update functions; on every write path, _bulk_docs included.
            check_db_admin(user_ctx, self.security)
            self.cluster.design.check_design_doc(self, doc)
            return
        for validate in self.cluster.design.validators(self):
            validate(doc, old, user_ctx, self.security)

    def _edit(self, doc: dict, user_ctx: UserCtx) -> dict:
        docid = doc["_id"]
        entry = self.entry(docid)
        given = doc.get("_rev")
        parent: RevNode | None = None
        if given is None:
            if entry is not None and not entry.deleted:
                raise conflict()
            if entry is not None:
                parent = entry.winner  # recreating a deleted document extends its deleted branch
        else:
            parse_rev(given)
            parent = entry.revs.get(given) if entry else None
            if parent is None or parent not in entry.leaves:
                raise conflict()
        deleted = doc.get("_deleted") is True
        body = {k: v for k, v in doc.items() if k not in META_MEMBERS}
        pos = parent.pos + 1 if parent else 1
        atts = self._attachments(doc, parent, pos)
        old = None
        if parent is not None and not parent.deleted:
            old = self.doc_json(entry, parent)
        new_doc = dict(doc)
        new_doc.pop("_attachments", None)
        if atts:
            new_doc["_attachments"] = {name: att.stub() for name, att in atts.items()}
        self._authorize_and_validate(new_doc, old, user_ctx)
        node = RevNode(pos, new_rev_digest(parent, deleted, body, atts), parent, deleted, body, atts)
        self._commit(entry, docid, node)
        return {"ok": True, "id": docid, "rev": node.rev}

    def _merge_replicated(self, doc: dict, user_ctx: UserCtx) -> None:
        """new_edits=false: graft the given revision and its `_revisions` ancestry into the tree as is."""
        docid = doc["_id"]
        if "_rev" not in doc:
            raise bad_request("Document rev is required when new_edits is false")
        pos, digest = parse_rev(doc["_rev"])
        history = doc.get("_revisions")
        ids = history["ids"] if isinstance(history, dict) and history.get("ids") else [digest]
        start = history["start"] if isinstance(history, dict) and "start" in history else pos
        entry = self.entry(docid)
        if entry is not None and doc["_rev"] in entry.revs and entry.revs[doc["_rev"]].body is not None:
            return  # already have it
        chain = [(start - i, d) for i, d in enumerate(ids)][::-1]  # oldest first
        parent: RevNode | None = None
        new_nodes = []
        for p, d in chain[:-1]:
            existing = entry.revs.get(f"{p}-{d}") if entry else None
            if existing is None:
                existing = RevNode(p, d, parent, False, None, None)
                new_nodes.append(existing)
            parent = existing
        deleted = doc.get("_deleted") is True
        body = {k: v for k, v in doc.items() if k not in META_MEMBERS}
        atts = self._attachments(doc, parent, pos)
        old = self.doc_json(entry, entry.winner) if entry and not entry.deleted else None
        new_doc = dict(doc)
        self._authorize_and_validate(new_doc, old, user_ctx)
        if entry is None:
            entry = self._new_entry(docid)
        for node in new_nodes:
            entry.revs[node.rev] = node
        existing_leaf = entry.revs.get(doc["_rev"])
        if existing_leaf is not None:  # a stub we had as an ancestor only: now we know its body
            existing_leaf.body, existing_leaf.atts, existing_leaf.deleted = body, atts, deleted
            return
        node = RevNode(pos, digest, parent, deleted, body, atts)
        self._commit(entry, docid, node)

    def _attachments(self, doc: dict, parent: RevNode | None, pos: int) -> dict[str, Attachment] | None:
        given = doc.get("_attachments")
        if not given:
            return None
        if not isinstance(given, dict):
            raise bad_request("Attachments must be a JSON object")
        atts = {}
        for name, spec in given.items():
            if isinstance(spec, Attachment):  # a standalone attachment upload
                atts[name] = self.attachment(spec.content_type, spec.data, pos)
                continue
            if not isinstance(spec, dict):
                raise bad_request("Attachment must be a JSON object")
            if spec.get("stub"):
                previous = parent.atts.get(name) if parent and parent.atts else None
                if previous is None:
                    raise CouchError(412, "missing_stub", f"Invalid attachment stub in {doc['_id']} for {name}")
                atts[name] = previous
                continue
            data = spec.get("data")
            if not isinstance(data, str):
                raise bad_request("Invalid attachment data for " + name)
            try:
                raw = base64.b64decode(data, validate=True)
            except ValueError:
                raise bad_request("Invalid attachment data for " + name)
            atts[name] = self.attachment(spec.get("content_type", "application/octet-stream"), raw,
                                         spec.get("revpos", pos))
        return atts

    def attachment(self, content_type: str, data: bytes, revpos: int) -> Attachment:
        """New attachment data as couch_db:with_stream/3 stores it: gzip-encoded when its type is in
        `[attachments] compressible_types`, at `compression_level` (0 stores it as is)."""
        config = self.cluster.config
        level = 0
        if compressible_type(content_type, config.get("attachments", "compressible_types")):
            level = config.get_int("attachments", "compression_level")
        return Attachment(content_type, data, revpos, level)

    def _new_entry(self, docid: str) -> DocEntry:
        if self.docs is None:
            self.docs = {}
            self.by_seq = {}
        entry = DocEntry(docid, self.shard_index(docid))
        self.docs[docid] = entry
        self.sorted_ids = None
        return entry

    def _commit(self, entry: DocEntry | None, docid: str, node: RevNode) -> None:
        if entry is None:
            entry = self._new_entry(docid)
        was = entry.deleted if entry.winner else None
        if entry.seq and entry.seq == self.seq and self.on_copies():
            # The copies other than the first take a document's updates by internal replication, which
            # brings a copy only the latest revision of a document updated again since it last synced
            # (mem3_rep.erl: the leaves the target is missing): two updates in a row count one there.
            self.lagging = self.lagging or [0] * self.q
            self.lagging[self.shard_index(docid)] += 1
        if entry.seq:
            del self.by_seq[entry.seq]
        entry.add(node)
        now = entry.deleted
        if was is not now:
            self.doc_count += (not now) - (was is False)
            self.del_count += now - (was is True)
        self.seq += 1
        entry.seq = self.seq
        self.by_seq[self.seq] = entry
        self.cluster.doc_updated(self, entry)

    # ------------------------------------------------------------------ changes
    def changes_since(self, since: int, descending: bool = False) -> list[DocEntry]:
        """Entries changed after `since`, in seq order; recent tails are cheap (scanned from the end)."""
        if not self.by_seq:
            return []
        if descending:
            return [e for s, e in reversed(self.by_seq.items()) if s > since]
        tail = []
        for s in reversed(self.by_seq):
            if s <= since:
                break
            tail.append(self.by_seq[s])
        tail.reverse()
        return tail

    def changes_after(self, marks: list[int], descending: bool = False) -> list[DocEntry]:
        """Entries after a feed position (`marks`: per shard, the last seq passed), shard by shard in range
        order, in seq order within a shard. A q > 1 database promises no order across its shards
        (fabric_view_changes merges the shards' feeds as they answer); couchsim answers as if they took
        turns."""
        tail = self.changes_since(min(marks), descending)
        if self.q == 1:
            return tail
        after = [entry for entry in tail if entry.seq > marks[entry.shard]]
        after.sort(key=lambda entry: entry.shard, reverse=descending)  # stable: seq order within a shard
        return after

    def parse_position(self, value: Any) -> tuple[int, list[int]]:
        """A `since` as (the number its seq string starts with, marks per shard): 0, `now`, a number, a seq this
        database gave out (a row's, or `update_seq`: every shard at that number)."""
        number = parse_since(value, self.seq)
        token = str(value).partition("-")[2] if isinstance(value, str) else ""
        if token.startswith(SEQ_MARK):
            packed = token[len(SEQ_MARK):]
            try:
                raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
            except ValueError:
                raw = b""
            marks = [int.from_bytes(raw[i:i + 8], "big") for i in range(0, len(raw) - len(raw) % 8, 8)]
            if len(marks) == self.q:
                return number, marks
            if len(marks) == 1:
                return number, marks * self.q
            if len(marks) == 1 + self.q:  # an update_seq naming its copies: the position comes first
                return marks[0], marks[:1] * self.q
        return number, [number] * self.q

    def notify(self) -> None:
        self.cluster.db_event(self.name, "updated")
        self.wake()

    def wake(self) -> None:
        """Wakes every feed waiting on this database (after a write, or when it is deleted)."""
        if self.waiters:
            for waiter in self.waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self.waiters = None

    async def wait_for_change(self, timeout: float | None) -> bool:
        """Sleeps until the next write (or timeout). Returns False on timeout."""
        future = asyncio.get_running_loop().create_future()
        if self.waiters is None:
            self.waiters = []
        self.waiters.append(future)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            if self.waiters and future in self.waiters:
                self.waiters.remove(future)


SEQ_MARK = "g1AAAA"
RING_TOP = 1 << 32


@functools.lru_cache(maxsize=64)
def shard_ranges(q: int) -> list[tuple[int, int]]:
    """mem3_util:make_key_ranges/3: q ranges of the 32-bit hash ring, the last one taking the remainder."""
    size = RING_TOP // q
    ranges, start = [], 0
    while start < RING_TOP:
        end = RING_TOP - 1 if start + 2 * size > RING_TOP else start + size - 1
        ranges.append((start, end))
        start = end + 1
    return ranges


def format_seq(seq: int, marks: list[int] | None = None, copies: list[int] | None = None,
               counted: int | None = None) -> str:
    """CouchDB 3 seqs are opaque strings starting with a number. Ours carry the feed position per shard
    (`marks`) where the shards stand at different seqs, and which copy of each range answered (`copies`), whose
    own counts add up to `counted` (the number shown; the position `seq` when not given)."""
    values = [seq] if not marks or len(set(marks)) == 1 and marks[0] == seq else marks
    values = values + (copies or [])
    token = base64.urlsafe_b64encode(b"".join(v.to_bytes(8, "big") for v in values)).decode("ascii").rstrip("=")
    return f"{seq if counted is None else counted}-{SEQ_MARK}{token}"


def seq_number(seq: str) -> int:
    return int(seq.split("-", 1)[0])


def parse_since(value: Any, current: int) -> int:
    """A feed's `since`: 0, `now` (the `current` seq), or a seq string / number as the feed gave it out."""
    if value in (None, "", 0, "0"):
        return 0
    if value == "now":
        return current
    if isinstance(value, int):
        return value
    head = str(value).split("-", 1)[0]
    if head.isdigit():
        return int(head)
    raise bad_request("Malformed sequence supplied in 'since' parameter.")


def _local_generation(rev: object) -> int:
    """N of a local doc's rev `0-N`; anything else is CouchDB's 500 "Invalid rev format"."""
    number = rev.removeprefix("0-") if isinstance(rev, str) and rev.startswith("0-") else ""
    if not number.isdigit():
        raise CouchError(500, "error", "Invalid rev format")
    return int(number)
