"""Stage 4, observe: read the live state of every wanted kind from the server, in bulk."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterator, Mapping, TypeVar

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
    return {name: dict(kinds[name].observe(session, list(wanted.get(name, {}).values()),
                                           prune=prune or name in prune_kinds))
            for name in names}


# One plan reads each live collection once, even when two stages need it: the template resolution
# (reconciler/templates.py) and the user kind both need every `_users` document.
_scopes: dict[int, dict[str, Any]] = {}  # id(session) -> reads; an entry lives as long as its `observation`
_scopes_lock = threading.Lock()


@contextmanager
def observation(session: Any) -> Iterator[None]:
    """Reads made through `shared` inside this block happen once; the next plan reads afresh."""
    with _scopes_lock:
        _scopes[id(session)] = {}
    try:
        yield
    finally:
        with _scopes_lock:
            _scopes.pop(id(session), None)


def shared(session: Any, name: str, read: Callable[[], T]) -> T:
    """`read()`, or what it returned earlier in this session's current `observation` (outside one: read)."""
    with _scopes_lock:
        scope = _scopes.get(id(session))
        if scope is not None and name in scope:
            return scope[name]
    value = read()
    if scope is not None:
        with _scopes_lock:
            scope[name] = value
    return value
