"""Continuous feeds (`_changes?feed=continuous`, `_db_updates?feed=continuous`): one JSON row per line,
newlines as heartbeats, a closing line on timeout (chttpd_db:changes_callback/2)."""

from __future__ import annotations

import time
from typing import Callable

from aiohttp import web

from ..database import Database
from .base import SERVER_HEADER, Request, dumps


async def stream_feed(req: Request, db: Database, rows_since: Callable[[], list[dict]], timeout: float,
                      heartbeat: str | None, closing: Callable[[], dict]) -> web.StreamResponse:
    """`rows_since()` returns the rows after the feed's position and moves the position past them;
    `closing()` is the last line."""
    response = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "must-revalidate",
                                           "Server": SERVER_HEADER})
    response.enable_chunked_encoding()
    await response.prepare(req.http)
    beat = None
    if heartbeat is not None:
        beat = 60.0 if heartbeat in ("true", "") else max(int(heartbeat), 1) / 1000
    deadline = None if (beat is not None and "timeout" not in req.query) else time.monotonic() + timeout
    while req.cluster.dbs.get(db.name) is db:  # a deleted database ends its feeds, as in CouchDB
        for row in rows_since():
            await response.write(dumps(row))
        wait = beat
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wait = remaining if wait is None else min(wait, remaining)
        changed = await db.wait_for_change(wait)
        if not changed and beat is not None and (deadline is None or time.monotonic() < deadline):
            await response.write(b"\n")
    await response.write(dumps(closing()))
    await response.write_eof()
    return response
