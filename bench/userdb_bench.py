"""Benchmark: the UserDatabases template over N users who exist only on the server, on couchsim.

    .venv/bin/python bench/userdb_bench.py [--sizes 1000 10000] [--pool 16] [--peruser off on]

For each N (and couch_peruser off, then on) it starts `python -m couch_reconciler.couchsim`, lowers PBKDF2 rounds, signs
N users up with `_bulk_docs` (as an app back end would), and runs against the reference-style template
(database, security in merge mode, the `app-user` role, one continuous replication to `analytics` each):

- plan: wall time and requests (one paged `_users` read, `_dbs_info` 100 names a request, `_security`
  per existing user database, paged `_replicator`);
- first apply: the plan's writes (databases and their security over the pool, roles and replication
  documents with `_bulk_docs`), wall time and requests;
- plan again (nothing to do);
- beside each, the floor: the same number of bare `GET /` through the same pool.

Figures are printed, never asserted. With couch_peruser on, the databases and their security exist
before the plan (couch_peruser made them), so apply writes only roles and replication documents.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ADMIN, couchsim, print_beside_floor, print_header, sign_up, user_template  # noqa: E402

from couch_reconciler.apply import execute  # noqa: E402
from couch_reconciler.client import Connection, CouchSession  # noqa: E402
from couch_reconciler.kinds import RESOURCES  # noqa: E402
from couch_reconciler.pipeline import make_plan  # noqa: E402
from couch_reconciler.plan import Policy  # noqa: E402
from couch_reconciler.kinds.user_databases import user_database  # noqa: E402

def prepare(url: str, count: int, peruser: bool) -> None:
    """Fast hashing, couch_peruser as asked, and N sign-ups written directly, as a back end would."""
    with CouchSession(Connection(url, *ADMIN)) as session:
        config = "_node/_local/_config"
        session.put(f"{config}/chttpd_auth/iterations", "1000")
        session.put(f"{config}/couch_peruser/enable", "true" if peruser else "false")
        names = [f"user-{index:06d}" for index in range(count)]
        sign_up(session, names)
        if peruser:  # couch_peruser works after the write; the plan starts once it has caught up
            last = user_database("userdb-", names[-1])
            while session.request("GET", f"{last}/_security", ok=(404,)).status_code != 200:
                time.sleep(0.2)


def timed(connection: Connection, state, apply: bool) -> tuple[int, int, float]:
    with CouchSession(connection) as session:
        began = time.perf_counter()
        plan = make_plan(session, state, Policy(force=True), RESOURCES)
        if apply:
            execute(session, plan.changes, RESOURCES)
        return len(plan.changes), session.requests_sent, time.perf_counter() - began


def measure(url: str, pool: int, count: int, peruser: bool) -> None:
    connection = Connection(url, *ADMIN, pool=pool)
    state = user_template(url)
    for label, apply in (("plan", False), ("first apply", True), ("plan again", False)):
        changes, sent, wall = timed(connection, state, apply)
        print_beside_floor(connection, label, sent, wall, f"{changes} changes, ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--pool", type=int, default=16)
    parser.add_argument("--peruser", choices=("off", "on"), nargs="+", default=["off", "on"])
    args = parser.parse_args()
    os.environ["BENCH_ADMIN_PASSWORD"] = ADMIN[1]
    print_header("userdb_bench", args.pool)
    for count in args.sizes:
        for peruser in args.peruser:
            with couchsim() as server:
                prepare(server.url, count, peruser == "on")
                print(f"N = {count} users only on the server, couch_peruser {peruser}:")
                measure(server.url, args.pool, count, peruser == "on")


if __name__ == "__main__":
    main()
