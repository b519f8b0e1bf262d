"""Stage 4, observe: read the live state of every wanted kind from the server, in bulk."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Observed:
    """One live object as the server holds it, with server-owned noise removed."""

    kind: str
    key: str
    body: Mapping[str, Any]
    version: str | None  # proves the object unchanged later (_rev, update_seq, digest): stale-plan checks
    managed: bool = False  # carries this tool's ownership marker, so it may be pruned
    facts: Mapping[str, Any] = field(default_factory=dict)  # what the plan may need beyond the body (doc_count...)


def observe(session: Any, wanted: Mapping[str, Mapping[str, Any]], kinds: Mapping[str, Any],
            prune: bool, prune_kinds: Collection[str] = ()) -> dict[str, dict[str, Observed]]:
    """The live objects of every kind the manifests want (of every kind when `prune`), read kind by kind.

    Kinds run one after another: each already spreads its reads over the session's
    bounded pool, and a kind running inside that pool could starve its own reads.
    Kinds in `prune_kinds` are pruned even without `prune` (`DesiredState.prune_kinds`: the manifests
    let apply delete that kind's managed objects nothing declares any more), and observed even when
    nothing of theirs is wanted.
    """
    names = sorted(kinds) if prune else sorted({name for name in wanted if wanted[name]} | set(prune_kinds))
    names.sort(key=lambda name: kinds[name].order)  # parents first: a child may reuse what they read
    live: dict[str, dict[str, Observed]] = {}
    for name in names:
        kind, desired = kinds[name], list(wanted.get(name, {}).values())
        pruned = prune or name in prune_kinds
        if getattr(kind, "follows_parent_version", False):
            live[name] = _observe_changed(session, name, kind, desired, pruned, live)
        else:
            live[name] = dict(kind.observe(session, desired, prune=pruned))
    return live


@dataclass(eq=False)
class SessionReads:
    """What a session has read that its later reads may reuse. The session holds it (`CouchSession.reads`),
    so it ends with the session; `observation` and `remembering` open and close its two scopes.

    The lock guards both: `shared` runs on the session's pool threads and `forget_verified` on watch's
    feed threads while the main thread plans."""

    plan: dict[str, Any] | None = None  # `shared` name -> what it read, while an `observation` is open
    # (kind, key) -> (its parent's version when read, the parent, the read), inside `remembering`
    verified: dict[tuple[str, str], tuple[str, tuple[str, str], Observed]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@contextmanager
def remembering(session: Any) -> Iterator[None]:
    """Inside this block (a long-lived session: `reconcile watch`), objects of kinds that declare
    `follows_parent_version` are read again only when their parent's version moved since this session
    read them (a `_security` object while its database's `update_seq` stays the same string); a one-shot
    plan reads everything. docs/watch.md says why this stays correct."""
    reads: SessionReads = session.reads
    with reads.lock:
        reads.verified = {}
    try:
        yield
    finally:
        with reads.lock:
            reads.verified = None


def _observe_changed(session: Any, name: str, kind: Any, desired: list, prune: bool,
                     live: Mapping[str, Mapping[str, Observed]]) -> dict[str, Observed]:
    """`kind.observe` for the objects whose parent moved since they were last read; the others as read then.

    The parent kind was observed first (kinds run in `order`), so a write landing between the two reads
    leaves the recorded parent version older than the object read: the next observation reads it again
    (never the other way)."""
    reads: SessionReads = session.reads
    with reads.lock:
        verified = reads.verified
    if verified is None:
        return dict(kind.observe(session, desired, prune=prune))

    def parent_version(key: str) -> tuple[tuple[str, str], str | None]:
        parent = kind.parent(key)
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


def forget_verified(session: Any, parents: Iterable[tuple[str, str]]) -> None:
    """Drop what was read of objects living in these parents (a database deleted, or created again:
    `reconcile watch` hears it from `/_db_updates`), so the next observation reads them whatever the
    parent's version."""
    reads: SessionReads = session.reads
    gone = set(parents)
    with reads.lock:
        if reads.verified is None:
            return
        for key in [key for key, (_, parent, _) in reads.verified.items() if parent in gone]:
            del reads.verified[key]


# One plan reads each live collection once, even when two stages need it: the template resolution
# (reconciler/templates.py) and the user kind both need every `_users` document.
@contextmanager
def observation(session: Any) -> Iterator[None]:
    """Reads made through `shared` inside this block happen once; the next plan reads afresh.

    An observation opened inside another one of the same session joins it: `reconcile watch` opens one
    around a targeted plan to hand it, through `shared`, only the `_users` documents that changed."""
    reads: SessionReads = session.reads
    with reads.lock:
        outermost = reads.plan is None
        if outermost:
            reads.plan = {}
    try:
        yield
    finally:
        if outermost:
            with reads.lock:
                reads.plan = None


def shared(session: Any, name: str, read: Callable[[], T]) -> T:
    """`read()`, or what it returned earlier in this session's current `observation` (outside one: read)."""
    reads: SessionReads = session.reads
    with reads.lock:
        scope = reads.plan
        if scope is not None and name in scope:
            return scope[name]
    value = read()  # outside the lock: the read itself may use the pool, whose threads call `shared` too
    if scope is None:
        return value
    with reads.lock:  # two threads that read at once share the first answer, so updates to it are not lost
        return scope.setdefault(name, value)
