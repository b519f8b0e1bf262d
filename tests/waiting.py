"""Bounded polling, for what CouchDB (and couchsim) do asynchronously: admin hashing, couch_peruser, the
`_auth` design document, replication, `reconcile watch`. Never a fixed sleep: a test waits only as long as
the server needs, and fails naming what it waited for."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import requests

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str = "the condition", timeout: float = 20.0,
             interval: float = 0.05) -> T:
    """check()'s first truthy result, asked every `interval` s; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}; last result: {result!r}")
        time.sleep(interval)


def wait_while_growing(count: Callable[[], int], want: int, what: str, stall: float, interval: float = 0.2) -> None:
    """Until count() reaches `want`, however long that takes while it grows: a loaded server that is slow but
    progressing is waited for, one that stopped fails the test `stall` s after its last step."""
    best, grew_at = -1, time.monotonic()
    while (now := count()) < want:
        if now > best:
            best, grew_at = now, time.monotonic()
        elif time.monotonic() - grew_at >= stall:
            raise AssertionError(f"waited for {what}: {now} of {want}, none more for {stall:g}s")
        time.sleep(interval)


def copies(http: requests.Session, url: str, database: str) -> int:
    """How many copies of `database` the server keeps (its `cluster.n`): the `w` a write waits for, or the `r`
    a read asks, so that no copy lags what a test wrote or purged (one on a single node, three on a cluster)."""
    return int(http.get(f"{url}/{database}").json()["cluster"]["n"])
