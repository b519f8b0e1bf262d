"""Benchmark: `plan` and a no-op `apply` over N databases with security objects, on couchsim.

    .venv/bin/python bench/plan_bench.py [--sizes 1000 10000] [--pool 16]

For each N it starts `python -m couchsim` as a subprocess, writes N Database
manifests (each with a security object), brings the server to them with one
apply (its requests per database beside the floor of 2, and its time), then measures:

- plan: wall time (load + validate + expand + observe + diff) and the HTTP
  requests it sent, against the target N + 2*N/100 + 20 (issue 5);
- a no-op apply (the same plan, finding nothing to write);
- beside each, the floor: the same number of bare `GET /` requests through
  the same CouchSession pool against the same server.

Figures are printed, never asserted: timing belongs in benchmarks, not tests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ADMIN, couchsim, desired_state, print_beside_floor, print_header  # noqa: E402

from reconciler.apply import execute  # noqa: E402
from reconciler.client import Connection, CouchSession  # noqa: E402
from reconciler.kinds import RESOURCES  # noqa: E402
from reconciler.pipeline import make_plan  # noqa: E402
from reconciler.plan import Policy  # noqa: E402


def write_manifests(folder: Path, count: int) -> None:
    """N databases with security, in files of 500 documents (a realistic split, and YAML stays quick)."""
    roles = "apiVersion: reconciler/v1\nkind: Role\nmetadata: {name: app-user}\nspec: {}\n"
    (folder / "roles.yaml").write_text(roles)
    per_file = 500
    for start in range(0, count, per_file):
        documents = [
            f"apiVersion: reconciler/v1\nkind: Database\nmetadata: {{name: bench-{i:06d}}}\n"
            f"spec:\n  security:\n    members: {{roles: [app-user], names: [user-{i}]}}\n"
            f"    admins: {{names: [owner-{i}]}}\n"
            for i in range(start, min(start + per_file, count))]
        (folder / f"databases-{start // per_file:03d}.yaml").write_text("---\n".join(documents))


def measure(url: str, folder: Path, pool: int, count: int) -> None:
    connection = Connection(url, *ADMIN, pool=pool)
    began = time.perf_counter()
    state = desired_state(folder)
    offline = time.perf_counter() - began

    with CouchSession(connection) as session:
        began = time.perf_counter()
        first = make_plan(session, state, Policy(), RESOURCES)
        planned = session.requests_sent
        execute(session, first.changes, RESOURCES)
        setup = time.perf_counter() - began
        written = session.requests_sent - planned
    # The floor of a first apply: CouchDB sets `_security` only on an existing database, so 2 writes each.
    print(f"  first apply: {len(first.changes)} changes, {planned} requests to plan + {written} to apply "
          f"({written / count:.2f} per database; floor 2: PUT db + PUT db/_security), {setup:.1f} s")

    target = count + 2 * count // 100 + 20
    for label in ("plan", "no-op apply"):
        with CouchSession(connection) as session:
            began = time.perf_counter()
            plan = make_plan(session, state, Policy(), RESOURCES)
            execute(session, plan.changes, RESOURCES)  # nothing to do: a no-op apply writes nothing
            online = time.perf_counter() - began
            sent = session.requests_sent
        verdict = "within" if sent <= target else "OVER"
        print_beside_floor(connection, label, sent, offline + online,
                           f"{len(plan.changes)} changes ({verdict} target {target}; "
                           f"manifests {offline:.2f} s + server {online:.2f} s), ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--pool", type=int, default=16)
    args = parser.parse_args()
    print_header("plan_bench", args.pool)
    for count in args.sizes:
        with couchsim() as server, tempfile.TemporaryDirectory() as folder:
            write_manifests(Path(folder), count)
            print(f"N = {count} databases with security objects:")
            measure(server.url, Path(folder), args.pool, count)


if __name__ == "__main__":
    main()
