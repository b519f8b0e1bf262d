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
