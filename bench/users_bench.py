"""Benchmark: `plan` over N `_users` documents, M of them with a managed password, on couchsim.

    .venv/bin/python bench/users_bench.py [--sizes 1000 10000] [--managed 50] [--pool 16]

For each N it starts `python -m couch_reconciler.couchsim` (CouchDB 3.4's 600,000 PBKDF2 rounds), puts
N - M users straight into `_users` (as sign-ups would), writes M User manifests with a
password reference, brings the server to them with one apply (timed, for information:
the server hashes each password), then measures a plan that finds nothing to change:

- wall time and HTTP requests (the user kind reads `_users/_all_docs` in pages of 1,000);
- the part spent verifying the M secrets offline (never through `_session`): the same M
  checks run one after another, for comparison; then the same plan again in the same
  process, as `reconcile watch` runs it (verified pairs are remembered);
- the floor: the same number of bare `GET /` requests through the same pool.

Figures are printed, never asserted: timing belongs in benchmarks, not tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ADMIN, couchsim, desired_state, print_beside_floor, print_header, sign_up  # noqa: E402

from couch_reconciler.apply import execute  # noqa: E402
from couch_reconciler.client import Connection, CouchSession  # noqa: E402
from couch_reconciler.kinds import RESOURCES  # noqa: E402
from couch_reconciler.kinds.user import user_hash, users_on_server  # noqa: E402
from couch_reconciler.pipeline import make_plan  # noqa: E402
from couch_reconciler.plan import Policy  # noqa: E402

PASSWORD = "bench-user-pw"


def write_manifests(folder: Path, managed: int) -> None:
    roles = "apiVersion: reconciler/v1\nkind: Role\nmetadata: {name: app-user}\nspec: {}\n"
    users = [f"apiVersion: reconciler/v1\nkind: User\nmetadata: {{name: managed-{i:04d}}}\n"
             f"spec:\n  password: env:BENCH_USER_PASSWORD\n  roles: [app-user]\n" for i in range(managed)]
    (folder / "users.yaml").write_text("---\n".join([roles] + users))


def measure(url: str, folder: Path, pool: int, count: int, managed: int) -> None:
    connection = Connection(url, *ADMIN, pool=pool)
    state = desired_state(folder)
    with CouchSession(connection) as session:
        sign_up(session, [f"signup-{i:06d}" for i in range(count - managed)], password=None)
        began = time.perf_counter()
        first = make_plan(session, state, Policy(), RESOURCES)
        execute(session, first.changes, RESOURCES)
        print(f"  first apply (setup): {len(first.changes)} users created, {time.perf_counter() - began:.1f} s")

    timings = []
    for _ in range(2):  # the second plan is what `reconcile watch` pays each time: verified pairs are remembered
        with CouchSession(connection) as session:
            began = time.perf_counter()
            plan = make_plan(session, state, Policy(), RESOURCES)
            timings.append(time.perf_counter() - began)
            sent = session.requests_sent
            docs = [doc for doc in users_on_server(session) if doc["name"].startswith("managed-")]
    began = time.perf_counter()
    for doc in docs:
        user_hash(doc).verifies(PASSWORD)
    sequential = time.perf_counter() - began
    print_beside_floor(connection, "plan", sent, timings[0],
                       f"{len(plan.changes)} changes, mostly verifying {len(docs)} secrets offline in parallel on "
                       f"{os.cpu_count()} CPUs (the same checks one after another: {sequential:.2f} s), ")
    print(f"  the same plan again in this process (watch): wall {timings[1]:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--managed", type=int, default=50)
    parser.add_argument("--pool", type=int, default=16)
    args = parser.parse_args()
    os.environ["BENCH_USER_PASSWORD"] = PASSWORD
    print_header("users_bench", args.pool, " (600,000 PBKDF2 rounds)")
    for count in args.sizes:
        with couchsim() as server, tempfile.TemporaryDirectory() as folder:
            write_manifests(Path(folder), args.managed)
            print(f"N = {count} users, {args.managed} with a managed password:")
            measure(server.url, Path(folder), args.pool, count, args.managed)


if __name__ == "__main__":
    main()
