"""The `_replicator` database: its documents read in bulk, for the replication kind, `reconcile status` and
`reconcile watch`'s triggered fan-in."""

from __future__ import annotations

import json
from typing import Iterator, Sequence

from .client import CouchSession, batched, db_path

REPLICATOR = "_replicator"
PAGE = 1000


def replicator_docs(session: CouchSession) -> Iterator[dict]:
    """Every replication document, a page of `_all_docs?include_docs=true` at a time (never one GET each)."""
    start: str | None = None
    while True:
        params = {"include_docs": "true", "limit": str(PAGE + 1)}
        if start is not None:
            params["start_key"] = json.dumps(start)
        rows = session.get(db_path(REPLICATOR, "_all_docs"), params=params, what="reading _replicator")["rows"]
        yield from (row["doc"] for row in rows[:PAGE] if row.get("doc") and not row["id"].startswith("_design/"))
        if len(rows) <= PAGE:
            return
        start = rows[PAGE]["key"]


def replicator_docs_by_id(session: CouchSession, ids: Sequence[str]) -> dict[str, dict]:
    """Id -> document for those of `ids` that exist, `PAGE` ids per `POST _all_docs?include_docs=true`."""
    def read(chunk: list[str]) -> list[dict]:
        return session.post(db_path(REPLICATOR, "_all_docs"), {"keys": chunk}, params={"include_docs": "true"},
                            what="reading _replicator")["rows"]

    return {row["id"]: row["doc"] for rows in session.map(read, batched(list(ids), PAGE))
            for row in rows if row.get("doc")}
