"""`reconcile status`: how the fan-ins and the replications this tool manages are doing, read-only.

Summary first: per fan-in (a UserDatabases template's `replicateTo` entry), the users it selects and how
many have their replication, the states of those replications, and the oldest change not delivered yet,
as a time; then one line per thing that needs attention; then the replications that are not healthy
(`--all`: every one). The counts CouchDB reports (`changes_pending`) are no measure of delay, and a real
CouchDB reports none before a job's first checkpoint, so delay is told by times:

- a continuous replication that is not running (pending, crashing, failed) while its source holds more than
  its checkpoint: undelivered since the scheduler last changed its state (`last_updated`); a running one
  delivers within seconds;
- `fanIn: triggered`: while `reconcile watch` runs (its checkpoint document is written at least every 30 s,
  watch/checkpoint.py), its own queue says since when the oldest database waits; without it, a database
  written since its last one-shot run (its `update_seq` moved since the run began) is undelivered since the
  later of that run's end and the last sign of watch, and nothing will deliver it.

Managed replications are those the manifests declare or that carry the tool's ownership marker. Their state
comes from the replication scheduler: `running`/`completed` are healthy, `pending` until it has waited longer
than a threshold (with more continuous jobs than `[replicator] max_jobs`, jobs take turns), `crashing`,
`failed` and `error` are not; a declared replication with no document is `missing`.

Everything is read in bulk, whatever the number of users: `_users` and `_replicator` (`_all_docs`, pages of
1,000), `/_scheduler/docs/_replicator` (pages of 1,000), the nodes' config, `_dbs_info` of the user databases
whose delivery depends on it (100 per request; none for a triggered fan-in while watch runs: its queue says
what waits) and watch's checkpoint: never one request per user.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Sequence

from .client import CouchSession, db_path
from .databases import database_infos, moved_since, seq_number
from .kinds.replication import TRIGGER_FIELD, local_database
from .kinds.user_databases import UserTemplate, replication_id, selected_users, user_database
from .model import REPLICATION, DesiredState
from .ownership import is_marked
from .reads import observation
from .replicator import REPLICATOR, replicator_docs
from .watch.checkpoint import ALIVE_EVERY, read_checkpoint

PAGE = 1000
HEALTHY = frozenset({"running", "completed"})
UNHEALTHY = frozenset({"crashing", "failed", "error", "missing"})
SHOWN = 5  # names in a line before "and N more"
DETAILS = 10  # unhealthy replications listed without --all
# A watch whose checkpoint is older than this has stopped (it writes one at least every ALIVE_EVERY s).
WATCH_GONE = 3 * ALIVE_EVERY
# CouchDB hides credentials in the URLs it reports; a hand-made document could still carry some.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@/\s]+@")


@dataclass(frozen=True)
class ReplicationStatus:
    id: str
    state: str  # the scheduler's, or "missing" (declared, no document) / "initializing" (not scheduled yet)
    healthy: bool
    error: str | None = None
    changes_pending: int | None = None  # what CouchDB reports, where it does
    source_seq: Any = None
    checkpointed_source_seq: Any = None
    last_updated: str | None = None
    source: str | None = None  # the manifest line that declares it
    fan_in: str | None = None  # the fan-in it belongs to


@dataclass(eq=False)  # one object per entry, told apart by identity
class FanIn:
    """One `replicateTo` entry of a UserDatabases template, over every user it selects."""

    name: str  # TEMPLATE -> TARGET
    mode: str  # continuous | triggered
    source: str  # the manifest line of the entry
    users: int = 0
    without: list[str] = field(default_factory=list)  # users with no replication document
    states: dict[str, int] = field(default_factory=dict)
    undelivered: int = 0  # user databases holding changes not delivered yet (as far as can be told)
    since: str | None = None  # the oldest undelivered change was written at or after this time
    stale_seconds: float | None = None  # now - since
    how: str = ""  # how `since` is known


@dataclass
class Health:
    fan_ins: list[FanIn]
    replications: list[ReplicationStatus]
    watch: dict[str, Any] | None  # what watch's checkpoint says, with `alive`
    stale_threshold: float

    def attention(self) -> list[str]:
        """One line per problem, fan-ins first (worded for people; the exit status is 2 when any)."""
        lines = []
        for fan_in in self.fan_ins:
            if fan_in.without:
                lines.append(f"{fan_in.name}: {_listing(fan_in.without, 'user')} without a replication"
                             + ("; `reconcile watch` writes it at her first run" if fan_in.mode == "triggered"
                                else "; `reconcile apply` writes it"))
            if fan_in.stale_seconds is not None and fan_in.stale_seconds > self.stale_threshold:
                lines.append(f"{fan_in.name}: stale: a change written at or after {fan_in.since} "
                             f"({_ago(fan_in.stale_seconds)}) is not delivered ({fan_in.how}); more than "
                             f"--stale-threshold {_ago(self.stale_threshold).removesuffix(' ago')}")
        # A fan-in's replications by state (thousands of ids say nothing more), the others by name.
        by_state: dict[tuple[str, str], list[str]] = {}
        for status in self.replications:
            if not status.healthy:
                by_state.setdefault((status.fan_in or "", status.state), []).append(status.id)
        for (name, state), ids in sorted(by_state.items()):
            lines.append(f"{name}: {len(ids):,} replication(s) {state}" if name
                         else f"{_listing(ids, 'replication')} {state}")
        return lines

    @property
    def healthy(self) -> bool:
        return not self.attention()


def health(session: CouchSession, state: DesiredState, pending_threshold: float, stale_threshold: float,
           now: datetime | None = None) -> Health:
    """What `reconcile status` shows, read from the server in bulk (the module docstring says how)."""
    now = now or datetime.now(timezone.utc)
    declared = {desired.key: str(desired.source) for (kind, _), desired in state.objects.items() if kind == REPLICATION}
    templates = [template for template in state.templates if isinstance(template, UserTemplate)]
    with observation(session):
        selected = selected_users(session, templates, state)
    documents = {doc["_id"]: doc for doc in replicator_docs(session)}
    fan_ins, routes = _routes(templates, selected)
    managed = {doc_id: doc for doc_id, doc in documents.items()
               if doc_id in declared or doc_id in routes or is_marked(doc)}
    scheduled = {row["doc_id"]: row for row in scheduler_docs(session) if row.get("doc_id") in managed}
    statuses = {}
    for doc_id in sorted(set(declared) | set(managed)):
        fan_in = routes[doc_id][0].name if doc_id in routes else None
        statuses[doc_id] = _status(doc_id, managed.get(doc_id), scheduled.get(doc_id), pending_threshold, now,
                                   declared.get(doc_id), fan_in)
    watch = _watch(session, now)
    _delivery(session, routes, managed, scheduled, statuses, watch, now)
    return Health(fan_ins, list(statuses.values()), watch, stale_threshold)


def _routes(templates: Sequence[UserTemplate], selected: Mapping[str, list[str]]
            ) -> tuple[list[FanIn], dict[str, tuple[FanIn, str]]]:
    """Every template entry's fan-in, and document id -> (its fan-in, its user) for each user it selects."""
    fan_ins, routes = [], {}
    for template in templates:
        users = selected[template.name]
        for index, entry in enumerate(template.manifest.spec.get("replicateTo", [])):
            fan_in = FanIn(f"{template.name} -> {entry['target']}", entry.get("fanIn", "continuous"),
                           str(template.manifest.where("spec", "replicateTo", index)), len(users))
            fan_ins.append(fan_in)
            for user in users:
                routes[replication_id(template, user_database(template.prefix, user), entry)] = (fan_in, user)
    return fan_ins, routes


def _delivery(session: CouchSession, routes: Mapping[str, tuple[FanIn, str]], documents: Mapping[str, dict],
              scheduled: Mapping[str, dict], statuses: Mapping[str, ReplicationStatus],
              watch: dict[str, Any] | None, now: datetime) -> None:
    """Fill each fan-in's users without a replication, its states, and what is not delivered since when."""
    # A running watch's queue says what a triggered fan-in has not delivered: no database need be opened.
    queued = watch is not None and watch["alive"] and not watch.get("held")

    def depends_on_seq(doc_id: str, mode: str) -> bool:  # a triggered one's last run ended; a continuous one idles
        state = statuses[doc_id].state
        return (state == "completed" and not queued) if mode == "triggered" else state not in ("running", "completed")

    sources = {doc_id: local_database(documents[doc_id].get("source")) for doc_id, (fan_in, _) in routes.items()
               if doc_id in documents and depends_on_seq(doc_id, fan_in.mode)}
    rows = database_infos(session, sorted({name for name in sources.values() if name}))
    seqs = {name: info.get("update_seq") for name, info in rows.items()}
    # A triggered run's source moved since the run began: one question per source, asked all at once.
    triggered = {doc_id: source for doc_id, (fan_in, _) in routes.items()
                 if fan_in.mode == "triggered" and (source := sources.get(doc_id)) and source in rows}
    moved = dict(zip(triggered, moved_since(session, [
        (source, rows[source], (documents[doc_id].get(TRIGGER_FIELD) or {}).get("update_seq"))
        for doc_id, source in triggered.items()])))
    ended: dict[FanIn, list[datetime]] = {}  # the times each fan-in's undelivered changes were written at or after
    for doc_id, (fan_in, user) in routes.items():
        status = statuses.get(doc_id)
        if status is None:
            fan_in.without.append(user)
            continue
        fan_in.states[status.state] = fan_in.states.get(status.state, 0) + 1
        doc, row = documents[doc_id], scheduled.get(doc_id) or {}
        seq = seqs.get(sources.get(doc_id) or "")
        if fan_in.mode == "triggered":
            behind = moved.get(doc_id, False) or status.state in UNHEALTHY
            since = doc.get("_replication_state_time")
        else:
            checkpointed = (row.get("info") or {}).get("checkpointed_source_seq")
            behind = seq is not None and seq_number(seq) > seq_number(checkpointed)
            since = row.get("last_updated") or doc.get("_replication_state_time")
        if behind:
            fan_in.undelivered += 1
            if (when := _timestamp(since)) is not None:
                ended.setdefault(fan_in, []).append(when)
    for fan_in in {fan_in for fan_in, _ in routes.values()}:
        oldest: datetime | None = None
        if fan_in.mode == "triggered" and watch is not None and queued:
            queue = watch.get("fan_in") or {}
            fan_in.undelivered += int(queue.get("waiting") or 0)
            oldest, fan_in.how = _timestamp(queue.get("oldest_waiting")), "waiting in `reconcile watch`'s queue"
        elif fan_in.mode == "triggered" and fan_in in ended:
            seen = _timestamp(watch.get("saved_at")) if watch is not None else None
            # Written after its run ended; and had watch still run after that, it would have been delivered.
            oldest = min(max(end, seen or end) for end in ended[fan_in])
            fan_in.how = ("`reconcile watch` holds its runs: its manifests are invalid"
                          if watch is not None and watch["alive"] else "no `reconcile watch` runs to deliver it")
        elif fan_in in ended:
            oldest, fan_in.how = min(ended[fan_in]), "its continuous replication is not running"
        if oldest is not None:
            fan_in.since = oldest.isoformat(timespec="seconds")
            fan_in.stale_seconds = max(0.0, (now - oldest).total_seconds())


def _watch(session: CouchSession, now: datetime) -> dict[str, Any] | None:
    doc = read_checkpoint(session)
    if doc is None:
        return None
    saved = _timestamp(doc.get("saved_at"))
    alive = bool(doc.get("running")) and saved is not None and (now - saved).total_seconds() <= WATCH_GONE
    return {key: doc.get(key) for key in ("writer", "saved_at", "held", "fan_in")} | {"alive": alive}


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


def _status(doc_id: str, doc: Mapping[str, Any] | None, row: Mapping[str, Any] | None, threshold: float,
            now: datetime, where: str | None, fan_in: str | None) -> ReplicationStatus:
    if doc is None:
        return ReplicationStatus(doc_id, "missing", False, "no _replicator document; run apply", source=where)
    if row is None:
        state = doc.get("_replication_state") or "initializing"
        return ReplicationStatus(doc_id, state, state not in UNHEALTHY, _redact(doc.get("_replication_state_reason")),
                                 last_updated=doc.get("_replication_state_time"), source=where, fan_in=fan_in)
    state = row.get("state") or "unknown"
    info: Mapping[str, Any] = row["info"] if isinstance(row.get("info"), Mapping) else {}
    error = info.get("error")
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
        changes_pending=info.get("changes_pending"), source_seq=info.get("source_seq"),
        checkpointed_source_seq=info.get("checkpointed_source_seq"), last_updated=row.get("last_updated"),
        source=where, fan_in=fan_in)


def _timestamp(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _seconds_since(stamp: str | None, now: datetime) -> float | None:
    then = _timestamp(stamp)
    return None if then is None else (now - then).total_seconds()


def _redact(text: str | None) -> str | None:
    return None if text is None else _URL_PASSWORD.sub(r"\1(sensitive)@", text)


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s ago"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m ago"


def _listing(names: Sequence[str], noun: str) -> str:
    shown = ", ".join(f"`{name}`" for name in names[:SHOWN])
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return f"{len(names):,} {noun}{'s' if len(names) != 1 else ''} ({shown}{more})"


def _counts(states: Mapping[str, int]) -> str:
    ordered = ["running", "pending", "crashing", "completed", "failed"]
    keys = ordered + sorted(set(states) - set(ordered))
    return ", ".join(f"{states.get(state, 0):,} {state}" for state in keys if state in ordered or states.get(state))


def render_text(result: Health, every: bool = False) -> str:
    lines = []
    for fan_in in result.fan_ins:
        lines.append(f"Fan-in {fan_in.name} (fanIn {fan_in.mode}; {fan_in.source})")
        covered = fan_in.users - len(fan_in.without)
        lines.append(f"  users         {fan_in.users:,}: {covered:,} with a replication, {len(fan_in.without):,} without")
        lines.append(f"  replications  {_counts(fan_in.states)}")
        oldest = "" if fan_in.since is None else (
            f"; the oldest change written at or after {fan_in.since} ({_ago(fan_in.stale_seconds or 0)}; {fan_in.how})")
        lines.append(f"  undelivered   {fan_in.undelivered:,} user database(s) hold changes not delivered yet{oldest}")
        if fan_in.mode == "triggered":
            lines.append(f"  watch         {_watch_line(result.watch)}")
    others = [status for status in result.replications if status.fan_in is None]
    counts: dict[str, int] = {}
    for status in others:
        counts[status.state] = counts.get(status.state, 0) + 1
    if others:
        lines.append(f"Replications the manifests declare: {_counts(counts)}")
    attention = result.attention()
    if attention:
        lines += ["", "Needs attention:"] + [f"  - {line}" for line in attention]
    # The declared replications first: a few, each its own concern, never hidden behind a fan-in's thousands.
    shown = sorted((status for status in result.replications if every or not status.healthy),
                   key=lambda status: status.fan_in is not None)
    if shown:
        lines += [""] + _table(shown if every else shown[:DETAILS])
        if not every and len(shown) > DETAILS:
            lines.append(f"... and {len(shown) - DETAILS:,} more that need attention (--all lists every replication)")
    if not result.replications and not result.fan_ins:
        return "No managed replications.\n"
    every_count: dict[str, int] = {}
    for status in result.replications:
        every_count[status.state] = every_count.get(status.state, 0) + 1
    summary = ", ".join(f"{count:,} {state}" for state, count in sorted(every_count.items()))
    unhealthy = [status.id for status in sorted(result.replications, key=lambda status: status.fan_in is not None)
                 if not status.healthy]
    listed = ", ".join(unhealthy[:SHOWN]) + (f" and {len(unhealthy) - SHOWN:,} more" if len(unhealthy) > SHOWN else "")
    lines += ["", f"{len(result.replications):,} replication{'s' if len(result.replications) != 1 else ''}: "
              f"{summary}." + (f" Needs attention: {listed}." if unhealthy else
                               " Needs attention: see above." if attention else " All healthy.")]
    return "\n".join(lines) + "\n"


def _watch_line(watch: Mapping[str, Any] | None) -> str:
    if watch is None:
        return "never ran against this server: nothing starts the one-shot runs"
    queue = watch.get("fan_in") or {}
    if not watch["alive"]:
        return f"not running (last seen {watch.get('saved_at')}, {watch.get('writer')}): nothing starts the runs"
    if watch.get("held"):
        return f"running ({watch.get('writer')}) but holding: its manifests are invalid (see its log)"
    return (f"running ({watch.get('writer')}, seen {watch.get('saved_at')}); {queue.get('waiting', 0):,} "
            f"database(s) waiting, {queue.get('running', 0):,} run(s) in flight")


def _table(statuses: Sequence[ReplicationStatus]) -> list[str]:
    width = max(len("REPLICATION"), *(len(status.id) for status in statuses))
    lines = [f"{'REPLICATION':<{width}}  {'STATE':<12}  {'PENDING':>8}  ERROR"]
    for status in statuses:
        pending = "-" if status.changes_pending is None else str(status.changes_pending)
        lines.append(f"{status.id:<{width}}  {status.state:<12}  {pending:>8}  {status.error or ''}".rstrip())
    return lines


def render_json(result: Health) -> str:
    document = {"healthy": result.healthy, "attention": result.attention(),
                "fan_ins": [asdict(fan_in) for fan_in in result.fan_ins], "watch": result.watch,
                "replications": [asdict(status) for status in result.replications]}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
