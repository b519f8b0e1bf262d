"""Following CouchDB's feeds for `reconcile watch`: `/_db_updates` and a database's `_changes`, by longpoll.

Each feed runs in its own thread and hands every batch it receives, with the feed position after it, to
one queue the watch loop reads; the loop decides when a position is handled (and may be checkpointed).
A lost connection, a timeout or a 5xx is retried with capped exponential backoff and full jitter, so a
server restart or a network cut costs a few reconnects, never the loop; a refusal that retrying cannot
fix (401, 403) stops the watch with one line.
"""

from __future__ import annotations

import queue
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from ..client import CouchSession
from ..errors import ServerError
from .log import Log

BACKOFF_FIRST = 0.5  # seconds before the first reconnect


def backoff(failures: int, cap: float) -> float:
    """Seconds to wait after `failures` consecutive failures: exponential, capped, with jitter so that
    several watchers (or a restarting server's clients) do not reconnect in step."""
    return random.uniform(0.5, 1.0) * min(cap, BACKOFF_FIRST * 2 ** max(failures - 1, 0))


@dataclass
class Batch:
    feed: str  # "_db_updates" or the database whose _changes it is
    rows: list[dict]
    last_seq: Any  # the feed position after these rows: opaque, sent back as `since`


@dataclass
class FeedDown:
    """The feed cannot be followed: `missing` (404: `_db_updates` without `_global_changes`) or fatal."""

    feed: str
    error: ServerError
    missing: bool = False


@dataclass
class Feed:
    """One longpoll feed: `path` with `params`, from position `since` ("now" on a first start)."""

    session: CouchSession
    path: str
    since: Any
    events: "queue.Queue[Batch | FeedDown]"
    stopping: threading.Event
    log: Log
    timeout: float = 20.0  # seconds the server may hold a longpoll open
    backoff_cap: float = 30.0
    params: dict[str, str] = field(default_factory=dict)
    name: str = ""
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.name = self.name or self.path

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name=f"feed {self.name}", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _follow(self) -> None:
        failures = 0
        # The server holds the request up to `timeout` and sends newlines meanwhile (`heartbeat`); the
        # session's own read timeout must be longer than both.
        hold = max(min(self.timeout, self.session.connection.timeout * 0.6), 0.1)
        while not self.stopping.is_set():
            params = {**self.params, "feed": "longpoll", "since": str(self.since), "timeout": str(int(hold * 1000)),
                      "heartbeat": str(max(int(hold * 500), 100))}
            try:
                answer = self.session.get(self.path, params=params, what=f"following {self.name}")
            except ServerError as error:
                if self.stopping.is_set():
                    return
                if error.status == 404 or error.status in (401, 403):
                    self.events.put(FeedDown(self.name, error, missing=error.status == 404))
                    return
                failures += 1
                delay = backoff(failures, self.backoff_cap)
                self.log("follow", "feed", self.name, f"disconnected ({error}); reconnecting in {delay:.1f}s",
                         level="warning")
                self.stopping.wait(delay)
                continue
            if failures:
                self.log("follow", "feed", self.name, f"reconnected after {failures} failed attempt(s)")
                failures = 0
            self.since = answer.get("last_seq", self.since)
            self.events.put(Batch(self.name, list(answer.get("results") or []), self.since))


def current_position(session: CouchSession, path: str) -> Any:
    """The feed's position now (`since=now`), to start from when there is no checkpoint."""
    return session.get(path, params={"since": "now", "limit": "0"}, what=f"reading the position of {path}")["last_seq"]
