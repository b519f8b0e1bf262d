"""Bounded polling, for what CouchDB (and couchsim) do asynchronously: admin hashing, couch_peruser, the
`_auth` design document, replication, `reconcile watch`. Never a fixed sleep: a test waits only as long as
the server needs, and fails naming what it waited for."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

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
