"""Benchmark: how long a document takes to reach `analytics` with `fanIn: triggered` under `reconcile watch`,
and the switch from `fanIn: continuous` under load, on couchsim with CouchDB's default `[replicator]`
settings (max_jobs 500, interval 60 s, max_churn 20: nothing is overridden but PBKDF2's rounds).

    .venv/bin/python bench/fanin_bench.py [--sizes 1000 10000] [--probes 20] [--switch-sizes 1000 10000] [--pool 16]

For each N: N users sign up, the template's first apply gives them a database (fanIn continuous when the
switch is measured, else triggered), watch starts with `fanIn: triggered` and, as soon as its full
reconcile is done, one document is written into the databases of `--probes` users spread over the whole
range (the first, the newest and evenly between), one after another, while watch's catch-up (every
database replicated once, or switched) still runs. Printed: p50, p95, max of the delays until each is in
`analytics`, beside the floor: the delay of one continuous replication already running (the same write
into its source, measured the same way, on the same server before the fan-in's own jobs exist), with
the load average (the machine is shared). The template is the shipped one's, `ownerField` included: each
probe is its user's (`_id` "NAME:...", `owner` NAME), as the app writes them, and passes her replication's
selector; the floor's replication has none.

The switch under load (at each of `--switch-sizes`): every user has a continuous replication, CouchDB's
scheduler runs 500 and holds the rest pending, and watch starts with `fanIn: triggered`; the probes are
written while it switches. Printed besides: the highest count of one-shot jobs in CouchDB's scheduler seen
(`_scheduler/jobs`, a job id without `+continuous`), sampled every 0.1 s or less often while one answer is
slow, against `--max-triggered`; when the continuous jobs were gone; how many databases were triggered more
than once with no write in between; how long it took, and of that watch's first full reconcile. Then, once caught up, the requests watch sends without writes and per database written,
which must not grow with the number of users, and `reconcile status` of the server as it is then (its
requests, time and lines: the summary must fit a screen at 10,000 users).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ADMIN, couchsim, print_header, sign_up, user_template  # noqa: E402

from couch_reconciler.apply import execute  # noqa: E402
from couch_reconciler.client import Connection, CouchSession  # noqa: E402
from couch_reconciler.kinds import RESOURCES  # noqa: E402
from couch_reconciler.kinds.user_databases import user_database  # noqa: E402
from couch_reconciler.model import DesiredState  # noqa: E402
from couch_reconciler.pipeline import make_plan  # noqa: E402
from couch_reconciler.plan import Policy  # noqa: E402
from couch_reconciler.status import health, render_text  # noqa: E402
from couch_reconciler.watch import ActionLog, Settings, Watcher  # noqa: E402

CAP = 120.0  # seconds a probe may take before it is reported as not arrived
OWNER_FIELD = "owner"  # as manifests/user-databases.yaml ships it: each user's replication carries its selector


def spread(count: int, probes: int) -> list[int]:
    """`probes` user indexes from the first to the newest, evenly apart."""
    return sorted({round(index * (count - 1) / max(probes - 1, 1)) for index in range(probes)})


def stats(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return f"p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s"


def arrival(session: CouchSession, database: str, doc_id: str, body: dict | None = None) -> float:
    """Write `doc_id` into `database`; seconds until `analytics` has it (CAP when it never came)."""
    session.put(f"{quote(database, safe='')}/{quote(doc_id, safe='')}", body or {"type": "probe"})
    began = time.perf_counter()
    while time.perf_counter() - began < CAP:
        if session.request("GET", f"analytics/{quote(doc_id, safe='')}", ok=(404,)).status_code == 200:
            return time.perf_counter() - began
        time.sleep(0.05)
    return CAP


def her_arrival(session: CouchSession, name: str, label: str) -> float:
    """`arrival` of a document the user `name` writes into her database as the app does: hers by `_id` and
    owner, so that her replication's selector lets it through."""
    return arrival(session, user_database("userdb-", name), f"{name}:{label}", {"type": "probe", OWNER_FIELD: name})


def template(url: str, fan_in: str) -> DesiredState:
    return user_template(url, fan_in, OWNER_FIELD)


def floor(session: CouchSession, url: str) -> list[float]:
    """Five delays of one continuous replication already running, into `analytics` like the fan-in."""
    session.put("floor-source", {})
    session.request("PUT", "analytics", ok=(412,))  # the manifests create it too; this may come first
    auth = {"basic": {"username": ADMIN[0], "password": ADMIN[1]}}
    session.put("_replicator/floor", {"source": {"url": f"{url}/floor-source", "auth": auth},
                                      "target": {"url": f"{url}/analytics", "auth": auth}, "continuous": True})
    arrival(session, "floor-source", "floor-warm-up")  # started, and caught up
    return [arrival(session, "floor-source", f"floor-{index}") for index in range(5)]


class Watching:
    def __init__(self, connection: Connection, url: str, settings: Settings):
        self.session = CouchSession(connection)
        self.log, self.stopping = io.StringIO(), threading.Event()
        self.watcher = Watcher(self.session, lambda: template(url, "triggered"), Policy(force=True), settings,
                               ActionLog("text", self.log), self.stopping)
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)
        self.thread.start()
        while "full: " not in self.log.getvalue() or " applied in " not in self.log.getvalue():
            time.sleep(0.1)

    def full_reconcile(self) -> str:
        """How long watch's first full reconcile took, as its log says (`... applied in 12.34s; ...`)."""
        line = next(line for line in self.log.getvalue().splitlines() if " full: " in line and " applied in " in line)
        return line.split(" applied in ", 1)[1].split(";", 1)[0]

    def triggers(self) -> Counter[str]:
        return Counter(line.split("replication/", 1)[1].split(":", 1)[0] for line in self.log.getvalue().splitlines()
                       if " trigger " in line and "one-shot replication started" in line)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)
        self.session.close()


class Scheduler:
    """Samples `_scheduler/jobs`: the most one-shot jobs seen (a continuous job's id ends with `+continuous`,
    couch_replicator_ids.erl `replication_id/1`), and when the last continuous one went. Every 0.1 s, but
    never more than a fifth of the server's time: with 10,000 jobs one answer takes ~0.4 s on couchsim, and
    asking again at once would load the server whose switch it measures."""

    def __init__(self, connection: Connection):
        self.one_shot, self.continuous_gone = 0, None
        self.began = time.perf_counter()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, args=(connection,), daemon=True)
        self.thread.start()

    def _sample(self, connection: Connection) -> None:
        with CouchSession(connection) as probe:
            while not self.stopping.is_set():
                asked = time.perf_counter()
                jobs = [job["id"] for job in probe.get("_scheduler/jobs", params={"limit": "100000"})["jobs"]]
                took = time.perf_counter() - asked
                self.one_shot = max(self.one_shot, sum(1 for job in jobs if not job.endswith("+continuous")))
                # The floor's own continuous job stays: the fan-in's are gone when it is the only one.
                if self.continuous_gone is None and sum(1 for job in jobs if job.endswith("+continuous")) <= 1:
                    self.continuous_gone = time.perf_counter() - self.began
                time.sleep(max(0.1, 4 * took))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


def measure(url: str, pool: int, count: int, probes: int, switch: bool, settings: Settings) -> None:
    connection = Connection(url, *ADMIN, pool=pool, timeout=120)
    names = [f"user-{index:06d}" for index in range(count)]
    with CouchSession(connection) as session:
        floors = floor(session, url)  # before the fan-in's jobs: with 1,000 continuous ones it would wait its turn
        sign_up(session, names)
        began = time.perf_counter()
        plan = make_plan(session, template(url, "continuous" if switch else "triggered"), Policy(force=True), RESOURCES)
        execute(session, plan.changes, RESOURCES)
        print(f"  setup: {count} users, first apply (fanIn {'continuous' if switch else 'triggered'}) "
              f"{len(plan.changes)} changes in {time.perf_counter() - began:.1f} s", flush=True)
        if switch:  # under load: CouchDB's scheduler full, the rest of the continuous jobs pending
            while len(session.get("_scheduler/jobs", params={"limit": "100000"})["jobs"]) < min(count + 1, 500):
                time.sleep(0.2)
    scheduler = Scheduler(connection)
    began = time.perf_counter()
    watch = Watching(connection, url, settings)
    try:
        fan_in = watch.watcher.fan_in
        behind = fan_in.waiting() + len(fan_in.running)
        with CouchSession(connection) as session:
            delays = [her_arrival(session, names[index], f"probe-{index}") for index in spread(count, probes)]
        arrived = sum(1 for delay in delays if delay < CAP)
        print(f"  delay to analytics over {len(delays)} users from the first to the newest, written while the "
              f"catch-up of {behind} databases runs: {stats(delays)} ({arrived}/{len(delays)} within {CAP:.0f} s); "
              f"floor (one running continuous replication) {stats(floors)}; load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        while fan_in.waiting() or fan_in.running:
            time.sleep(0.2)
        took = time.perf_counter() - began
        scheduler.stop()
        twice = sum(1 for doc_id, runs in watch.triggers().items()
                    if runs > 1 and not any(doc_id.startswith(f"per-user.{user_database('userdb-', names[i])}.")
                                            for i in spread(count, probes)))
        label = "switch from continuous" if switch else "catch-up"
        gone = ("" if not switch else "; continuous jobs gone from the scheduler "
                + ("never" if scheduler.continuous_gone is None else f"{scheduler.continuous_gone:.1f} s")
                + " after watch started")
        print(f"  {label}: {behind} databases in {took:.1f} s (watch's first full reconcile, which "
              f"{'deletes the continuous documents' if switch else 'finds them behind'}, {watch.full_reconcile()}); "
              f"one-shot jobs in the scheduler at most "
              f"{scheduler.one_shot} (--max-triggered {settings.max_triggered}){gone}; databases triggered twice "
              f"without a write between: {twice}", flush=True)
        steady(watch, names)
        status(connection, url, "triggered")
    finally:
        scheduler.stop()
        watch.stop()


def status(connection: Connection, url: str, fan_in: str) -> None:
    """`reconcile status` of this server, caught up, with watch running: its requests, its time, and how many
    lines its text takes (the summary must fit a screen)."""
    with CouchSession(connection) as session:
        began = time.perf_counter()
        result = health(session, template(url, fan_in), pending_threshold=300.0, stale_threshold=300.0)
        took, sent = time.perf_counter() - began, session.requests_sent
    text = render_text(result)
    print(f"  reconcile status: {sent} requests in {took:.1f} s; {len(text.splitlines())} lines, exit "
          f"{0 if result.healthy else 2}:", flush=True)
    print("    | " + text.rstrip("\n").replace("\n", "\n    | "), flush=True)


def steady(watch: Watching, names: list[str], quiet: float = 10.0, writes: int = 10) -> None:
    """What watch sends once caught up: while nothing is written (its feeds' long polls), and per database
    written (a one-shot run: its update_seq, a plan and apply of its document, polls until it completed). Both
    follow what changed, not how many user databases there are."""
    session = watch.session
    before = session.requests_sent
    time.sleep(quiet)
    idle = session.requests_sent - before
    before = session.requests_sent
    with CouchSession(session.connection) as writer:
        for index in range(writes):
            her_arrival(writer, names[index * len(names) // writes], f"steady-{index}")
    per_write = (session.requests_sent - before) / writes
    print(f"  watch caught up, {len(names)} user databases: {idle} requests in {quiet:.0f} s without writes, "
          f"{per_write:.1f} per database written ({writes} written one after another)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--switch-sizes", type=int, nargs="*", default=[1000, 10000],
                        help="users for the mode switch under load (none: no switch)")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--pool", type=int, default=16)
    args = parser.parse_args()
    os.environ["BENCH_ADMIN_PASSWORD"] = ADMIN[1]
    settings = Settings(interval=3600)
    print_header("fanin_bench", args.pool, " --config chttpd_auth/iterations=1000 ([replicator] defaults: "
                 f"max_jobs 500, interval 60000 ms, max_churn 20); watch debounce {settings.debounce} s, "
                 f"max_triggered {settings.max_triggered}")
    runs = [(count, False) for count in args.sizes] + [(count, True) for count in args.switch_sizes]
    for count, switch in runs:
        with couchsim("chttpd_auth/iterations=1000") as server:
            print(f"N = {count} users{', switching from fanIn continuous' if switch else ''}:", flush=True)
            measure(server.url, args.pool, count, args.probes, switch, settings)


if __name__ == "__main__":
    main()
