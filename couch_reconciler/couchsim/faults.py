"""Opt-in fault injection for tests: latency, 5xx answers, dropped connections, 409s, per path pattern and
method, with a rate and a count. Controlled only through this Python object (SimServer.faults); there is
deliberately no HTTP endpoint for it, so product code can never reach it."""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field


@dataclass
class Fault:
    path: re.Pattern
    method: str | None
    status: int | None
    latency: float
    drop: bool
    rate: float
    count: int | None
    fired: int = 0
    _owner: "FaultInjector | None" = field(default=None, repr=False)

    def remove(self) -> None:
        if self._owner is not None:
            self._owner.remove(self)


class FaultInjector:
    """Thread-safe: tests change rules from their own thread while the server's loop consults them."""

    def __init__(self, seed: int | None = None):
        self._lock = threading.Lock()
        self._faults: tuple[Fault, ...] = ()
        self._random = random.Random(seed)
        self._handling = 0  # requests a rule fired for whose handling has not ended (a delayed one goes on alone)
        self._settled = threading.Condition(self._lock)

    def inject(self, path: str = ".*", method: str | None = None, status: int | None = None,
               latency: float = 0.0, drop: bool = False, rate: float = 1.0, count: int | None = None) -> Fault:
        """Add a rule. `path` is a regex searched in the request path (with query string); `status` answers
        with that code (409 gives CouchDB's conflict body, other codes an error body); `drop` closes the
        connection without an answer; `latency` delays (alone or before the other effects); `rate` is the
        probability a matching request is affected; `count` caps how many are."""
        fault = Fault(re.compile(path), method.upper() if method else None, status, latency, drop, rate, count,
                      _owner=self)
        with self._lock:
            self._faults = self._faults + (fault,)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            self._faults = tuple(f for f in self._faults if f is not fault)

    def clear(self) -> None:
        with self._lock:
            self._faults = ()

    def match(self, method: str, path: str) -> Fault | None:
        """The first rule that fires for this request (counting it), or None."""
        if not self._faults:
            return None
        with self._lock:
            for fault in self._faults:
                if fault.method is not None and fault.method != method:
                    continue
                if not fault.path.search(path):
                    continue
                if fault.count is not None and fault.fired >= fault.count:
                    continue
                if fault.rate < 1.0 and self._random.random() >= fault.rate:
                    continue
                fault.fired += 1
                self._handling += 1
                return fault
        return None

    def handled(self) -> None:
        """The server is done with a request `match` returned a rule for (answered, dropped or refused)."""
        with self._lock:
            self._handling -= 1
            self._settled.notify_all()

    def wait_settled(self, timeout: float) -> None:
        """Until the server has finished every request a rule fired for: a request delayed past its client's
        timeout is still handled (the client gave up, the server did not), and its effect lands then."""
        with self._lock:
            if not self._settled.wait_for(lambda: self._handling == 0, timeout):
                raise TimeoutError(f"{self._handling} request(s) a fault fired for still in the server after "
                                   f"{timeout} s")
