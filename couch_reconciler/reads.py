"""What a session has read that its later reads may reuse: the two scopes stages and kinds share reads in.

`observation(session)` is a plan's scope: reads made through `shared(session, name, read)` inside it (every
`_users` document, the nodes' config, the `_dbs_info` rows) happen once, and afresh in the next plan.
`remembering(session)` is `reconcile watch`'s: objects of kinds that declare `follows_parent_version` are
read again only when their parent's version moved (couch_reconciler/observe.py).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, TypeVar

from .model import Desired, Observed

T = TypeVar("T")

# What a kind's observation reads (`ResourceKind.reads`): kinds reading different things are observed at once.
CLUSTER_CONFIG = "cluster config"  # `/_membership` and each node's config (couch_reconciler/nodes.py)
DATABASES = "databases"  # which databases exist, their `_dbs_info` rows, what lives inside them
USER_DOCUMENTS = "user documents"  # the user documents
REPLICATION_DOCUMENTS = "replication documents"  # the replication documents


@dataclass(eq=False)
class SessionReads:
    """What a session has read that its later reads may reuse. The session holds it (`CouchSession.reads`),
    so it ends with the session; `observation` and `remembering` open and close its two scopes.

    The lock guards both: `shared` runs on the session's pool threads and `forget_verified` on watch's
    feed threads while the main thread plans."""

    plan: dict[str, Any] | None = None  # `shared` name -> what it read, while an `observation` is open
    # (kind, key) -> (its parent's version when read, the parent, the read), inside `remembering`
    verified: dict[tuple[str, str], tuple[str, tuple[str, str], Observed]] | None = None
    # What the plan being observed wants, by kind (set by observe.observe): a kind may read together what lives
    # together (the database kind reads, as it opens each database, the `_security` object wanted of it).
    wanted: Mapping[str, Mapping[str, Desired]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Reading(Protocol):
    """Anything holding a SessionReads: a CouchSession."""

    @property
    def reads(self) -> SessionReads: ...


@contextmanager
def observation(session: Reading) -> Iterator[None]:
    """Reads made through `shared` inside this block happen once; the next plan reads afresh.

    An observation opened inside another one of the same session joins it: `reconcile watch` opens one
    around a targeted plan to hand it, through `shared`, only the `_users` documents that changed."""
    reads = session.reads
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


def shared(session: Reading, name: str, read: Callable[[], T]) -> T:
    """`read()`, or what it returned earlier in this session's current `observation` (outside one: read)."""
    reads = session.reads
    with reads.lock:
        scope = reads.plan
        if scope is not None and name in scope:
            return scope[name]  # type: ignore[no-any-return]
    value = read()  # outside the lock: the read itself may use the pool, whose threads call `shared` too
    if scope is None:
        return value
    with reads.lock:  # two threads that read at once share the first answer, so updates to it are not lost
        return scope.setdefault(name, value)  # type: ignore[no-any-return]


@contextmanager
def remembering(session: Reading) -> Iterator[None]:
    """Inside this block (a long-lived session: `reconcile watch`), objects of kinds that declare
    `follows_parent_version` are read again only when their parent's version moved since this session
    read them (a `_security` object while its database's `update_seq` number stays the same); a one-shot
    plan reads everything. docs/watch.md says why this stays correct."""
    reads = session.reads
    with reads.lock:
        reads.verified = {}
    try:
        yield
    finally:
        with reads.lock:
            reads.verified = None


def is_remembering(session: Reading) -> bool:
    """Inside `remembering`: reads of kinds that follow their parent's version may be skipped."""
    with session.reads.lock:
        return session.reads.verified is not None


@contextmanager
def wanting(session: Reading, wanted: Mapping[str, Mapping[str, Desired]]) -> Iterator[None]:
    """Inside this block (observe.observe), `wanted_in_plan` tells any kind what the plan wants of another."""
    reads = session.reads
    with reads.lock:
        reads.wanted = wanted
    try:
        yield
    finally:
        with reads.lock:
            reads.wanted = {}


def wanted_in_plan(session: Reading, kind: str) -> Mapping[str, Desired]:
    """Key -> Desired object of `kind` in the plan being observed (empty outside `wanting`)."""
    with session.reads.lock:
        return session.reads.wanted.get(kind, {})


def forget_verified(session: Reading, parents: Iterable[tuple[str, str]]) -> None:
    """Drop what was read of objects living in these parents (a database deleted, or created again:
    `reconcile watch` hears it from `/_db_updates`), so the next observation reads them whatever the
    parent's version."""
    reads = session.reads
    gone = set(parents)
    with reads.lock:
        if reads.verified is None:
            return
        for key in [key for key, (_, parent, _) in reads.verified.items() if parent in gone]:
            del reads.verified[key]
