"""What `reconcile watch` is told at start (its command-line options)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    interval: float = 300.0  # seconds between full reconciles
    debounce: float = 0.2  # seconds of quiet after the latest event of a burst before it is acted upon
    debounce_max: float = 0.5  # seconds from a burst's first event after which it is acted upon, quiet or not
    feed_timeout: float = 20.0  # seconds the server may hold a longpoll
    poll_interval: float = 5.0  # seconds between `_dbs_info` scans when `_db_updates` is unavailable
    backoff_cap: float = 30.0  # longest wait between reconnects / retries
    max_triggered: int = 20  # one-shot replications running at once (fanIn: triggered)
    checkpoint_every: float = 5.0  # seconds between checkpoint writes while events flow
