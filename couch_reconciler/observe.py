"""Stage 4, observe: read the live state of every wanted kind from the server, in bulk.

Kinds declare what they read (`ResourceKind.reads`); kinds whose reads are disjoint are observed at once, so
that `_users`, the nodes' config, `_replicator` and the databases' own objects are read side by side rather than
one after the other, each kind's reads spread over the session's one bounded pool. Kinds sharing a read are
observed in `order`, parents first: the later one reuses what the earlier read (`reads.shared`).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Collection, Mapping, Sequence

from .client import CouchSession
from .kinds.base import ResourceKind
from .model import Desired, Observed
from .reads import wanting


def observe(session: CouchSession, wanted: Mapping[str, Mapping[str, Desired]], kinds: Mapping[str, ResourceKind],
            prune: bool, prune_kinds: Collection[str] = ()) -> dict[str, dict[str, Observed]]:
    """The live objects of every kind the manifests want (of every kind when `prune`).

    Each kind is observed on a thread of its own, which only waits on the session's pool (a kind observed
    inside that pool could starve its own reads), once the kinds before it that share one of its reads are
    observed; a failure stops the kinds that wait for it, and the first failing kind in `order` speaks.
    Kinds in `prune_kinds` are pruned even without `prune` (`DesiredState.prune_kinds`: the manifests
    let apply delete that kind's managed objects nothing declares any more), and observed even when
    nothing of theirs is wanted.
    """
    names = sorted(kinds) if prune else sorted({name for name in wanted if wanted[name]} | set(prune_kinds))
    names.sort(key=lambda name: kinds[name].order)
    live: dict[str, dict[str, Observed]] = {}  # each kind's, once observed: a child reads its parents' versions

    def observe_kind(name: str, before: Sequence[Future[dict[str, Observed]]]) -> dict[str, Observed]:
        for earlier in before:
            earlier.result()
        kind, desired = kinds[name], list(wanted.get(name, {}).values())
        pruned = prune or name in prune_kinds
        if kind.follows_parent_version:
            found = _observe_changed(session, name, kind, desired, pruned, live)
        else:
            found = dict(kind.observe(session, desired, prune=pruned))
        live[name] = found
        return found

    with wanting(session, wanted), ThreadPoolExecutor(max(len(names), 1), thread_name_prefix="observe") as kinds_at_once:
        started: dict[str, Future[dict[str, Observed]]] = {}
        for name in names:
            before = [future for other, future in started.items() if _share_reads(kinds[name], kinds[other])]
            started[name] = kinds_at_once.submit(observe_kind, name, before)
        return {name: started[name].result() for name in names}


def _share_reads(one: ResourceKind, other: ResourceKind) -> bool:
    """Whether two kinds read something in common (a kind that declares no reads shares them all)."""
    return one.reads is None or other.reads is None or bool(one.reads & other.reads)


def _observe_changed(session: CouchSession, name: str, kind: ResourceKind, desired: Sequence[Desired], prune: bool,
                     live: Mapping[str, Mapping[str, Observed]]) -> dict[str, Observed]:
    """`kind.observe` for the objects whose parent moved since they were last read (`reads.remembering`);
    the others as read then.

    The parent kind was observed first (it shares a read with its children), so a write landing between the two reads
    leaves the recorded parent version older than the object read: the next observation reads it again
    (never the other way)."""
    reads = session.reads
    with reads.lock:
        verified = reads.verified
    if verified is None:
        return dict(kind.observe(session, desired, prune=prune))

    def parent_version(key: str) -> tuple[tuple[str, str], str | None]:
        parent = kind.parent(key)
        assert parent is not None, f"{name} follows its parent's version, so it names a parent"
        seen = live.get(parent[0], {}).get(parent[1])
        return parent, (seen.version if seen is not None and seen.version not in (None, "None") else None)

    hits, unread = {}, []
    with reads.lock:
        for item in desired:
            entry = verified.get((name, item.key))
            if entry is not None and entry[0] is not None and entry[0] == parent_version(item.key)[1]:
                hits[item.key] = entry[2]
            else:
                unread.append(item)
    read = dict(kind.observe(session, unread, prune=prune)) if unread or prune else {}
    with reads.lock:
        for item in unread:
            parent, version = parent_version(item.key)
            if item.key in read and version is not None:
                verified[(name, item.key)] = (version, parent, read[item.key])
            else:  # missing, or its parent's version unknown: nothing to vouch for
                verified.pop((name, item.key), None)
    return {**read, **hits}
