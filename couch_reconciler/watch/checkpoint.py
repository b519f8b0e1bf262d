"""Watch's feed positions, kept on the server in `_users/_local/couch-reconciler-watch`, with what it
reports of itself for `reconcile status`: whether it runs (the document is written at least every
ALIVE_EVERY seconds while it does, and once more when it stops) and its triggered fan-in's queue.

A `_local` document is not replicated and skips validation functions (apache/couchdb
src/couch/src/couch_db.erl `validate_doc_update/3`), so it may live in `_users` beside the users whose
feed it tracks, and a restart on another host resumes where the last one stopped.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone
from typing import Any, Mapping

from ..client import CouchSession, db_path
from ..errors import ServerError
from .log import Log, short

CHECKPOINT_DB = "_users"
CHECKPOINT_ID = "_local/couch-reconciler-watch"
CHECKPOINT_PATH = db_path(CHECKPOINT_DB, *CHECKPOINT_ID.split("/"))  # /_users/_local/NAME, as CouchDB documents it
ALIVE_EVERY = 30.0  # seconds between writes while nothing moves: `reconcile status` tells a running watch by them


def read_checkpoint(session: CouchSession) -> dict[str, Any] | None:
    """The document as the last watch wrote it; None when no watch ever ran against this server."""
    response = session.request("GET", CHECKPOINT_PATH, ok=(404,), what="reading the watch checkpoint")
    return None if response.status_code == 404 else dict(response.json())


class Checkpoint:
    """The positions saved last (`saved`), read at start and written at most every `every` seconds."""

    def __init__(self, session: CouchSession, log: Log, every: float):
        self.session, self.log, self.every = session, log, every
        self.rev: str | None = None
        self.saved: dict[str, Any] = {}
        self.reported: Mapping[str, Any] | None = None
        self.written_at = 0.0

    def read(self) -> dict[str, Any]:
        doc = read_checkpoint(self.session)
        if doc is None:
            return {}
        self.rev = doc.get("_rev")
        self.saved = dict(doc.get("positions") or {})
        return self.saved

    def write(self, positions: dict[str, Any], force: bool = False, report: Mapping[str, Any] | None = None) -> None:
        """Save `positions` with `report` (what watch says of itself: `running`, `held`, its fan-in's queue) when
        either changed and `every` seconds passed since the last write (or `force`), and in any case every
        ALIVE_EVERY seconds. A changed report is written though no feed moved: `reconcile status` trusts it."""
        elapsed = time.monotonic() - self.written_at
        moved = positions != self.saved
        due = (moved or (report is not None and report != self.reported)) and (force or elapsed >= self.every)
        if not due and elapsed < ALIVE_EVERY and not (force and report is not None):
            return
        positions = dict(positions)
        doc: dict[str, Any] = {"_id": CHECKPOINT_ID, "positions": positions,
                               "writer": f"{socket.gethostname()}:{os.getpid()}",
                               "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               **(report or {})}
        for _ in range(2):
            try:
                if self.rev:
                    doc["_rev"] = self.rev
                answer = self.session.request("PUT", CHECKPOINT_PATH, body=doc, ok=(409,),
                                              what="writing the watch checkpoint")
                if answer.status_code == 409:  # someone else wrote it (a second replica, docs/watch.md): re-read
                    self.read()
                    continue
                self.rev = answer.json()["rev"]
                self.saved, self.reported = positions, report
                self.written_at = time.monotonic()
                if moved:
                    self.log("checkpoint", "feed", "", "saved " + ", ".join(f"{name} {short(seq)}"
                                                                           for name, seq in sorted(positions.items())))
                return
            except ServerError as error:
                self.log("checkpoint", "feed", "", f"not saved ({error}); will retry", level="warning")
                return
