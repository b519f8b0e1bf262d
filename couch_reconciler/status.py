"""`reconcile status`: how the replications this tool manages are doing, read-only.

Managed means declared by a manifest or carrying the tool's ownership marker (so the per-user
replications a UserDatabases template wrote count too). Their state comes from the replication
scheduler, read in pages (`GET /_scheduler/docs/_replicator`), never one request per replication:
`running`/`completed` are healthy, `pending` is healthy until it has waited longer than a threshold
(with more continuous jobs than `[replicator] max_jobs`, jobs take turns), and `crashing`, `failed`
and `error` are not. A declared replication with no document is `missing` (apply has not run).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from .client import CouchSession, db_path
from .model import Source
from .ownership import is_marked
from .replicator import REPLICATOR, replicator_docs

PAGE = 1000
HEALTHY = frozenset({"running", "completed"})
UNHEALTHY = frozenset({"crashing", "failed", "error", "missing"})
# CouchDB hides credentials in the URLs it reports; a hand-made document could still carry some.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@/\s]+@")


@dataclass(frozen=True)
class ReplicationStatus:
    id: str
    state: str  # the scheduler's, or "missing" (declared, no document) / "initializing" (not scheduled yet)
    healthy: bool
    error: str | None = None
    changes_pending: int | None = None  # lag, where CouchDB reports it
    source_seq: Any = None
    checkpointed_source_seq: Any = None
    last_updated: str | None = None
    source: str | None = None  # the manifest line that declares it


def replication_status(session: CouchSession, declared: Mapping[str, Source], pending_threshold: float,
                       now: datetime | None = None) -> list[ReplicationStatus]:
    now = now or datetime.now(timezone.utc)
    documents = {doc["_id"]: doc for doc in replicator_docs(session)
                 if doc["_id"] in declared or is_marked(doc)}
    scheduled = {row["doc_id"]: row for row in scheduler_docs(session) if row.get("doc_id") in documents}
    found = []
    for doc_id in sorted(set(declared) | set(documents)):
        where = str(declared[doc_id]) if doc_id in declared else None
        if doc_id not in documents:
            found.append(ReplicationStatus(doc_id, "missing", False, "no _replicator document; run apply",
                                           source=where))
            continue
        row = scheduled.get(doc_id)
        if row is None:
            doc = documents[doc_id]
            state = doc.get("_replication_state") or "initializing"
            found.append(ReplicationStatus(doc_id, state, state not in UNHEALTHY,
                                           _redact(doc.get("_replication_state_reason")), source=where))
            continue
        found.append(_from_scheduler(doc_id, row, pending_threshold, now, where))
    return found


def scheduler_docs(session: CouchSession) -> Iterator[dict]:
    """Every row of `/_scheduler/docs/_replicator`, a page at a time."""
    skip = 0
    while True:
        page = session.get(db_path("_scheduler", "docs", REPLICATOR), params={"limit": str(PAGE), "skip": str(skip)},
                           what="reading /_scheduler/docs")
        rows = page.get("docs") or []
        yield from rows
        skip += len(rows)
        if len(rows) < PAGE or skip >= page.get("total_rows", 0):
            return


def _from_scheduler(doc_id: str, row: Mapping[str, Any], threshold: float, now: datetime,
                    where: str | None) -> ReplicationStatus:
    state = row.get("state") or "unknown"
    info = row.get("info") or {}
    error = info.get("error") if isinstance(info, Mapping) else None
    if isinstance(error, str):
        # CouchDB prints crash reasons with Erlang's ~p, broken over lines at 80 columns: one line here.
        error = " ".join(error.split())
    healthy = state in HEALTHY or state == "initializing"
    if state == "pending":
        waited = _seconds_since(row.get("last_updated"), now)
        healthy = waited is None or waited <= threshold
        if not healthy:
            error = error or f"pending for {waited:.0f}s (more than {threshold:g}s)"
    return ReplicationStatus(
        doc_id, state, healthy and state not in UNHEALTHY,
        error=_redact(error if isinstance(error, str) or error is None else json.dumps(error)),
        changes_pending=info.get("changes_pending") if isinstance(info, Mapping) else None,
        source_seq=info.get("source_seq") if isinstance(info, Mapping) else None,
        checkpointed_source_seq=info.get("checkpointed_source_seq") if isinstance(info, Mapping) else None,
        last_updated=row.get("last_updated"), source=where)


def _seconds_since(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (now - then).total_seconds()


def _redact(text: str | None) -> str | None:
    return None if text is None else _URL_PASSWORD.sub(r"\1(sensitive)@", text)


def render_text(statuses: list[ReplicationStatus]) -> str:
    if not statuses:
        return "No managed replications.\n"
    width = max(len("REPLICATION"), *(len(status.id) for status in statuses))
    lines = [f"{'REPLICATION':<{width}}  {'STATE':<12}  {'PENDING':>8}  ERROR"]
    for status in statuses:
        pending = "-" if status.changes_pending is None else str(status.changes_pending)
        lines.append(f"{status.id:<{width}}  {status.state:<12}  {pending:>8}  {status.error or ''}".rstrip())
    unhealthy = [status.id for status in statuses if not status.healthy]
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status.state] = counts.get(status.state, 0) + 1
    summary = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    lines.append("")
    lines.append(f"{len(statuses)} replication{'s' if len(statuses) != 1 else ''}: {summary}."
                 + (f" Needs attention: {', '.join(unhealthy)}." if unhealthy else " All healthy."))
    return "\n".join(lines) + "\n"


def render_json(statuses: list[ReplicationStatus]) -> str:
    document = {"healthy": all(status.healthy for status in statuses),
                "replications": [asdict(status) for status in statuses]}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
