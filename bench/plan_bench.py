"""Benchmark: first apply, `plan` and a no-op `apply` over N databases with security objects, each beside
its floor measured in the same run through the same pool, on couchsim or on any CouchDB.

    .venv/bin/python bench/plan_bench.py [--sizes 1000 10000] [--pool 16] [--runs 3] [--mixed]
    COUCHDB_USER=admin COUCHDB_PASSWORD=... .venv/bin/python bench/plan_bench.py --url http://127.0.0.1:5984 \\
        [--server-pid $(pgrep -f beam.smp)]

Without --url it starts `python -m couch_reconciler.couchsim` as a subprocess for each N. With --url it works on databases
named `reconciler-bench-*` only, deletes them before and after, and touches nothing else.

For each N it writes N Database manifests (each with a security object) and prints:

- the manifests' load + validate + expand time (part of every figure below, as in `reconcile plan`);
- first apply (load, plan and apply on an empty server) beside the floor of PUT db + PUT db/_security x N,
  after one round of that floor not counted (a server's first thousands of creations are its quickest);
- plan, and a no-op apply (the same plan, finding nothing to write), each beside the floor of a bare
  GET db/_security x N; the no-op apply also beside a naive script that GETs each `_security` one after
  the other on one connection and compares it with the manifest;
- the ratio to each floor, the client's CPU time and the server's (the couchsim process's, or --server-pid's,
  from /proc; "unknown" otherwise);
- under what each was measured: the machine's load, and how long the server took to be quiet before it began
  (each figure waits for that, bench/harness.py `settle`: without --server-pid a real server's quiet is unknown);
- with --mixed, a plan of other kinds too, as a deployment has them: N users (two with a password to verify) and
  a node setting beside the N databases, beside the floor of its bare reads one after the other and all at once
  (GET db/_security x N beside the `_users` pages): the plan reads what kinds read side by side.

Figures are printed, never asserted: timing belongs in benchmarks, not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (Measured, Server, add_server_options, bench_server, desired_state, measured,  # noqa: E402
                     print_ratio, quickest)

from couch_reconciler.apply import execute  # noqa: E402
from couch_reconciler.client import CouchSession, batched, db_path  # noqa: E402
from couch_reconciler.kinds import RESOURCES  # noqa: E402
from couch_reconciler.kinds.security import groups  # noqa: E402
from couch_reconciler.kinds.user import ID_PREFIX, USERS_DB  # noqa: E402
from couch_reconciler.nodes import config_path  # noqa: E402
from couch_reconciler.pipeline import make_plan  # noqa: E402
from couch_reconciler.plan import Policy  # noqa: E402

PREFIX = "reconciler-bench-"
FLOOR_PREFIX = f"{PREFIX}floor-"  # the first apply's floor creates its own databases beside the tool's


def write_manifests(folder: Path, count: int) -> None:
    """N databases with security, in files of 500 documents (a realistic split)."""
    roles = "apiVersion: reconciler/v1\nkind: Role\nmetadata: {name: app-user}\nspec: {}\n"
    (folder / "roles.yaml").write_text(roles)
    per_file = 500
    for start in range(0, count, per_file):
        documents = [
            f"apiVersion: reconciler/v1\nkind: Database\nmetadata: {{name: {PREFIX}{i:06d}}}\n"
            f"spec:\n  security:\n    members: {{roles: [app-user], names: [user-{i}]}}\n"
            f"    admins: {{names: [owner-{i}]}}\n"
            for i in range(start, min(start + per_file, count))]
        (folder / f"databases-{start // per_file:03d}.yaml").write_text("---\n".join(documents))


USERS_WITH_PASSWORD = 2
CONFIG_SECTION = PREFIX.rstrip("-")


def write_mixed(folder: Path, count: int) -> None:
    """N users holding the role (the first ones with a password, to verify as a plan does) and one node setting."""
    password = "{password: env:BENCH_USER_PASSWORD, roles: [app-user]}"
    documents = [f"apiVersion: reconciler/v1\nkind: User\nmetadata: {{name: {PREFIX}user-{i:06d}}}\n"
                 f"spec: {password if i < USERS_WITH_PASSWORD else '{roles: [app-user]}'}\n" for i in range(count)]
    documents.append(f"apiVersion: reconciler/v1\nkind: NodeConfig\nmetadata: {{name: {CONFIG_SECTION}}}\n"
                     f"spec: {{section: {CONFIG_SECTION}, values: {{marker: bench}}}}\n")
    (folder / "users.yaml").write_text("---\n".join(documents))


def bench_users(session: CouchSession) -> list[dict]:
    """Every user document of this benchmark on the server."""
    first = f"{ID_PREFIX}{PREFIX}"
    return list(session.all_docs(USERS_DB, "reading _users", first, first + "\ufff0"))


def drop_bench_users(server: Server) -> None:
    with CouchSession(server.connection) as session:
        docs = [{"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True} for doc in bench_users(session)]
        session.bulk_docs(USERS_DB, batched(docs, 1000), "deleting the benchmark's users")
        for node in session.get("_membership")["cluster_nodes"]:
            session.request("DELETE", config_path(node, CONFIG_SECTION, "marker"), ok=(404,))


def floor_mixed_reads(server: Server, names: list[str], at_once: bool) -> Measured:
    """GET db/_security x N and the `_users` pages through the tool's pool, one after the other or side by side."""
    with CouchSession(server.connection) as session, measured(server) as floor:
        def securities() -> None:
            list(session.map(lambda name: session.request("GET", db_path(name, "_security")), names))

        if at_once:
            with ThreadPoolExecutor(1) as beside:
                users = beside.submit(bench_users, session)
                securities()
                users.result()
        else:
            securities()
            bench_users(session)
    floor.requests = session.requests_sent
    return floor


def bench_databases(session: CouchSession) -> list[str]:
    """Every database of this benchmark on the server (left over by an interrupted run, too)."""
    return session.get("_all_dbs", params={"start_key": json.dumps(PREFIX), "end_key": json.dumps(PREFIX + "\ufff0")})


def drop_bench_databases(server: Server) -> None:
    with CouchSession(server.connection) as session:
        names = bench_databases(session)
        # Idempotent (404: gone already), so a connection the server closed mid-way is asked again: a real
        # CouchDB 3.4.3 closed one while deleting 10,000 databases, and the bench ended in a traceback.
        list(session.map(lambda name: session.request("DELETE", db_path(name), ok=(404,), retry=True), names))


def tool(server: Server, folder: Path, write: bool) -> Measured:
    """One `reconcile plan` (or `apply` when `write`): the manifests loaded, validated and expanded, then the
    server observed, diffed (and written to)."""
    with CouchSession(server.connection) as session, measured(server) as run:
        plan = make_plan(session, desired_state(folder), Policy(), RESOURCES)
        if write:
            execute(session, plan.changes, RESOURCES)
    run.requests = session.requests_sent
    run.changes = len(plan.changes)
    return run


def floor_reads(server: Server, names: list[str]) -> Measured:
    """GET db/_security x N through the tool's pool: what neither plan nor a no-op apply can beat."""
    with CouchSession(server.connection) as session, measured(server) as floor:
        list(session.map(lambda name: session.request("GET", db_path(name, "_security")), names))
    floor.requests = session.requests_sent
    return floor


def floor_writes(server: Server, wanted: Mapping[str, dict]) -> Measured:
    """PUT db + PUT db/_security x N through the tool's pool (CouchDB sets `_security` only on an existing
    database): what a first apply cannot beat. It makes databases of its own, deleted afterwards."""
    def create(name: str) -> None:
        floor_name = FLOOR_PREFIX + name.removeprefix(PREFIX)
        session.request("PUT", db_path(floor_name))
        session.request("PUT", db_path(floor_name, "_security"), body=wanted[name])

    with CouchSession(server.connection) as session, measured(server) as floor:
        list(session.map(create, wanted))
    floor.requests = session.requests_sent
    return floor


def naive_script(server: Server, wanted: Mapping[str, dict]) -> Measured:
    """What someone would write instead of the tool: GET each `_security` in turn, compare, count drift."""
    connection = server.connection
    http = requests.Session()
    http.auth = (connection.user, connection.password or "") if connection.user else None
    http.verify = connection.verify
    drift = 0
    with measured(server) as script:
        for name, want in wanted.items():
            have = groups(http.get(f"{connection.url}/{db_path(name, '_security')}", timeout=60).json())
            drift += any(set(have[group][part]) - {"_admin"} != set(want[group][part]) - {"_admin"}
                         for group in want for part in ("names", "roles"))
    http.close()
    script.requests = len(wanted)
    if drift:
        raise SystemExit(f"the naive script found {drift} databases with drift after a no-op apply")
    return script


def measure(server: Server, folder: Path, count: int, runs: int) -> None:
    drop_bench_databases(server)
    wanted: dict[str, dict] = {}

    def load() -> Measured:
        with measured(server) as loading:
            state = desired_state(folder)
        # Only the bodies stay: a floor runs beside no desired state, whose walks by the cycle collector would
        # slow it as they slow the tool (couch_reconciler/collector.py).
        wanted.update((key, dict(desired.body)) for (kind, key), desired in sorted(state.objects.items())
                      if kind == "security")
        return loading

    loading = quickest(runs, {"load": load})["load"]
    print(f"  manifests: {count + 1} documents loaded, validated and expanded in {loading.wall:.2f} s "
          f"({loading.conditions()}; client CPU {loading.client_cpu:.2f} s; libyaml "
          f"{'yes' if yaml.__with_libyaml__ else 'NO'}); each figure below loads them again, as `reconcile` does")

    def floor_first_apply() -> Measured:
        drop_bench_databases(server)
        return floor_writes(server, wanted)

    def first_apply() -> Measured:
        drop_bench_databases(server)
        return tool(server, folder, write=True)

    # A server that has created and deleted no databases yet creates them quicker than it will later (harness.py
    # `quickest`): one round of the floor's writes, not counted, so that no figure meets that server.
    warm_up = floor_first_apply()
    print(f"  warm-up, not counted: the floor's PUT db + PUT db/_security x N once, {warm_up.wall:.2f} s")
    # The tool's first apply goes last in the last turn: the databases it made stay for the plans below.
    floors = quickest(runs, {"PUT db + PUT db/_security x N": floor_first_apply, "tool": first_apply})
    first = floors.pop("tool")
    print_ratio("first apply", first, floors,
                f" ({first.changes} changes, {first.requests / count:.2f} requests per database)")
    for label, write in (("plan", False), ("no-op apply", True)):
        measures = {"tool": lambda: tool(server, folder, write),
                    "GET db/_security x N": lambda: floor_reads(server, list(wanted))}
        if write:
            measures["naive sequential GET-compare script"] = lambda: naive_script(server, wanted)
        floors = quickest(runs, measures)
        run = floors.pop("tool")
        if run.changes:
            raise SystemExit(f"{label}: {run.changes} changes right after the first apply")
        print_ratio(label, run, floors)
    drop_bench_databases(server)


def measure_mixed(server: Server, folder: Path, count: int, runs: int) -> None:
    """A plan over N databases, N users and a node setting, after a first apply made them all."""
    drop_bench_databases(server)
    drop_bench_users(server)
    write_mixed(folder, count)
    names = sorted(key for kind, key in desired_state(folder).objects if kind == "security")
    tool(server, folder, write=True)
    measures = {"tool": lambda: tool(server, folder, write=False),
                "GET db/_security x N, then the _users pages": lambda: floor_mixed_reads(server, names, False),
                "GET db/_security x N beside the _users pages": lambda: floor_mixed_reads(server, names, True)}
    floors = quickest(runs, measures)
    run = floors.pop("tool")
    if run.changes:
        raise SystemExit(f"mixed plan: {run.changes} changes right after the first apply")
    print_ratio(f"plan of {count} databases, {count} users and a node setting", run, floors)
    drop_bench_databases(server)
    drop_bench_users(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=1, help="measure each figure and floor this many times and "
                                                             "print the quickest (for a busy machine)")
    parser.add_argument("--mixed", action="store_true", help="also plan N users and a node setting beside the "
                                                              "N databases (what kinds read side by side)")
    add_server_options(parser)
    args = parser.parse_args()
    os.environ.setdefault("BENCH_USER_PASSWORD", "bench-user-pw")
    for count in args.sizes:
        with bench_server(args) as server, tempfile.TemporaryDirectory() as folder:
            if count == args.sizes[0]:
                print(f"plan_bench: {server.name}, pool {args.pool}, {os.cpu_count()} CPUs shared by "
                      "client and server" + (f"\n{server.models}" if server.models else ""))
            write_manifests(Path(folder), count)
            print(f"N = {count} databases with security objects:")
            measure(server, Path(folder), count, args.runs)
            if args.mixed:
                measure_mixed(server, Path(folder), count, args.runs)


if __name__ == "__main__":
    main()
