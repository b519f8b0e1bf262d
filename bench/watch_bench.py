"""Benchmark: the database-per-user reference layout under `reconcile watch`, on couchsim.

    .venv/bin/python bench/watch_bench.py [--sizes 1000 10000] [--pool 16] [--replicator-interval 5000]

For each N it starts `python -m couch_reconciler.couchsim --config chttpd_auth/iterations=1000` (user creation stays cheap:
CouchDB's 600,000 PBKDF2 rounds would cost ~240 ms of server time per sign-up) with a shorter
`[replicator] interval` than CouchDB's 60,000 ms (printed), signs N users up with `_bulk_docs` (as an app
back end would), and measures:

- `plan` and the first `apply` of the template (database, merge-mode security, the `app-user` role, a
  continuous replication to `analytics` per user): wall time and requests;
- watch converging after 100 sign-ups written at once: the time until every one has her database, her
  name in its security, the role and her replication document, and the requests watch sent meanwhile;
- the delay until a document written into one of the new users' databases is in `analytics`, with
  `fanIn: continuous` (N + 100 continuous jobs against `max_jobs` 500) and with `fanIn: triggered`
  (watch's first full reconcile makes the continuous documents one-shot; the initial catch-up, one one-shot
  per database, is timed separately);
- beside each, the floor: the same number of bare `GET /` requests through the same pool.

Figures are printed, never asserted. If a size takes too long on a shared machine, the step prints what
it reached and the rate.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ADMIN, couchsim, print_beside_floor, print_header, sign_up, user_template  # noqa: E402

from couch_reconciler.apply import execute  # noqa: E402
from couch_reconciler.client import Connection, CouchSession  # noqa: E402
from couch_reconciler.kinds import RESOURCES  # noqa: E402
from couch_reconciler.pipeline import make_plan  # noqa: E402
from couch_reconciler.plan import Policy  # noqa: E402
from couch_reconciler.kinds.user_databases import user_database  # noqa: E402
from couch_reconciler.watch import ActionLog, Settings, Watcher  # noqa: E402

NEW_USERS = 100
FULL_AGAIN = 20.0  # seconds: the continuous watch's --interval, to time a second full reconcile
WAIT_CAP = 120.0  # seconds to wait for a document in analytics before printing "not yet"


def converged(session: CouchSession, names: list[str]) -> int:
    """How many of `names` have their database with them in its security, the role and the replication doc."""
    databases = [user_database("userdb-", name) for name in names]
    users = session.post("_users/_all_docs", {"keys": [f"org.couchdb.user:{n}" for n in names]},
                         params={"include_docs": "true"})["rows"]
    granted = {row["doc"]["name"] for row in users if row.get("doc") and "app-user" in row["doc"].get("roles", [])}
    docs = session.post("_replicator/_all_docs", {"keys": [f"per-user.{db}.to.analytics" for db in databases]})["rows"]
    replicated = {row["id"] for row in docs if "value" in row and not row["value"].get("deleted")}
    done = 0
    for name, database in zip(names, databases):
        if name not in granted or f"per-user.{database}.to.analytics" not in replicated:
            continue
        answer = session.request("GET", f"{database}/_security", ok=(404,))
        if answer.status_code == 200 and name in answer.json().get("members", {}).get("names", []):
            done += 1
    return done


class Running:
    """A Watcher in a thread, its log kept in memory."""

    def __init__(self, connection: Connection, state, policy: Policy, settings: Settings):
        self.session = CouchSession(connection)
        self.log = io.StringIO()
        self.stopping = threading.Event()
        self.watcher = Watcher(self.session, lambda: state, policy, settings, ActionLog("text", self.log),
                               self.stopping)
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)
        self.thread.start()

    def full_reconciles(self) -> int:
        return sum(1 for line in self.log.getvalue().splitlines() if " full: " in line and "applied" in line)

    def last_full_seconds(self) -> float:
        line = [line for line in self.log.getvalue().splitlines() if " full: " in line and "applied" in line][-1]
        return float(line.split(" applied in ", 1)[1].split("s", 1)[0])

    def wait_full(self, count: int = 1, cap: float = 3600) -> float:
        began = time.perf_counter()
        while self.full_reconciles() < count:
            if time.perf_counter() - began > cap:
                raise SystemExit("watch did not finish its full reconcile:\n" + self.log.getvalue()[-2000:])
            time.sleep(0.1)
        return time.perf_counter() - began

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)
        self.session.close()


def scheduler_states(session: CouchSession) -> str:
    """What CouchDB's scheduler says of the replication documents: running, pending, crashing..."""
    counts: dict[str, int] = {}
    for doc in session.get("_scheduler/docs/_replicator", params={"limit": "100000"})["docs"]:
        counts[doc.get("state")] = counts.get(doc.get("state"), 0) + 1
    return ", ".join(f"{count} {state}" for state, count in sorted(counts.items(), key=lambda item: str(item[0])))


def delay_to_analytics(session: CouchSession, database: str, doc_id: str) -> str:
    session.put(f"{database}/{doc_id}", {"type": "bench"})
    began = time.perf_counter()
    while time.perf_counter() - began < WAIT_CAP:
        if session.request("GET", f"analytics/{doc_id}", ok=(404,)).status_code == 200:
            return f"{time.perf_counter() - began:.2f} s"
        time.sleep(0.1)
    return f"not there after {WAIT_CAP:.0f} s (still waiting for a replicator slot)"


def measure(url: str, pool: int, count: int, settings: Settings) -> None:
    connection = Connection(url, *ADMIN, pool=pool, timeout=120)
    names = [f"user-{index:06d}" for index in range(count)]
    with CouchSession(connection) as session:
        began = time.perf_counter()
        sign_up(session, names)
        print(f"  setup: {count} sign-ups with _bulk_docs in {time.perf_counter() - began:.1f} s", flush=True)
    continuous = user_template(url, "continuous")
    for label, apply in (("plan", False), ("first apply", True)):
        with CouchSession(connection) as session:
            began = time.perf_counter()
            plan = make_plan(session, continuous, Policy(force=True), RESOURCES)
            if apply:
                execute(session, plan.changes, RESOURCES)
            print_beside_floor(connection, f"{label:11s}", session.requests_sent, time.perf_counter() - began,
                               f"{len(plan.changes)} changes, ")

    watch = Running(connection, continuous, Policy(), replace(settings, interval=FULL_AGAIN))
    try:
        startup = watch.wait_full()
        startup_sent = watch.session.requests_sent
        print(f"  watch start (full reconcile, nothing to do, reads every _security once): {startup_sent} requests, "
              f"{startup:.2f} s", flush=True)
        time.sleep(2 * settings.debounce)
        fresh = [f"late-{index:04d}" for index in range(NEW_USERS)]
        with CouchSession(connection) as probe:
            before = watch.session.requests_sent
            began = time.perf_counter()
            sign_up(probe, fresh)
            done = 0
            while done < NEW_USERS and time.perf_counter() - began < 600:
                time.sleep(0.2)
                done = converged(probe, fresh)
            wall = time.perf_counter() - began
            sent = watch.session.requests_sent - before
        print_beside_floor(connection, f"watch converged on {done}/{NEW_USERS} sign-ups", sent, wall)
        time.sleep(2)  # the sign-ups' own role grants come back through the feed once: let that pass
        before = watch.session.requests_sent
        watch.wait_full(2)
        # Counted from just before it to just after it: the few feed long-polls meanwhile are included.
        print_beside_floor(connection,
                           "next full reconcile (skips _security of databases whose update_seq is unchanged)",
                           watch.session.requests_sent - before, watch.last_full_seconds())
        with CouchSession(connection) as probe:
            states = scheduler_states(probe)
            delay = delay_to_analytics(probe, user_database("userdb-", fresh[-1]), "bench-continuous")
            waiting = probe.get("_scheduler/docs/_replicator", params={"states": "pending", "limit": "1"})["docs"]
            stale = "no job is pending" if not waiting else delay_to_analytics(
                probe, unquote(waiting[0]["source"].rstrip("/").rsplit("/", 1)[1]), "bench-continuous-pending")
        print(f"  delay to analytics, fanIn continuous ({count + NEW_USERS} continuous jobs, max_jobs 500; "
              f"scheduler: {states}): from a new user's database {delay}; from a database whose job is "
              f"pending {stale}", flush=True)
    finally:
        watch.stop()

    triggered = user_template(url, "triggered")
    watch = Running(connection, triggered, Policy(force=True), settings)
    try:
        switch = watch.wait_full()
        print(f"  switch to fanIn triggered (full reconcile making {count + NEW_USERS} continuous documents one-shot): "
              f"{switch:.2f} s", flush=True)
        fan_in = watch.watcher.fan_in
        began = time.perf_counter()
        total = count + NEW_USERS
        while (fan_in.waiting() or fan_in.running) and time.perf_counter() - began < 900:
            time.sleep(0.5)
        left = fan_in.waiting() + len(fan_in.running)
        took = time.perf_counter() - began
        print(f"  initial catch-up: {total - left}/{total} one-shot replications in {took:.1f} s "
              f"({(total - left) / max(took, 0.001):.0f}/s, at most {settings.max_triggered} at once)", flush=True)
        with CouchSession(connection) as probe:
            delay = delay_to_analytics(probe, user_database("userdb-", f"late-{NEW_USERS - 1:04d}"), "bench-triggered")
        print(f"  delay to analytics, fanIn triggered (debounce {settings.debounce:g} s): {delay}", flush=True)
    finally:
        watch.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--pool", type=int, default=16)
    parser.add_argument("--replicator-interval", type=int, default=5000, metavar="MS")
    args = parser.parse_args()
    os.environ["BENCH_ADMIN_PASSWORD"] = ADMIN[1]
    config = ["chttpd_auth/iterations=1000", f"replicator/interval={args.replicator_interval}"]
    settings = Settings(interval=3600, debounce=0.5, max_triggered=20)
    print_header("watch_bench", args.pool, f" --config {' --config '.join(config)} (CouchDB defaults: 600000 rounds, "
                 "interval 60000 ms; max_jobs 500, max_churn 20 left as they are); watch debounce "
                 f"{settings.debounce} s, max_triggered {settings.max_triggered}")
    for count in args.sizes:
        with couchsim(*config) as server:
            print(f"N = {count} users signed up on the server:", flush=True)
            measure(server.url, args.pool, count, settings)


if __name__ == "__main__":
    main()
