"""The watch loop: full reconciles at start and every `interval`, targeted reconciles of the bursts of
events in between, the triggered fan-in's ticks, and the checkpoint (the package docstring says what each does)."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import replace
from typing import Callable, Mapping, Sequence

from ..apply import execute
from ..client import CouchSession
from ..errors import ReconcileError, ServerError
from ..kinds import RESOURCES
from ..kinds.base import ResourceKind
from ..kinds.user import ID_PREFIX, USERS_DB
from ..kinds.user_databases import UserTemplate, database_user
from ..model import DATABASE, REPLICATION, Change, Create, Delete, DesiredState, Plan, Replace
from ..pipeline import InvalidManifests, desired_state, make_plan
from ..plan import PlanRefused, Policy, check_safety
from ..reads import forget_verified, observation, remembering, shared
from ..resolve import resolve
from ..secrets import SecretPolicy
from .checkpoint import Checkpoint
from .events import USERS_FEED, Feeds, Pending, user_change
from .fan_in import TriggeredFanIn
from .feeds import Batch, backoff
from .log import Log, listed
from .metrics import Metrics
from .narrowing import changed_objects, narrowed
from .settings import Settings


def manifests_in(directory: str, secrets: SecretPolicy = SecretPolicy(read=True)) -> Callable[[], DesiredState]:
    """The desired state of the manifests in `directory`, read anew at each call as `plan` reads it (every
    secret read); pipeline.InvalidManifests, with every diagnostic, when `plan` would refuse it."""
    return lambda: desired_state(directory, secrets)[0]


class Watcher:
    def __init__(self, session: CouchSession, desired: Callable[[], DesiredState], policy: Policy,
                 settings: Settings, log: Log, stopping: threading.Event,
                 kinds: Mapping[str, ResourceKind] | None = None, metrics: Metrics | None = None):
        self.session, self.desired, self.policy, self.settings = session, desired, policy, settings
        self.metrics = metrics or Metrics()
        # Read at every full reconcile (the first at start). Until a read succeeds, and while the latest
        # one found the manifests invalid, targeted reconciles and triggered replications are `held`.
        self.state: DesiredState | None = None
        self.held = True
        self.log, self.stopping = log, stopping
        self.kinds = kinds or RESOURCES
        self.feeds = Feeds(session, settings, log, stopping, Checkpoint(session, log, settings.checkpoint_every))
        self.pending = Pending()
        self.owners: dict[str, str] = {}  # user database -> user, from the latest resolution
        self.static_databases: set[str] = set()
        self.fan_in = self._fan_in([])
        # A refused full plan may mean broken manifests, which must not be applied user by user either. Refused
        # by the share thresholds, the refusal concerns the objects it would have rewritten or deleted
        # (`refused`): targeted reconciles, which cannot see the whole kind and so run without the thresholds,
        # leave those alone and go on with the rest (a new sign-up is none of them). Refused for a
        # destruction (no plan to tell which objects), every targeted reconcile waits (`refused_all`).
        self.refused: set[tuple[str, str]] = set()
        self.refused_all = False

    def _fan_in(self, templates: Sequence[UserTemplate]) -> TriggeredFanIn:
        return TriggeredFanIn(self.session, self.log, self.kinds[REPLICATION], templates, self.settings.debounce,
                              self.settings.max_triggered, self.metrics)

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        with remembering(self.session):
            return self._run()

    def _run(self) -> int:
        if not self.feeds.start():
            return 1
        failures = 0
        next_full = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= next_full:
                if self._full_reconcile():
                    failures = 0
                    next_full = time.monotonic() + self.settings.interval
                else:
                    failures += 1
                    next_full = time.monotonic() + min(backoff(failures, self.settings.backoff_cap),
                                                      self.settings.interval)
                continue
            try:
                fatal = self._between(min(0.2, max(next_full - now, 0.01)))
            except Exception as error:  # a defect: said in one line, and watch goes on (a thread must not end mute)
                self.log("watch", "loop", "", f"failed: {failure(error)}; going on", level="error")
                self.stopping.wait(self.settings.backoff_cap)
                continue
            if fatal is not None:
                self.log("stop", "watch", "", f"{fatal}", level="error")
                self.feeds.save(force=True)
                return 1
        self.feeds.stopped()
        return 0

    def _between(self, timeout: float) -> ServerError | None:
        """What happens between full reconciles, once: the feeds' events (waiting up to `timeout` for the
        first), targeted reconciles, the fan-in, the checkpoint. A fatal feed error is returned."""
        batches, fatal = self.feeds.drain(timeout=timeout)
        for batch in batches:
            self._take(batch)
        if fatal is not None:
            return fatal
        self.feeds.poll(self._database_event)
        self._act_on_pending()
        if not self.held:
            self.fan_in.tick()
        self.feeds.save(report=self._report())
        self.metrics.not_converged.set(len(self.pending.users))
        self.metrics.positions("received", self.feeds.received)
        self.metrics.positions("handled", self.feeds.positions)
        return None

    def _report(self) -> dict[str, object]:
        """What `reconcile status` reads of this watch in its checkpoint (watch/checkpoint.py)."""
        return {"running": True, "held": self.held, "fan_in": self.fan_in.report()}

    # ------------------------------------------------------------------ events
    def _take(self, batch: Batch) -> None:
        if batch.feed == USERS_FEED:
            for row in batch.rows:
                self._user_changed(row)
        else:
            for row in batch.rows:
                self._database_event(row.get("db_name", ""), row.get("type", ""))
        for row in batch.rows:
            kind = ("deleted" if row.get("deleted") else "changed") if batch.feed == USERS_FEED else row.get("type")
            self.metrics.events.labels(feed=batch.feed, type=str(kind)).inc()
        if not self.pending:
            self.feeds.handled({batch.feed: batch.last_seq})

    def _user_changed(self, row: Mapping[str, object]) -> None:
        change = user_change(row)
        if change is None:
            return
        name, doc = change
        if doc is None:
            # Its database stays (deleteWithUser and --allow-delete apply at full reconciles only).
            self.log("event", "user", name, "deleted; what was made for it is left to the next full reconcile")
            return
        self.pending.user(name, doc)

    def _database_event(self, database: str, kind: str) -> None:
        if kind in ("created", "deleted"):
            forget_verified(self.session, [(DATABASE, database)])
            if database in self.static_databases or self._owner_of(database) is not None:
                self.pending.database(database)
        if kind in ("created", "updated"):
            self.fan_in.changed(database)

    # ------------------------------------------------------------------ reconciles
    def _read_manifests(self) -> bool:
        """The desired state as the manifests say now; False (logged, targeted reconciles held) when invalid."""
        try:
            state = self.desired()
        except InvalidManifests as invalid:
            for diagnostic in invalid.diagnostics:
                self.log("read", "manifests", "", str(diagnostic), level="error" if diagnostic.is_error else "warning")
            self.log("reconcile", "full", "", "skipped: the manifests are invalid (above); nothing is changed "
                     "until a full reconcile finds them valid", level="error")
            if not self.held:
                self.log("reconcile", "targeted", "", "held until a full reconcile finds the manifests valid",
                         level="warning")
            self.held = True
            return False
        if self.held and self.state is not None:
            self.log("read", "manifests", "", "valid again; targeted reconciles resume")
        changed = None if self.state is None else changed_objects(self.state, state)
        if changed:
            self.log("read", "manifests", "", f"changed since the last full reconcile: {changed} object(s) "
                     "added, changed or removed")
        if changed is None or changed:
            self.state = state
            self.static_databases = {key for kind, key in state.objects if kind == DATABASE}
            # Routes are learnt again from the new templates below; catch_up finds the runs in flight.
            self.fan_in = self._fan_in([t for t in state.templates if isinstance(t, UserTemplate)])
        self.held = False
        return True

    def _full_reconcile(self) -> bool:
        started = time.monotonic()
        self.log("reconcile", "full", "", "started")
        try:
            if not self._read_manifests():
                self._measured("full", "invalid", started)
                return True  # nothing to retry sooner: the folder changes with the next deployment
            assert self.state is not None
            with observation(self.session):
                plan = make_plan(self.session, self.state, replace(self.policy, force=True), self.kinds)
                self._learn(resolve(self.session, self.state)[0], replace_all=True)  # the same reads: no request
            try:
                check_safety(plan, self.policy)  # the share thresholds, with the plan at hand
            except PlanRefused as refused:
                self._refused(refused, {(change.kind, change.key) for change in plan.changes
                                        if not isinstance(change, Create)})
                self._measured("full", "refused", started)
                self.fan_in.catch_up()
                return True
            self.refused, self.refused_all = set(), False
            done = self._execute(plan, deletions=self.policy.allow_delete, warnings=True)
            self.fan_in.catch_up()
        except PlanRefused as refused:
            self._refused(refused, None)
            self._measured("full", "refused", started)
            return True
        except Exception as error:  # a defect too: logged, and retried as a server's failure is
            self.log("reconcile", "full", "", f"failed: {failure(error)}", level="error")
            self._measured("full", "failed", started)
            return False
        self._measured("full", "applied", started, done)
        self.log("reconcile", "full", "", f"{done} change(s) applied in {time.monotonic() - started:.2f}s; "
                 f"{plan.summary()}")
        self.feeds.restart_db_updates()
        return True

    def _refused(self, refused: PlanRefused, objects: set[tuple[str, str]] | None) -> None:
        """The same plan would be refused again until someone acts: log why, and hold what it concerns."""
        for line in refused.lines:
            self.log("reconcile", "full", "", f"refused: {line}", level="error")
        self.refused_all = objects is None
        self.refused = objects or set()
        if objects:
            self.log("reconcile", "targeted", "", f"go on, leaving alone the {len(objects)} object(s) the refused "
                     "full plan would rewrite or delete, until a full reconcile passes", level="warning")

    def _act_on_pending(self) -> None:
        pending = self.pending
        if self.refused_all or self.held or self.state is None \
                or not pending.due(self.settings.debounce, self.settings.debounce_max):
            return
        self.pending = Pending()
        handled = dict(self.feeds.received)
        users = dict(pending.users)
        owners = {user for db in pending.databases if (user := self._owner_of(db)) is not None} - users.keys()
        started = time.monotonic()
        subject = listed(sorted(users) + sorted(pending.databases))
        try:
            if owners:
                users.update(self._user_docs(sorted(owners)))
            state = narrowed(self.state, set(users), pending.databases)
            with observation(self.session):
                shared(self.session, USERS_DB, lambda: list(users.values()))  # resolve reads these, not all _users
                plan = make_plan(self.session, state, replace(self.policy, allow_delete=False, force=True), self.kinds)
                self._learn(resolve(self.session, state)[0], replace_all=False)
            done = self._execute(plan, deletions=False, warnings=False)
        except PlanRefused as refused:  # a replacement it may not make: the full reconcile reports it too
            for line in refused.lines:
                self.log("reconcile", "targeted", subject, f"refused: {line}", level="error")
            self.feeds.handled(handled)
            self._measured("targeted", "refused", started)
            return
        except Exception as error:  # a defect too: the burst is kept and retried, never dropped
            pending.failures += 1
            delay = backoff(pending.failures, self.settings.backoff_cap)
            pending.not_before = time.monotonic() + delay
            self.log("reconcile", "targeted", subject, f"failed: {failure(error)}; retrying in {delay:.1f}s",
                     level="error")
            self.pending = pending.merge(self.pending)
            self._measured("targeted", "failed", started)
            return
        self.feeds.handled(handled)
        self._measured("targeted", "applied", started, done)
        self.log("reconcile", "targeted", subject, f"{done} change(s) applied in {time.monotonic() - started:.2f}s")

    def _measured(self, scope: str, outcome: str, started: float, changes: int = 0) -> None:
        self.metrics.reconcile_seconds.labels(scope=scope).observe(time.monotonic() - started)
        self.metrics.reconciles.labels(scope=scope, outcome=outcome).inc()
        self.metrics.changes.labels(scope=scope).inc(changes)

    def _user_docs(self, names: Sequence[str]) -> dict[str, dict]:
        docs = self.session.docs_by_id(USERS_DB, [ID_PREFIX + name for name in names], what="reading _users")
        return {id.removeprefix(ID_PREFIX): doc for id, doc in docs.items()}

    def _execute(self, plan: Plan, deletions: bool, warnings: bool) -> int:
        """Apply the plan's changes as `reconcile apply` does, one log line each; deletions only when allowed.
        The plan's warnings are logged by full reconciles only: a targeted one would repeat them per sign-up."""
        for warning in plan.warnings if warnings else ():
            self.log("plan", "warning", "", warning, level="warning")
        changes = []
        for change in plan.changes:
            if not deletions and isinstance(change, (Delete, Replace)):
                self.log(change.action, change.kind, change.key, "skipped: watch deletes only when started with "
                         "--allow-delete (and only in full reconciles)", level="warning")
            elif (change.kind, change.key) in self.refused:
                self.log(change.action, change.kind, change.key, "held: the last full reconcile was refused "
                         "(above); it changes once a full reconcile passes", level="warning")
            else:
                changes.append(change)

        def done(chunk: Sequence[Change]) -> None:
            for change in chunk:
                self.log(change.action, change.kind, change.key, "done")

        execute(self.session, changes, self.kinds, done)
        return len(changes)

    def _owner_of(self, database: str) -> str | None:
        """The user a database belongs to: as the latest resolution learnt it, else by a template's prefix. A
        database couch_peruser creates after its user's own reconcile (it waits a start period after each
        config change, couch_peruser.erl) was not resolved then, and its creation must still bring her
        per-database objects."""
        if database in self.owners:
            return self.owners[database]
        templates = self.state.templates if self.state is not None else ()
        return next((user for template in templates if isinstance(template, UserTemplate)
                     and (user := database_user(template.prefix, database)) is not None), None)

    def _learn(self, resolved: DesiredState, replace_all: bool) -> None:
        """Which databases belong to which user (for `_db_updates` events) and to the triggered fan-in."""
        assert self.state is not None
        owners: dict[str, str] = {}
        for template in self.state.templates:
            if not isinstance(template, UserTemplate):
                continue
            origin = template.manifest.where("metadata", "name")
            databases = {key for (kind, key), desired in resolved.objects.items()
                         if kind == DATABASE and desired.source == origin}
            owners.update({database: user for database in databases
                           if (user := database_user(template.prefix, database)) is not None})
            self.fan_in.learn(template, databases, replace_all)
        if replace_all:
            self.owners = owners
        else:
            self.owners.update(owners)


def failure(error: Exception) -> str:
    """A failure's line: a server's or the manifests' as they say it, any other exception (a defect of this
    tool) with its type, so that watch's log names it and watch goes on."""
    if isinstance(error, ReconcileError):
        return str(error)
    return f"unexpected {type(error).__name__}: {error} (a defect of couch-reconciler; please report this line)"


def stop_on_signals(stopping: threading.Event) -> None:
    """SIGTERM and SIGINT ask the loop to stop after the current action (only the main thread may do this)."""
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopping.set())


def run(session: CouchSession, directory: str, policy: Policy, settings: Settings, log: Log,
        stopping: threading.Event | None = None, secrets: SecretPolicy = SecretPolicy(read=True),
        metrics: Metrics | None = None) -> int:
    """Watch the manifests in `directory` until `stopping` is set; 0 after a clean stop, 1 when the server
    refuses the credentials."""
    return Watcher(session, manifests_in(directory, secrets), policy, settings, log,
                   stopping or threading.Event(), metrics=metrics).run()
