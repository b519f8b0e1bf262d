"""`fanIn: triggered` (the spiegel approach): instead of a continuous job per user database, a one-shot
`_replicator` document per database that changed, written by watch.

The document has a deterministic id (the same as the continuous one's, so switching modes takes the
document over) and records the `update_seq` its run started at. A database is replicated again only once
CouchDB marked its previous run `completed` and its `update_seq` moved since that run began (a
replication's own checkpoint is a `_local` write, which moves nothing); at most `max_triggered` run at
once, the others wait here, never in CouchDB's scheduler where they would compete with continuous jobs.
Writing goes through the replication kind, as a plan and its apply: the one-shot document is a Desired
replication whose body holds that `update_seq`, so a database whose run already started at it plans no
change at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Sequence

from ..apply import execute
from ..client import CouchSession
from ..databases import database_infos, moved_since, seq_number
from ..errors import ReconcileError, ServerError
from ..kinds.base import ResourceKind
from ..kinds.replication import TRIGGER_FIELD, deletion
from ..kinds.user_databases import UserTemplate, replication_id, triggered_replication
from ..model import REPLICATION, Change, Desired, DesiredState
from ..pipeline import make_plan
from ..plan import Policy
from ..replicator import replicator_docs_by_id
from .log import Log
from .metrics import Metrics

FINISHED = ("completed", "failed")  # `_replication_state` of a one-shot run that ended
CATCH_UP = 0.0  # `Run.changed` of a database found behind by a full reconcile rather than heard of


@dataclass(frozen=True)
class Route:
    """One triggered replication: a user database into a target, as the template's replicateTo entry says."""

    doc_id: str
    database: str
    template: UserTemplate
    entry: Mapping[str, Any]

    def run(self, update_seq: str) -> Desired:
        """The one-shot document for a run starting at the database's `update_seq`."""
        desired = triggered_replication(self.template, self.database, self.entry)
        return replace(desired, body={**desired.body, TRIGGER_FIELD: {"update_seq": update_seq}},
                       options={key: value for key, value in desired.options.items() if key != "triggered"})


@dataclass
class Run:
    route: Route
    since: float  # monotonic time it was written (or found running)
    changed: float = CATCH_UP  # monotonic time of the first write it carries; CATCH_UP: unknown


class TriggeredFanIn:
    def __init__(self, session: CouchSession, log: Log, replications: ResourceKind, templates: Sequence[UserTemplate],
                 debounce: float, max_triggered: int, metrics: Metrics):
        self.session, self.log, self.debounce, self.max_triggered = session, log, debounce, max_triggered
        self.metrics = metrics
        self.kinds = {REPLICATION: replications}
        self.templates = [t for t in templates if triggered_entries(t)]
        self.routes: dict[str, list[Route]] = {}  # database -> its triggered replications
        # The databases waiting for a run, in the order they are served; each tick looks at the first few only,
        # so that its cost follows the runs it starts, not the thousands a catch-up leaves waiting.
        self.heard: dict[str, float] = {}  # database -> when a write was first heard, oldest first
        self.behind: dict[str, None] = {}  # databases a full reconcile found behind, served after `heard`
        self.running: dict[str, Run] = {}  # doc id -> its run in flight
        self.markers: dict[str, str] = {}  # doc id -> the update_seq its document says its last run started at
        # doc id -> the latest revision generation watch wrote or read: a read answering an older one came from a
        # copy that has not taken that revision yet (`_behind_known`).
        self.known: dict[str, int] = {}
        self.caught_up = 0.0  # monotonic time of the latest catch-up, when it found databases behind

    def learn(self, template: UserTemplate, databases: Iterable[str], replace_all: bool) -> None:
        if template not in self.templates:
            return
        if replace_all:
            self.routes = {db: [r for r in routes if r.template is not template] for db, routes in self.routes.items()}
        for database in databases:
            if not replace_all and database not in self.routes:
                # A new user's database, learnt by a targeted reconcile: writes made before (a client syncing
                # as soon as it exists) came when it had no route yet, so it is replicated once now.
                self._hear(database)
            routes = [r for r in self.routes.get(database, []) if r.template is not template]
            routes += [Route(replication_id(template, database, entry), database, template, entry)
                       for entry in triggered_entries(template)]
            self.routes[database] = routes

    def changed(self, database: str) -> None:
        """A write: replicated within `debounce` of the first one not replicated yet, however many follow."""
        if database in self.routes:
            self._hear(database)

    def _hear(self, database: str) -> None:
        """`database` waits from now, ahead of the catch-up, unless a write heard before already waits. Only
        now is added, so `heard` stays oldest first."""
        if database not in self.heard:
            self.heard[database] = time.monotonic()
            self.behind.pop(database, None)

    def _fell_behind(self, database: str) -> None:
        if database not in self.heard:
            self.behind[database] = None

    def waiting(self) -> int:
        """How many databases wait for a run."""
        return len(self.heard) + len(self.behind)

    def catch_up(self) -> None:
        """After a full reconcile (a restart, events missed while polling): every database whose
        `update_seq` differs from the one its document's last run started at is replicated again."""
        if not self.routes:
            return
        docs = self._docs([r.doc_id for routes in self.routes.values() for r in routes])
        rows = database_infos(self.session, list(self.routes))
        behind_before = bool(self.behind)
        switched: list[Change] = []
        finished: list[tuple[str, Mapping[str, Any], Any]] = []  # (database, its row, the seq its last run began at)
        for database, routes in self.routes.items():
            for route in routes:
                doc = docs.get(route.doc_id) or {}
                started: Any
                if self._behind_known(route.doc_id, doc):
                    # Watch saw its own trigger complete, or `_collect` will: its run began at watch's marker.
                    if route.doc_id in self.running:
                        continue
                    started = self.markers[route.doc_id]
                else:
                    started = (doc.get(TRIGGER_FIELD) or {}).get("update_seq")
                    if started is not None:
                        self.markers[route.doc_id] = started
                    if doc.get("continuous") is True:  # the entry's fanIn was switched
                        switched.append(deletion(doc))
                        self._fell_behind(database)
                        continue
                    if doc and doc.get("_replication_state") not in FINISHED:
                        self.running.setdefault(route.doc_id, Run(route, time.monotonic()))
                        continue
                if database not in rows:
                    self._fell_behind(database)
                else:
                    finished.append((database, rows[database], started))
        for (database, _, _), moved in zip(finished, moved_since(self.session, finished)):
            if moved:
                self._fell_behind(database)
        if not behind_before and self.behind:
            self.caught_up = time.monotonic()
        if switched:
            self._switch(switched)

    def report(self) -> dict[str, object]:
        """The queue as `reconcile status` shows it: databases waiting for a run, runs in flight, and since when
        the oldest waits (a database a catch-up found behind waits since that catch-up: when it was written
        before is unknown)."""
        since = [self.caught_up] if self.behind else []
        if self.heard:
            since.append(next(iter(self.heard.values())))  # `heard` is oldest first
        oldest = None
        if since:
            age = time.monotonic() - min(since)
            oldest = (datetime.now(timezone.utc) - timedelta(seconds=age)).isoformat(timespec="seconds")
        return {"waiting": self.waiting(), "running": len(self.running), "oldest_waiting": oldest}

    def _switch(self, continuous: Sequence[Change]) -> None:
        """The continuous documents of a switched entry go at once, in bulk: CouchDB's scheduler drops their
        jobs as it sees the deletions (couch_replicator_doc_processor.erl `process_change/2`), so the
        one-shot runs never queue behind up to `max_jobs` of them, and each database's next run (a new
        document under the same id, resuming from the same checkpoint) is its only trigger. One that cannot
        be deleted now (written meanwhile) is rewritten by its run instead."""
        try:
            execute(self.session, continuous, self.kinds)
        except ReconcileError as error:
            self.log("switch", "replication", "", f"{error}; their runs rewrite them", level="warning")
            return
        self.log("switch", "replication", "", f"{len(continuous)} continuous document(s) of `fanIn: triggered` "
                 "entries deleted; each database replicates by a one-shot run, at most "
                 f"{self.max_triggered} at once")

    def tick(self) -> None:
        if self.running:
            self._collect()
        slots = self.max_triggered - len(self.running)
        if slots > 0:
            ready = self._ready(slots)
            if ready:
                self._trigger(ready)
        self.metrics.fan_in_runs.set(len(self.running))
        self.metrics.fan_in_waiting.set(self.waiting())

    def _ready(self, slots: int) -> list[str]:
        """Up to `slots` databases to run now, none with a run in flight: writes heard from the feeds first,
        oldest first, once `debounce` has passed since; the catch-up (a restart, a mode switch: thousands of
        databases at once) fills the slots they leave, so it never delays what users write now. Reads no
        further than it takes: at most the runs in flight besides the slots."""
        busy = {run.route.database for run in self.running.values()}
        quiet = time.monotonic() - self.debounce
        ready: list[str] = []
        for database, when in self.heard.items():
            if when > quiet or len(ready) == slots:
                break  # the rest was heard later still
            if database not in busy:
                ready.append(database)
        for database in self.behind:
            if len(ready) == slots:
                break
            if database not in busy:
                ready.append(database)
        return ready

    def _collect(self) -> None:
        try:
            docs = self._docs(list(self.running))
        except ServerError as error:
            self.log("poll", "replication", "", f"{error}; retrying", level="warning")
            return
        for doc_id, run in list(self.running.items()):
            doc = docs.get(doc_id) or {}
            if self._behind_known(doc_id, doc):
                continue  # still running as far as this read can tell: the next tick asks again
            state = doc.get("_replication_state")
            if doc_id not in docs or state in FINISHED:
                del self.running[doc_id]
                if state == "completed" and self._superseded(run.route, doc):
                    continue
                if run.changed != CATCH_UP and state == "completed":
                    self.metrics.fan_in_delay.observe(time.monotonic() - run.changed)
                outcome = f"{state or 'gone'} after {time.monotonic() - run.since:.2f}s"
                self.log("replicate", "replication", doc_id, outcome, level="error" if state == "failed" else "info")

    def _behind_known(self, doc_id: str, doc: Mapping[str, Any]) -> bool:
        """Whether `doc` was read from a copy that has not yet taken the latest revision watch wrote or read: its
        revision is of an older generation. Each read of a sharded database's document takes the copy that
        answers first (fabric_doc_open.erl); a quorum write, and the `completed` CouchDB's replicator writes into
        one copy (couch_replicator_docs.erl `save_rep_doc`), reach the other copies later. The revision that
        eventually wins is of that generation or a later one (couch_doc:to_doc_info sorts leaves by generation
        first), so an older one says nothing about the run. A deleted document is not read at all: it counts as
        gone. A read that is not behind is the latest known from now on."""
        if not doc:
            return False
        generation = revision_generation(doc.get("_rev"))
        if generation < self.known.get(doc_id, 0):
            return True
        self.known[doc_id] = generation
        return False

    def _superseded(self, route: Route, doc: Mapping[str, Any]) -> bool:
        """A `completed` that is not this trigger's: on a cluster watch may have written the trigger on a copy
        still holding the run before (its replicator writes `completed` into one copy only,
        couch_replicator_docs.erl `save_rep_doc`), and internal replication keeps both branches, of the same
        generation, with the earlier run's the winner (couch_doc:to_doc_info) half the time. No run starts then,
        so the database waits for another trigger, which writes on the winner and deletes the loser."""
        started = (doc.get(TRIGGER_FIELD) or {}).get("update_seq")
        written = self.markers.get(route.doc_id)
        if written is None or started == written:
            return False
        self.log("replicate", "replication", route.doc_id, "an earlier run's completed revision won over this "
                 "trigger's; triggering again", level="warning")
        self._hear(route.database)
        return True

    def _trigger(self, databases: Sequence[str]) -> None:
        """One plan and apply of the one-shot documents of these databases; a database whose last run
        began at its current `update_seq` (an event about its checkpoint) plans no change."""
        routes = [route for db in databases for route in self.routes.get(db, [])]
        changed = {database: self.heard.pop(database, CATCH_UP) for database in databases}
        for database in databases:
            self.behind.pop(database, None)
        try:
            rows = database_infos(self.session, list(databases))
            # The marker as written while the database took no update since: a cluster's text differs with
            # the copies that answered (databases.moved_since), and rewriting the document for that alone
            # would start a run, whose checkpoint is an event, and so on for ever.
            current = [route for route in routes if route.database in rows]
            markers = self._markers(current, rows)
            runs = {route.doc_id: (route, marker) for route, marker in zip(current, markers)}
            wanted = DesiredState({(REPLICATION, doc_id): route.run(seq) for doc_id, (route, seq) in runs.items()})
            plan = make_plan(self.session, wanted, Policy(force=True), self.kinds)
        except ReconcileError as error:
            self._retry(databases, f"{error}; retrying")
            return

        def started(chunk: Sequence[Change]) -> None:
            now = time.monotonic()
            for change in chunk:
                route, seq = runs[change.key]
                self.markers[change.key] = seq
                # A write on revision N makes N + 1; one where none was read makes 1 or, over a deleted one, more.
                self.known[change.key] = revision_generation(change.version) + 1
                self.running[change.key] = Run(route, now, changed[route.database])
                self.log("trigger", "replication", change.key, "one-shot replication started")

        # A change planned on a copy behind the revision watch knows would write a branch beside it, the earlier
        # run's `completed` the winner half the time (`_superseded`): its database waits for the next tick, whose
        # read may take another copy. One planned where no document was read creates it (deleted meanwhile, by
        # watch's switch or by hand), or meets the copies that hold it with a conflict, retried.
        behind = {change.key for change in plan.changes if change.version is not None
                  and revision_generation(change.version) < self.known.get(change.key, 0)}
        for doc_id in behind:
            self._hear(runs[doc_id][0].database)
        writes = [change for change in plan.changes if change.key not in behind]
        try:
            execute(self.session, writes, self.kinds, started)
        except ReconcileError as error:  # a conflict: someone wrote it meanwhile; try again
            self._retry([runs[change.key][0].database for change in writes
                         if change.key not in self.running], str(error))

    def _retry(self, databases: Iterable[str], why: str) -> None:
        self.log("trigger", "replication", "", why, level="warning")
        for database in databases:
            self._hear(database)

    def _markers(self, routes: Sequence[Route], rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Each route's run marker: the one known while its database took no update since, else its update_seq."""
        known = [self.markers.get(route.doc_id) for route in routes]
        moved = moved_since(self.session, [(route.database, rows[route.database], marker)
                                           for route, marker in zip(routes, known)])
        return [str(rows[route.database].get("update_seq")) if moved_now or marker is None else marker
                for route, marker, moved_now in zip(routes, known, moved)]

    def _docs(self, ids: Sequence[str]) -> dict[str, dict]:
        return replicator_docs_by_id(self.session, ids)


def revision_generation(rev: str | None) -> int:
    """The N of a revision `N-hash` (0 for none): read as an update_seq's leading number is."""
    return seq_number(rev)


def triggered_entries(template: UserTemplate) -> list[Mapping[str, Any]]:
    return [entry for entry in template.manifest.spec.get("replicateTo", []) if entry.get("fanIn") == "triggered"]
