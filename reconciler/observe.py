"""Stage 4, observe: read the live state of every wanted kind from the server, in bulk."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


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
            prune: bool) -> dict[str, dict[str, Observed]]:
    """The live objects of every kind the manifests want (of every kind when `prune`), read kind by kind.

    Kinds run one after another: each already spreads its reads over the session's
    bounded pool, and a kind running inside that pool could starve its own reads.
    """
    names = sorted(kinds) if prune else sorted(name for name in wanted if wanted[name])
    return {name: dict(kinds[name].observe(session, list(wanted.get(name, {}).values()), prune=prune))
            for name in names}
