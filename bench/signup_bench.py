"""Benchmark: sign-up -> converged under `reconcile watch`, per user, for a burst of sign-ups, on couchsim.

    .venv/bin/python bench/signup_bench.py [--existing 1000] [--burst 100] [--fan-in triggered] [--pool 16]

couchsim runs with `[couch_peruser] enable = true` (the reference architecture's setting) and
`chttpd_auth/iterations=1000` (sign-ups stay cheap: CouchDB's 600,000 PBKDF2 rounds would cost ~240 ms of
server time each). `--existing` users are signed up and converged by a first full reconcile; then `--burst`
users sign up with one `_users/_bulk_docs` (an app back end importing a burst) while watch runs.

For each new user: the seconds from the sign-up until she is **converged** (her database exists, her name
is in its `_security`, she holds the `app-user` role and her replication document to `analytics` exists),
and, as the **floor**, until couch_peruser created her database (what no reconciler can beat: the template
completes a database couch_peruser makes). Both are observed the same way, by polling every 50 ms what is not
there yet, so the polling's own delay is in both. Printed: p50, p95 and max of each, never asserted.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ADMIN, couchsim, print_header, sign_up, user_template  # noqa: E402

from couch_reconciler.client import Connection, CouchSession  # noqa: E402
from couch_reconciler.kinds.user_databases import user_database  # noqa: E402
from couch_reconciler.plan import Policy  # noqa: E402
from couch_reconciler.watch import ActionLog, Settings, Watcher  # noqa: E402

POLL = 0.05  # seconds between two looks at what is not converged yet
CAP = 120.0  # seconds after which a user not converged is reported as such


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * len(ordered))) - 1)]
    return f"p50 {statistics.median(ordered):.3f} s, p95 {p95:.3f} s, max {ordered[-1]:.3f} s"


def observe(session: CouchSession, names: list[str], began: float, triggered: bool
            ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per user: seconds until her database existed (couch_peruser), until she had her security and role,
    and until she was converged (her replication too). With
    `triggered`, her replication counts once a document written into her database as soon as it exists (a
    client starting to sync) is in `analytics`: a one-shot document exists only once there is something
    to replicate."""
    databases = {name: user_database("userdb-", name) for name in names}
    created: dict[str, float] = {}
    converged: dict[str, float] = {}
    completed: dict[str, float] = {}  # converged but for the replication
    while len(converged) < len(names) and time.perf_counter() - began < CAP:
        now = time.perf_counter() - began
        waiting = [name for name in names if name not in converged]
        infos = session.post("_dbs_info", {"keys": [databases[name] for name in waiting]})
        exists = {row["key"] for row in infos if "info" in row}
        new = [name for name in waiting if databases[name] in exists and name not in created]
        for name in new:
            created[name] = now
        delivered: set[str] = set()
        if triggered:
            list(session.map(lambda name: session.request(
                "PUT", f"{quote(databases[name], safe='')}/first-{quote(name, safe='')}", body={}, ok=(409,)), new))
            arrived = session.post("analytics/_all_docs", {"keys": [f"first-{name}" for name in waiting]})["rows"]
            delivered = {row["key"].removeprefix("first-") for row in arrived if "value" in row}
        users = session.post("_users/_all_docs", {"keys": [f"org.couchdb.user:{n}" for n in waiting]},
                             params={"include_docs": "true"})["rows"]
        granted = {row["doc"]["name"] for row in users if row.get("doc") and "app-user" in row["doc"]["roles"]}
        docs = session.post("_replicator/_all_docs", {"keys": [f"per-user.{databases[n]}.to.analytics"
                                                               for n in waiting]})["rows"]
        replicated = {row["id"] for row in docs if "value" in row and not row["value"].get("deleted")}
        candidates = [name for name in waiting if name in granted and databases[name] in exists]

        def secured(name: str) -> bool:
            answer = session.request("GET", f"{quote(databases[name], safe='')}/_security")
            return name in answer.json().get("members", {}).get("names", [])

        for name, ok in zip(candidates, session.map(secured, candidates)):
            if ok or name in completed:
                completed.setdefault(name, now)
                if name in delivered if triggered else f"per-user.{databases[name]}.to.analytics" in replicated:
                    converged[name] = now
        time.sleep(POLL)
    return created, completed, converged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--existing", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--fan-in", choices=["continuous", "triggered"], default="triggered")
    parser.add_argument("--pool", type=int, default=16)
    args = parser.parse_args()
    os.environ["BENCH_ADMIN_PASSWORD"] = ADMIN[1]
    settings = Settings(interval=3600)
    config = ["chttpd_auth/iterations=1000", "couch_peruser/enable=true"]
    print_header("signup_bench", args.pool, f" --config {' --config '.join(config)}; watch debounce "
                 f"{settings.debounce} s (max {settings.debounce_max} s), fanIn {args.fan_in}")
    with couchsim(*config) as server:
        connection = Connection(server.url, *ADMIN, pool=args.pool, timeout=120)
        with CouchSession(connection) as session:
            sign_up(session, [f"user-{index:06d}" for index in range(args.existing)])
        session = CouchSession(connection)
        log, stopping = io.StringIO(), threading.Event()
        watcher = Watcher(session, lambda: user_template(server.url, args.fan_in), Policy(force=True), settings,
                          ActionLog("text", log), stopping)
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        try:
            while " full: " not in log.getvalue() or "applied" not in log.getvalue():
                time.sleep(0.1)
            time.sleep(1.0)  # the first full reconcile's own writes come back through the feeds: let them pass
            while watcher.fan_in.waiting() or watcher.fan_in.running:  # the first catch-up of a triggered fan-in
                time.sleep(0.2)
            names = [f"burst-{index:04d}" for index in range(args.burst)]
            with CouchSession(connection) as probe:
                began = time.perf_counter()
                sign_up(probe, names)
                created, completed, converged = observe(probe, names, began, args.fan_in == "triggered")
            print(f"  {args.existing} users converged before; {args.burst} sign-ups in one _bulk_docs:")
            what = "first document in analytics" if args.fan_in == "triggered" else "replication document"
            print(f"  sign-up -> converged (database, security, role, {what}): "
                  f"{percentiles(list(converged.values()))} ({len(converged)}/{args.burst} within {CAP:.0f} s)")
            print(f"  sign-up -> database, security and role: {percentiles(list(completed.values()))}")
            print(f"  floor, sign-up -> database created by couch_peruser: {percentiles(list(created.values()))}")
            print(f"  targeted reconciles: {log.getvalue().count('reconcile  targeted')}", flush=True)
            if len(converged) < args.burst:
                print("  watch's last log lines:\n" + "\n".join(log.getvalue().splitlines()[-15:]))
        finally:
            stopping.set()
            thread.join(timeout=60)
            session.close()


if __name__ == "__main__":
    main()
