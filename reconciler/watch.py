"""`reconcile watch`: keep the server converged between deployments (docs/watch.md).

- A **full reconcile** at start and every `interval`: the manifests read again (load, validate, expand, as
  `plan` does), then `make_plan` + `apply.execute`, the engine `reconcile apply --auto-approve` runs, inside
  `reads.remembering` so that `_security` is read again only for databases whose `update_seq` moved.
  Manifests found invalid change nothing: that full reconcile is skipped and targeted reconciles wait for
  one that finds them valid (a deployment's `git pull` must not be fought with the previous desired state).
- In between, two feeds (reconciler/feeds.py): `_users/_changes` (sign-ups) and `/_db_updates` (databases
  created, deleted, written). A burst of events becomes, after `debounce`, one **targeted reconcile**:
  the same engine on a desired state narrowed to the users and databases concerned, with the `_users`
  documents the feed brought handed to the template resolution (no `_users` scan).
- `fanIn: triggered` (TriggeredFanIn): a one-shot `_replicator` document per user database that changed,
  at most `max_triggered` running at once.
- Feed positions are checkpointed in `_users/_local/couch-reconciler-watch`; SIGTERM/SIGINT finish the
  current action, write the checkpoint and exit 0.

Nothing is deleted unless watch was started with `--allow-delete`, and targeted reconciles never delete
(they see a handful of users: what they do not see is not gone).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO

from .apply import execute
from .client import CouchSession, db_path
from .databases import all_database_infos, database_infos
from .errors import ReconcileError, ServerError
from .expand import expand
from .feeds import Batch, Feed, FeedDown, backoff, current_position
from .kinds import RESOURCES
from .kinds.base import ResourceKind
from .kinds.design_document import split_key
from .kinds.replication import RESOURCE as REPLICATION_KIND
from .kinds.user import ID_PREFIX, USERS_DB
from .kinds.user_databases import UserTemplate, replication_id, triggered_replication, user_database
from .model import (
    DATABASE,
    DESIGN_DOCUMENT,
    REPLICATION,
    SECURITY,
    USER,
    Change,
    Create,
    Delete,
    DesiredState,
    Diagnostic,
    Plan,
    Replace,
    Update,
)
from .pipeline import load_and_validate, make_plan
from .plan import PlanRefused, Policy
from .reads import forget_verified, observation, remembering, shared
from .replicator import replicator_docs_by_id
from .resolve import resolve
from .secrets import SecretPolicy

CHECKPOINT_DB = "_users"
CHECKPOINT_ID = "_local/couch-reconciler-watch"
CHECKPOINT_PATH = db_path(CHECKPOINT_DB, *CHECKPOINT_ID.split("/"))  # /_users/_local/NAME, as CouchDB documents it
DB_UPDATES = "_db_updates"
USERS_FEED = "_users"
TRIGGER_FIELD = "couch_reconciler_trigger"  # the update_seq a one-shot run started at


@dataclass(frozen=True)
class Settings:
    interval: float = 300.0  # seconds between full reconciles
    debounce: float = 0.5  # seconds a burst of events may last before it is acted upon
    feed_timeout: float = 20.0  # seconds the server may hold a longpoll
    poll_interval: float = 5.0  # seconds between `_dbs_info` scans when `_db_updates` is unavailable
    backoff_cap: float = 30.0  # longest wait between reconnects / retries
    max_triggered: int = 20  # one-shot replications running at once (fanIn: triggered)
    checkpoint_every: float = 5.0  # seconds between checkpoint writes while events flow


class ActionLog:
    """One line per action on `stream`: text, or a JSON object (ts, level, action, kind, key, outcome).
    Callers pass names, keys and outcomes only, never a document, so no secret can reach a line."""

    def __init__(self, fmt: str = "text", stream: TextIO | None = None):
        self.fmt = fmt
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, action: str, kind: str = "", key: str = "", outcome: str = "ok", level: str = "info") -> None:
        ts = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self.fmt == "json":
            line = json.dumps({"ts": ts, "level": level, "action": action, "kind": kind, "key": key,
                               "outcome": outcome}, ensure_ascii=False)
        else:
            subject = f"{kind}/{key}" if kind and key else kind or key
            line = f"{ts} {level:<7} {action:<10} {subject}{': ' if subject else ''}{outcome}"
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


@dataclass
class Pending:
    """Events not acted upon yet: users whose `_users` document changed (with that document), databases
    created or deleted, and when the latest arrived (the debounce runs from it)."""

    users: dict[str, dict] = field(default_factory=dict)
    databases: set[str] = field(default_factory=set)
    since: float = 0.0
    not_before: float = 0.0  # after a failure: retry with backoff
    failures: int = 0

    def __bool__(self) -> bool:
        return bool(self.users or self.databases)


class InvalidManifests(ReconcileError):
    """The manifests as `reconcile validate` would refuse them: watch logs each diagnostic and waits."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        super().__init__(f"{sum(1 for d in diagnostics if d.is_error)} error(s) in the manifests")
        self.diagnostics = list(diagnostics)


def manifests_in(directory: str, secrets: SecretPolicy = SecretPolicy(read=True)) -> Callable[[], DesiredState]:
    """The desired state of the manifests in `directory`, read anew at each call by the stages `plan` and
    `apply` run (load, validate with every secret read, expand); InvalidManifests with every diagnostic when
    they would refuse it."""

    def read() -> DesiredState:
        manifests, diagnostics = load_and_validate(directory, secrets)
        if not any(diagnostic.is_error for diagnostic in diagnostics):
            state = expand(manifests)
            if not state.diagnostics:
                return state
            diagnostics = diagnostics + state.diagnostics
        raise InvalidManifests(diagnostics)

    return read


class Watcher:
    def __init__(self, session: CouchSession, desired: Callable[[], DesiredState], policy: Policy,
                 settings: Settings, log: ActionLog, stopping: threading.Event,
                 kinds: Mapping[str, ResourceKind] | None = None):
        self.session, self.desired, self.policy, self.settings = session, desired, policy, settings
        # Read at every full reconcile (the first at start). Until a read succeeds, and while the latest
        # one found the manifests invalid, targeted reconciles and triggered replications are `held`.
        self.state: DesiredState | None = None
        self.held = True
        self.log, self.stopping = log, stopping
        self.kinds = kinds or RESOURCES
        self.events: "queue.Queue[Batch | FeedDown]" = queue.Queue()
        self.pending = Pending()
        self.positions: dict[str, Any] = {}  # feed -> position whose events are all acted upon
        self.received: dict[str, Any] = {}  # feed -> position of the latest batch received
        self.feeds: dict[str, Feed] = {}
        self.owners: dict[str, str] = {}  # user database -> user, from the latest resolution
        self.static_databases: set[str] = set()
        self.polling: dict[str, str] | None = None  # database -> update_seq while `_db_updates` is unavailable
        self.next_poll = 0.0
        self.checkpoint_rev: str | None = None
        self.saved: dict[str, Any] = {}
        self.last_checkpoint = 0.0
        self.fan_in = TriggeredFanIn(self, [])
        # A refused full plan (share thresholds, destruction) may mean broken manifests: targeted reconciles,
        # which cannot see the whole kind and so run without the share thresholds, wait for a full one to pass.
        self.refused = False

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        with remembering(self.session):
            return self._run()

    def _run(self) -> int:
        if not self._start_feeds():
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
            fatal = self._drain(timeout=min(0.2, max(next_full - now, 0.01)))
            if fatal is not None:
                self.log("stop", "watch", "", f"{fatal}", level="error")
                self._checkpoint(force=True)
                return 1
            self._poll_databases()
            self._act_on_pending()
            if not self.held:
                self.fan_in.tick()
            self._checkpoint()
        self._checkpoint(force=True)
        self.log("stop", "watch", "", "stopped; feed positions saved in " + f"{CHECKPOINT_DB}/{CHECKPOINT_ID}")
        return 0

    # ------------------------------------------------------------------ feeds and checkpoint
    def _start_feeds(self) -> bool:
        """Feed positions from the checkpoint (or `now`); then the feeds, so nothing between is missed."""
        while not self.stopping.is_set():
            try:
                saved = self._read_checkpoint()
                users_since = saved.get(USERS_FEED) or current_position(self.session, f"{USERS_FEED}/_changes")
                break
            except ServerError as error:
                if error.status in (401, 403):
                    self.log("start", "watch", "", str(error), level="error")
                    return False
                self.log("start", "watch", "", f"{error}; retrying", level="warning")
                self.stopping.wait(backoff(2, self.settings.backoff_cap))
        else:
            return True
        self.log("resume" if saved else "start", "feed", USERS_FEED, f"since {_short(users_since)}")
        self.positions[USERS_FEED] = self.received[USERS_FEED] = users_since
        self._follow(USERS_FEED, f"{USERS_FEED}/_changes", users_since, {"include_docs": "true"})
        self._start_db_updates(saved.get(DB_UPDATES))
        return True

    def _start_db_updates(self, since: Any = None) -> None:
        try:
            since = since or current_position(self.session, DB_UPDATES)
        except ServerError as error:
            if error.status == 404:
                self._db_updates_missing()
                return
            since = "now"
        self.polling = None
        self.log("resume" if self.saved.get(DB_UPDATES) == since else "start", "feed", DB_UPDATES,
                 f"since {_short(since)}")
        self.positions[DB_UPDATES] = self.received[DB_UPDATES] = since
        self._follow(DB_UPDATES, DB_UPDATES, since, {})

    def _follow(self, name: str, path: str, since: Any, params: dict[str, str]) -> None:
        feed = Feed(self.session, path, since, self.events, self.stopping, self.log, self.settings.feed_timeout,
                    self.settings.backoff_cap, params, name=name)
        self.feeds[name] = feed
        feed.start()

    def _db_updates_missing(self) -> None:
        if self.polling is None:
            self.log("follow", "feed", DB_UPDATES, "404: the server has no _global_changes database; declare it in "
                     "the manifests (kind: Database, name: _global_changes) or PUT /_global_changes; until then "
                     f"watch scans GET /_dbs_info every {self.settings.poll_interval:g}s", level="warning")
            self.polling = {}
            self.next_poll = 0.0

    def _read_checkpoint(self) -> dict[str, Any]:
        response = self.session.request("GET", CHECKPOINT_PATH, ok=(404,),
                                        what="reading the watch checkpoint")
        if response.status_code == 404:
            return {}
        doc = response.json()
        self.checkpoint_rev = doc.get("_rev")
        self.saved = dict(doc.get("positions") or {})
        return self.saved

    def _checkpoint(self, force: bool = False) -> None:
        """Write the handled feed positions, at most every `checkpoint_every` seconds (and when stopping)."""
        if self.positions == self.saved or (not force and
                                            time.monotonic() - self.last_checkpoint < self.settings.checkpoint_every):
            return
        positions = dict(self.positions)
        doc = {"_id": CHECKPOINT_ID, "positions": positions, "writer": f"{socket.gethostname()}:{os.getpid()}",
               "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        for attempt in range(2):
            try:
                if self.checkpoint_rev:
                    doc["_rev"] = self.checkpoint_rev
                answer = self.session.request("PUT", CHECKPOINT_PATH, body=doc, ok=(409,),
                                              what="writing the watch checkpoint")
                if answer.status_code == 409:  # someone else wrote it (a second replica, docs/watch.md): re-read
                    self._read_checkpoint()
                    continue
                self.checkpoint_rev = answer.json()["rev"]
                self.saved = positions
                self.last_checkpoint = time.monotonic()
                self.log("checkpoint", "feed", "", "saved " + ", ".join(f"{name} {_short(seq)}"
                                                                       for name, seq in sorted(positions.items())))
                return
            except ServerError as error:
                self.log("checkpoint", "feed", "", f"not saved ({error}); will retry", level="warning")
                return

    def _drain(self, timeout: float) -> ServerError | None:
        """Take what the feeds sent; a fatal feed error is returned."""
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        while True:
            if isinstance(item, FeedDown):
                if not (item.missing and item.feed == DB_UPDATES):
                    return item.error
                self._db_updates_missing()
            else:
                self._take(item)
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return None

    def _take(self, batch: Batch) -> None:
        self.received[batch.feed] = batch.last_seq
        if batch.feed == USERS_FEED:
            for row in batch.rows:
                self._user_changed(row)
        else:
            for row in batch.rows:
                self._database_event(row.get("db_name", ""), row.get("type", ""))
        if not self.pending:
            self.positions[batch.feed] = batch.last_seq
        else:
            self.pending.since = time.monotonic()

    def _user_changed(self, row: Mapping[str, Any]) -> None:
        if not row.get("id", "").startswith(ID_PREFIX):
            return  # _design/_auth and other non-user documents
        name = row["id"].removeprefix(ID_PREFIX)
        if row.get("deleted"):
            # Its database stays (deleteWithUser and --allow-delete apply at full reconciles only).
            self.log("event", "user", name, "deleted; what was made for it is left to the next full reconcile")
            return
        if row.get("doc"):
            self.pending.users[name] = row["doc"]

    def _database_event(self, database: str, kind: str) -> None:
        if kind in ("created", "deleted"):
            forget_verified(self.session, [(DATABASE, database)])
            if database in self.static_databases or database in self.owners:
                self.pending.databases.add(database)
        if kind in ("created", "updated"):
            self.fan_in.changed(database)

    def _poll_databases(self) -> None:
        """Without `_db_updates`: one `GET /_dbs_info` scan every poll_interval, compared with the previous."""
        if self.polling is None or time.monotonic() < self.next_poll:
            return
        self.next_poll = time.monotonic() + self.settings.poll_interval
        try:
            now = {name: str(info.get("update_seq")) for name, info in all_database_infos(self.session).items()}
        except ServerError as error:
            self.log("poll", "database", "", f"{error}; retrying", level="warning")
            return
        if self.polling:
            for name in now.keys() - self.polling.keys():
                self._database_event(name, "created")
            for name in self.polling.keys() - now.keys():
                self._database_event(name, "deleted")
            for name in now.keys() & self.polling.keys():
                if now[name] != self.polling[name]:
                    self._database_event(name, "updated")
        self.polling = now
        if self.pending:
            self.pending.since = time.monotonic()

    # ------------------------------------------------------------------ reconciles
    def _read_manifests(self) -> bool:
        """The desired state as the manifests say now; False (logged, targeted reconciles held) when invalid."""
        try:
            state = self.desired()
        except ReconcileError as error:
            problems = error.diagnostics if isinstance(error, InvalidManifests) else [error]
            for problem in problems:
                level = "warning" if getattr(problem, "severity", "error") == "warning" else "error"
                self.log("read", "manifests", "", str(problem), level=level)
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
            self.fan_in = TriggeredFanIn(self, user_templates(state))
        self.held = False
        return True

    def _full_reconcile(self) -> bool:
        started = time.monotonic()
        self.log("reconcile", "full", "", "started")
        if not self._read_manifests():
            return True  # nothing to retry sooner: the folder changes with the next deployment
        assert self.state is not None  # read by _read_manifests
        try:
            with observation(self.session):
                plan = make_plan(self.session, self.state, self.policy, self.kinds)
                self._learn(resolve(self.session, self.state)[0], replace_all=True)  # the same reads: no request
            done = self._execute(plan, deletions=self.policy.allow_delete, warnings=True)
            self.fan_in.catch_up()
        except PlanRefused as refused:  # the same plan would be refused again until someone acts: wait
            for line in refused.lines:
                self.log("reconcile", "full", "", f"refused: {line}", level="error")
            self.refused = True
            return True
        except ReconcileError as error:
            self.log("reconcile", "full", "", f"failed: {error}", level="error")
            return False
        self.refused = False
        self.log("reconcile", "full", "", f"{done} change(s) applied in {time.monotonic() - started:.2f}s; "
                 f"{plan.summary()}")
        if self.polling is not None and (not self.feeds.get(DB_UPDATES) or not self.feeds[DB_UPDATES].alive()):
            self._start_db_updates()  # the reconcile may just have created _global_changes
        return True

    def _act_on_pending(self) -> None:
        pending, now = self.pending, time.monotonic()
        if (not pending or now - pending.since < self.settings.debounce or now < pending.not_before or self.refused
                or self.held):
            return
        assert self.state is not None  # not held: a full reconcile read it
        self.pending = Pending()
        handled = dict(self.received)
        users = dict(pending.users)
        owners = {self.owners[db] for db in pending.databases if db in self.owners} - users.keys()
        started = time.monotonic()
        subject = ", ".join(sorted(users) + sorted(pending.databases))[:200]
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
            self.positions.update({name: seq for name, seq in handled.items() if name in self.positions})
            return
        except ReconcileError as error:
            pending.failures += 1
            delay = backoff(pending.failures, self.settings.backoff_cap)
            pending.not_before = time.monotonic() + delay
            self.log("reconcile", "targeted", subject, f"failed: {error}; retrying in {delay:.1f}s", level="error")
            self._merge_back(pending)
            return
        self.positions.update({name: seq for name, seq in handled.items() if name in self.positions})
        self.log("reconcile", "targeted", subject, f"{done} change(s) applied in {time.monotonic() - started:.2f}s")

    def _merge_back(self, pending: Pending) -> None:
        pending.users.update(self.pending.users)
        pending.databases |= self.pending.databases
        pending.since = max(pending.since, self.pending.since)
        self.pending = pending

    def _user_docs(self, names: Sequence[str]) -> dict[str, dict]:
        rows = self.session.post(db_path(USERS_DB, "_all_docs"), {"keys": [ID_PREFIX + name for name in names]},
                                 params={"include_docs": "true"}, what="reading _users")["rows"]
        return {row["id"].removeprefix(ID_PREFIX): row["doc"] for row in rows if row.get("doc")}

    def _execute(self, plan: Plan, deletions: bool, warnings: bool) -> int:
        """Apply the plan's changes as `reconcile apply` does, one log line each; deletions only when allowed.
        The plan's warnings are logged by full reconciles only: a targeted one would repeat them per sign-up."""
        for warning in plan.warnings if warnings else ():
            self.log("plan", "warning", "", warning, level="warning")
        changes = [change for change in plan.changes if deletions or not isinstance(change, (Delete, Replace))]
        kept = {id(change) for change in changes}
        for change in plan.changes:
            if id(change) not in kept:
                self.log(change.action, change.kind, change.key, "skipped: watch deletes only when started with "
                         "--allow-delete (and only in full reconciles)", level="warning")

        def done(chunk: Sequence[Change]) -> None:
            for change in chunk:
                self.log(change.action, change.kind, change.key, "done")

        execute(self.session, changes, self.kinds, done)
        return len(changes)

    def _learn(self, resolved: DesiredState, replace_all: bool) -> None:
        """Which databases belong to which user (for `_db_updates` events) and to the triggered fan-in."""
        owners: dict[str, str] = {}
        assert self.state is not None  # a reconcile read it
        for template in user_templates(self.state):
            origin = template.manifest.where("metadata", "name")
            databases = {key for (kind, key), desired in resolved.objects.items()
                         if kind == DATABASE and desired.source == origin}
            owners.update({database: user for database in databases
                           if (user := _owner(template.prefix, database)) is not None})
            self.fan_in.learn(template, databases, replace_all)
        if replace_all:
            self.owners = owners
        else:
            self.owners.update(owners)


def changed_objects(before: DesiredState, after: DesiredState) -> int:
    """How many wanted objects and user templates differ (added, removed, other content); where they are
    written in the files does not count."""

    def contents(state: DesiredState) -> dict[tuple[str, str], Any]:
        objects = {key: (desired.body, desired.secrets, desired.options) for key, desired in state.objects.items()}
        templates = {("template", t.manifest.name): (t.manifest.spec, [(d.name, d.spec) for d in t.parts])
                     for t in state.templates}
        return {**objects, **templates}

    old, new = contents(before), contents(after)
    return sum(1 for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def user_templates(state: DesiredState) -> list[UserTemplate]:
    return [template for template in state.templates if isinstance(template, UserTemplate)]


def narrowed(state: DesiredState, users: set[str], databases: set[str]) -> DesiredState:
    """The desired state of just these users (what their templates want) and these databases: manifests'
    objects that live in them, nothing pruned (a narrowed plan does not see what it would prune)."""
    templates = [UserTemplate(replace(t.manifest, spec={
        **t.manifest.spec,
        "replicateTo": [{**entry, "prune": False} for entry in t.manifest.spec.get("replicateTo", [])]}),
        t.design_documents) for t in user_templates(state)]
    touched = databases | {user_database(t.prefix, user) for t in templates for user in users}

    def related(kind: str, key: str) -> bool:
        if kind == USER:
            return key in users
        if kind == DESIGN_DOCUMENT:
            return split_key(key)[0] in touched
        return kind in (DATABASE, SECURITY) and key in touched

    objects = {(kind, key): replace(desired, options={k: v for k, v in desired.options.items() if k != "prune"})
               for (kind, key), desired in state.objects.items() if related(kind, key)}
    return DesiredState(objects, templates=list(templates))


@dataclass
class Route:
    """One triggered replication: a user database into a target, as the template's replicateTo entry says."""

    doc_id: str
    database: str
    template: UserTemplate
    entry: Mapping[str, Any]


class TriggeredFanIn:
    """`fanIn: triggered` (the spiegel approach): instead of a continuous job per user database, a one-shot
    `_replicator` document per database that changed, with a deterministic id (the same as the continuous
    one's, so switching modes takes the document over). A document is written again only once CouchDB
    marked its previous run `completed` and the database's `update_seq` moved since that run began (a
    replication's own checkpoint is a `_local` write, which moves nothing); at most `max_triggered` run at
    once, the others wait here, never in CouchDB's scheduler where they would compete with continuous jobs."""

    def __init__(self, watcher: Watcher, templates: Sequence[UserTemplate]):
        self.watcher = watcher
        self.templates = [t for t in templates if _triggered_entries(t)]
        self.routes: dict[str, list[Route]] = {}  # database -> its triggered replications
        self.dirty: dict[str, float] = {}  # database -> when it last changed, not replicated since
        self.running: dict[str, tuple[Route, str | None, float]] = {}  # doc id -> (route, update_seq it started at, when)
        self.started_at: dict[str, str | None] = {}  # doc id -> update_seq its latest run started at

    def learn(self, template: UserTemplate, databases: Iterable[str], replace_all: bool) -> None:
        if template not in self.templates:
            return
        if replace_all:
            self.routes = {db: [r for r in routes if r.template is not template] for db, routes in self.routes.items()}
        for database in databases:
            routes = [r for r in self.routes.get(database, []) if r.template is not template]
            routes += [Route(replication_id(template, database, entry), database, template, entry)
                       for entry in _triggered_entries(template)]
            self.routes[database] = routes

    def changed(self, database: str) -> None:
        if database in self.routes:
            self.dirty[database] = time.monotonic()

    def catch_up(self) -> None:
        """After a full reconcile (a restart, events missed while polling): every database whose
        `update_seq` differs from the one its document's last run started at is replicated again."""
        if not self.routes:
            return
        docs = self._docs([r.doc_id for routes in self.routes.values() for r in routes])
        seqs = self._seqs(list(self.routes))
        for database, routes in self.routes.items():
            for route in routes:
                doc = docs.get(route.doc_id) or {}
                started = (doc.get(TRIGGER_FIELD) or {}).get("update_seq")
                self.started_at[route.doc_id] = started
                if doc and doc.get("_replication_state") not in ("completed", "failed"):
                    self.running.setdefault(route.doc_id, (route, started, time.monotonic()))
                elif seqs.get(database) != started:
                    self.dirty.setdefault(database, 0.0)

    def tick(self) -> None:
        if self.running:
            self._collect()
        now = time.monotonic()
        busy = {route.database for route, _, _ in self.running.values()}
        ready = sorted((db for db, when in self.dirty.items()
                        if now - when >= self.watcher.settings.debounce and db not in busy), key=self.dirty.__getitem__)
        slots = self.watcher.settings.max_triggered - len(self.running)
        if ready and slots > 0:
            self._trigger(ready[:slots])

    def _collect(self) -> None:
        log = self.watcher.log
        try:
            docs = self._docs(list(self.running))
        except ServerError as error:
            log("poll", "replication", "", f"{error}; retrying", level="warning")
            return
        for doc_id, (route, seq, since) in list(self.running.items()):
            state = (docs.get(doc_id) or {}).get("_replication_state")
            if doc_id not in docs or state in ("completed", "failed"):
                del self.running[doc_id]
                outcome = f"{state or 'gone'} after {time.monotonic() - since:.2f}s"
                log("replicate", "replication", doc_id, outcome, level="error" if state == "failed" else "info")

    def _trigger(self, databases: Sequence[str]) -> None:
        log = self.watcher.log
        try:
            seqs = self._seqs(databases)
            routes = [route for db in databases for route in self.routes.get(db, [])]
            docs = self._docs([route.doc_id for route in routes])
        except ServerError as error:
            log("trigger", "replication", "", f"{error}; retrying", level="warning")
            return
        changes, secrets, started = [], {}, []
        for route in routes:
            seq = seqs.get(route.database)
            self.dirty.pop(route.database, None)
            doc = docs.get(route.doc_id)
            if seq is None or (doc and seq == self.started_at.get(route.doc_id)):
                continue  # gone, or nothing new since the last run began (e.g. an event about its checkpoint)
            desired = triggered_replication(route.template, route.database, route.entry)
            body = {**desired.body, TRIGGER_FIELD: {"update_seq": seq}}
            cls = Update if doc else Create
            changes.append(cls(REPLICATION, route.doc_id, desired.source, after=body,
                               version=doc.get("_rev") if doc else None))
            secrets[route.doc_id] = dict(desired.secrets)
            started.append((route, seq))
        if not changes:
            return
        try:
            REPLICATION_KIND.apply(self.watcher.session, changes, secrets)
        except ReconcileError as error:  # a conflict: someone wrote it meanwhile; the next event retries
            log("trigger", "replication", "", f"{error}", level="warning")
            for route, _ in started:
                self.dirty.setdefault(route.database, time.monotonic())
            return
        now = time.monotonic()
        for route, seq in started:
            self.running[route.doc_id] = (route, seq, now)
            self.started_at[route.doc_id] = seq
            log("trigger", "replication", route.doc_id, "one-shot replication started")

    def _docs(self, ids: Sequence[str]) -> dict[str, dict]:
        return replicator_docs_by_id(self.watcher.session, ids)

    def _seqs(self, databases: Sequence[str]) -> dict[str, str]:
        return {name: str(info.get("update_seq")) for name, info in database_infos(self.watcher.session,
                                                                                   list(databases)).items()}


def _owner(prefix: str, database: str) -> str | None:
    """The user whose database this is: the hex read back, checked by writing it again (couch_peruser's
    hex has no zero padding, so a name with a byte below 0x10 may not read back: it is then not known)."""
    try:
        name = bytes.fromhex(database.removeprefix(prefix)).decode("utf-8")
    except ValueError:
        return None
    return name if user_database(prefix, name) == database else None


def _triggered_entries(template: UserTemplate) -> list[Mapping[str, Any]]:
    return [entry for entry in template.manifest.spec.get("replicateTo", []) if entry.get("fanIn") == "triggered"]


def _short(seq: Any) -> str:
    """A feed position for a log line: CouchDB's are long opaque strings; the number before `-` says enough."""
    text = str(seq)
    return text.split("-", 1)[0] if "-" in text else text


def stop_on_signals(stopping: threading.Event) -> None:
    """SIGTERM and SIGINT ask the loop to stop after the current action (only the main thread may do this)."""
    import signal

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopping.set())


def run(session: CouchSession, directory: str, policy: Policy, settings: Settings, log: ActionLog,
        stopping: threading.Event | None = None, secrets: SecretPolicy = SecretPolicy(read=True)) -> int:
    """Watch the manifests in `directory` until `stopping` is set; 0 after a clean stop, 1 when the server
    refuses the credentials."""
    return Watcher(session, manifests_in(directory, secrets), policy, settings, log,
                   stopping or threading.Event()).run()
