"""The `_replicator` database: its documents read in bulk, for the replication kind, `reconcile status` and
`reconcile watch`'s triggered fan-in.

Every read asks for `_conflicts`: on a cluster a replication document gets conflicting revisions as a
matter of course (docs/couchdb.md, Replication), and a write of the tool removes those it saw."""

from __future__ import annotations

from typing import Iterator, Sequence

from .client import CouchSession

REPLICATOR = "_replicator"


def replicator_docs(session: CouchSession) -> Iterator[dict]:
    """Every replication document, a page at a time (never one GET each); design documents left out."""
    return (doc for doc in session.all_docs(REPLICATOR, what="reading _replicator", conflicts=True)
            if not doc["_id"].startswith("_design/"))


def replicator_docs_by_id(session: CouchSession, ids: Sequence[str]) -> dict[str, dict]:
    """Id -> document for those of `ids` that exist, read by their keys."""
    return session.docs_by_id(REPLICATOR, ids, what="reading _replicator", conflicts=True)
