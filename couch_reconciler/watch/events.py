"""What watch hears: the two feeds (`_users/_changes`, `/_db_updates`) or, without `_db_updates`, a
`_dbs_info` scan; and the burst of events not acted upon yet (`Pending`).

A feed position is *received* when its batch arrived and *handled* once every event up to it was acted
upon: only handled positions are checkpointed, so a restart never skips an event.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..client import CouchSession
from ..databases import all_database_infos, moved_since
from ..errors import ServerError
from ..kinds.user import ID_PREFIX
from .checkpoint import CHECKPOINT_DB, CHECKPOINT_ID, Checkpoint
from .feeds import Batch, Feed, FeedDown, backoff, current_position
from .log import Log, short
from .settings import Settings

DB_UPDATES = "_db_updates"
USERS_FEED = "_users"
DatabaseEvent = Callable[[str, str], None]  # (database, "created" | "deleted" | "updated")


@dataclass
class Pending:
    """Events not acted upon yet: users whose `_users` document changed (with that document) and databases
    created or deleted. A burst is acted upon once the feeds were quiet for `quiet` seconds, and at the
    latest `longest` seconds after its first event: a stream of events (a user database's creation is
    several `_db_updates` rows, sign-ups arriving one by one) never postpones it further."""

    users: dict[str, dict] = field(default_factory=dict)
    databases: set[str] = field(default_factory=set)
    first: float = 0.0  # when the burst's first event arrived
    last: float = 0.0  # when its latest arrived
    not_before: float = 0.0  # after a failure: retry with backoff
    failures: int = 0

    def __bool__(self) -> bool:
        return bool(self.users or self.databases)

    def user(self, name: str, doc: dict) -> None:
        self._arrived()
        self.users[name] = doc

    def database(self, name: str) -> None:
        self._arrived()
        self.databases.add(name)

    def _arrived(self) -> None:
        now = time.monotonic()
        if not self:
            self.first = now
        self.last = now

    def due(self, quiet: float, longest: float) -> bool:
        now = time.monotonic()
        return bool(self) and now >= self.not_before and (now - self.last >= quiet or now - self.first >= longest)

    def merge(self, later: "Pending") -> "Pending":
        """This burst (which failed) with the events that arrived while it was being acted upon."""
        self.users.update(later.users)
        self.databases |= later.databases
        self.last = max(self.last, later.last)
        return self


def user_change(row: Mapping[str, Any]) -> tuple[str, dict | None] | None:
    """(user name, her document or None when deleted) for a `_users/_changes` row about a user; None for
    `_design/_auth` and other documents."""
    doc_id = str(row.get("id", ""))
    if not doc_id.startswith(ID_PREFIX):
        return None
    return doc_id.removeprefix(ID_PREFIX), (None if row.get("deleted") else row.get("doc"))


class Feeds:
    """The feeds watch follows, their positions, and the `_dbs_info` scan standing in for `_db_updates`
    where the server has no `_global_changes` database."""

    def __init__(self, session: CouchSession, settings: Settings, log: Log, stopping: threading.Event,
                 checkpoint: Checkpoint):
        self.session, self.settings, self.log, self.stopping = session, settings, log, stopping
        self.checkpoint = checkpoint
        self.events: "queue.Queue[Batch | FeedDown]" = queue.Queue()
        self.positions: dict[str, Any] = {}  # feed -> position whose events are all acted upon
        self.received: dict[str, Any] = {}  # feed -> position of the latest batch received
        self.running: dict[str, Feed] = {}
        self.polling: dict[str, str] | None = None  # database -> update_seq while `_db_updates` is unavailable
        self.next_poll = 0.0

    def start(self) -> bool:
        """Feed positions from the checkpoint (or `now`); then the feeds, so nothing between is missed.
        False when the server refuses the credentials."""
        while not self.stopping.is_set():
            try:
                saved = self.checkpoint.read()
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
        self.log("resume" if saved else "start", "feed", USERS_FEED, f"since {short(users_since)}")
        self.positions[USERS_FEED] = self.received[USERS_FEED] = users_since
        self._follow(USERS_FEED, f"{USERS_FEED}/_changes", users_since, {"include_docs": "true"})
        self.start_db_updates(saved.get(DB_UPDATES))
        return True

    def start_db_updates(self, since: Any = None) -> None:
        try:
            since = since or current_position(self.session, DB_UPDATES)
        except ServerError as error:
            if error.status == 404:
                self.db_updates_missing()
                return
            since = "now"
        self.polling = None
        self.log("resume" if self.checkpoint.saved.get(DB_UPDATES) == since else "start", "feed", DB_UPDATES,
                 f"since {short(since)}")
        self.positions[DB_UPDATES] = self.received[DB_UPDATES] = since
        self._follow(DB_UPDATES, DB_UPDATES, since, {})

    def restart_db_updates(self) -> None:
        """While scanning: try `_db_updates` again (a full reconcile may just have created `_global_changes`)."""
        feed = self.running.get(DB_UPDATES)
        if self.polling is not None and (feed is None or not feed.alive()):
            self.start_db_updates()

    def _follow(self, name: str, path: str, since: Any, params: dict[str, str]) -> None:
        feed = Feed(self.session, path, since, self.events, self.stopping, self.log, self.settings.feed_timeout,
                    self.settings.backoff_cap, params, name=name)
        self.running[name] = feed
        feed.start()

    def db_updates_missing(self) -> None:
        if self.polling is None:
            self.log("follow", "feed", DB_UPDATES, "404: the server has no _global_changes database; declare it in "
                     "the manifests (kind: Database, name: _global_changes) or PUT /_global_changes; until then "
                     f"watch scans GET /_dbs_info every {self.settings.poll_interval:g}s", level="warning")
            self.polling = {}
            self.next_poll = 0.0

    def drain(self, timeout: float) -> tuple[list[Batch], ServerError | None]:
        """What the feeds sent (waiting up to `timeout` for the first), and a fatal feed error if one came."""
        batches: list[Batch] = []
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return batches, None
        while True:
            if isinstance(item, FeedDown):
                if not (item.missing and item.feed == DB_UPDATES):
                    return batches, item.error
                self.db_updates_missing()
            else:
                self.received[item.feed] = item.last_seq
                batches.append(item)
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                return batches, None

    def poll(self, event: DatabaseEvent) -> None:
        """Without `_db_updates`: one `GET /_dbs_info` scan every poll_interval, compared with the previous."""
        if self.polling is None or time.monotonic() < self.next_poll:
            return
        self.next_poll = time.monotonic() + self.settings.poll_interval
        updated: list[str] = []
        try:
            rows = all_database_infos(self.session)
            if self.polling:
                kept = [(name, rows[name], self.polling[name]) for name in rows.keys() & self.polling.keys()]
                updated = [name for (name, _, _), moved in zip(kept, moved_since(self.session, kept)) if moved]
        except ServerError as error:
            self.log("poll", "database", "", f"{error}; retrying", level="warning")
            return
        if self.polling:
            for name in rows.keys() - self.polling.keys():
                event(name, "created")
            for name in self.polling.keys() - rows.keys():
                event(name, "deleted")
            for name in updated:
                event(name, "updated")
        self.polling = {name: str(info.get("update_seq")) for name, info in rows.items()}

    def handled(self, positions: Mapping[str, Any]) -> None:
        """Every event up to these positions was acted upon."""
        self.positions.update({name: seq for name, seq in positions.items() if name in self.positions})

    def save(self, force: bool = False, report: Mapping[str, Any] | None = None) -> None:
        self.checkpoint.write(self.positions, force, report)

    def stopped(self) -> None:
        self.save(force=True, report={"running": False})
        self.log("stop", "watch", "", f"stopped; feed positions saved in {CHECKPOINT_DB}/{CHECKPOINT_ID}")
