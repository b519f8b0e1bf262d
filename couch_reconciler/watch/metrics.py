"""What watch exposes to Prometheus (`reconcile watch --metrics-port N`), with prometheus-client: the text
exposition format, a registry of its own (nothing of the process's default collectors) and the HTTP server
thread the library provides."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PREFIX = "couch_reconciler_watch_"
# A one-shot run takes about a second on an idle server; the target is 10 s, a stale continuous fan-in minutes.
DELAY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(PREFIX + "events", "Feed events handled, by feed and type",
                              ["feed", "type"], registry=self.registry)
        self.reconcile_seconds = Histogram(PREFIX + "reconcile_seconds", "Duration of reconciles, by scope",
                                           ["scope"], registry=self.registry)
        self.reconciles = Counter(PREFIX + "reconciles", "Reconciles by scope (full, targeted) and outcome "
                                  "(applied, refused, failed, invalid)", ["scope", "outcome"], registry=self.registry)
        self.changes = Counter(PREFIX + "changes", "Changes applied, by scope", ["scope"], registry=self.registry)
        self.fan_in_delay = Histogram(PREFIX + "fan_in_delay_seconds", "fanIn triggered: from the first write to a "
                                      "user database not replicated yet to the end of the one-shot run carrying it",
                                      buckets=DELAY_BUCKETS, registry=self.registry)
        self.fan_in_runs = Gauge(PREFIX + "fan_in_running", "fanIn triggered: one-shot replications running",
                                 registry=self.registry)
        self.fan_in_waiting = Gauge(PREFIX + "fan_in_waiting", "fanIn triggered: user databases waiting for a "
                                    "one-shot replication", registry=self.registry)
        self.not_converged = Gauge(PREFIX + "users_not_converged", "Users whose change waits for a targeted "
                                   "reconcile (debounce, retry after a failure, manifests invalid)",
                                   registry=self.registry)
        self.feed_position = Gauge(PREFIX + "feed_position", "The number a feed position starts with, as "
                                   "received and as handled (checkpointed once saved)", ["feed", "state"],
                                   registry=self.registry)

    def serve(self, port: int, address: str) -> Any:
        """The /metrics endpoint in a daemon thread; returns the server (its `server_port`, `shutdown`)."""
        server, _ = start_http_server(port, addr=address, registry=self.registry)
        return server

    def positions(self, state: str, positions: dict[str, Any]) -> None:
        for feed, seq in positions.items():
            number = str(seq).split("-", 1)[0]
            if number.isdigit():
                self.feed_position.labels(feed=feed, state=state).set(int(number))
