"""A first apply with a fault at each of its requests in turn (500, 503, 409, a dropped connection, no
answer in time): the summary a failed apply prints is true (what it calls applied is on the server, what it
calls not applied is not), a rerun converges, and every object the tool created carries its ownership mark.
Then the same walk over the first apply of the reference manifests (manifests/) on a server with users and
couch_peruser on: after each fault, one clean rerun and the next plan has nothing to do.

couchsim's fault injector fires before the request is handled, so a faulty write here never happened;
the "may or may not have happened" case of a real server is what the summary's `maybe applied` is for
(and the timeout: the server answers, and makes the write, after apply stopped waiting).
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import quote

import pytest
import requests
from click.testing import CliRunner

from couch_reconciler.couchsim.testing import SimServer
from couch_reconciler.cli import main
from couch_reconciler.kinds.user_databases import user_database
from reference_world import MANIFESTS as REFERENCE_MANIFESTS, demo_env
from waiting import wait_for

ADMIN = ("admin", "adminpw")
MARKER = {"created_by": "couch-reconciler"}
MANIFESTS = """\
apiVersion: reconciler/v1
kind: Database
metadata: {name: analytics}
spec:
  security:
    members: {roles: [_admin]}
---
apiVersion: reconciler/v1
kind: Database
metadata: {name: _global_changes}
spec: {}
---
apiVersion: reconciler/v1
kind: Database
metadata: {name: orders}
spec: {}
---
apiVersion: reconciler/v1
kind: ServerAdmin
metadata: {name: ops}
spec: {password: env:FAULTS_OPS_PASSWORD, nodes: all}
---
apiVersion: reconciler/v1
kind: User
metadata: {name: alice}
spec: {password: env:FAULTS_ALICE_PASSWORD}
---
apiVersion: reconciler/v1
kind: NodeConfig
metadata: {name: peruser}
spec:
  section: couch_peruser
  values: {enable: false}
  nodes: all
---
apiVersion: reconciler/v1
kind: DesignDocument
metadata: {name: counts}
spec:
  database: orders
  views:
    by_type: {map: "function (doc) { emit(doc.type, 1); }", reduce: _count}
---
apiVersion: reconciler/v1
kind: Replication
metadata: {name: orders-to-analytics}
spec:
  source: orders
  target: analytics
  auth: {username: ops, password: env:FAULTS_OPS_PASSWORD}
"""
FAULTS = {"500": {"status": 500}, "503": {"status": 503}, "409": {"status": 409}, "drop": {"drop": True},
          "hang": {"latency": 1.5}}
TIMEOUT = "0.5"  # seconds apply waits for each answer: below the hang's latency


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faults")
    (folder / "layout.yaml").write_text(MANIFESTS, encoding="utf-8")
    return folder


LAYOUT_SECRETS = {"FAULTS_OPS_PASSWORD": "ops-password", "FAULTS_ALICE_PASSWORD": "alice-password"}


def reconcile(sim: SimServer, *args: str, secrets: Mapping[str, str] = LAYOUT_SECRETS) -> "CliRunner.invoke":
    env = {"COUCHDB_URL": sim.url, "COUCHDB_USER": ADMIN[0], "COUCHDB_PASSWORD": ADMIN[1],
           "COUCHDB_REPLICATION_URL": sim.url, **secrets}
    return CliRunner(env=env).invoke(main, list(args))


def server(config: Mapping[str, Mapping[str, str]] | None = None) -> SimServer:
    return SimServer(admin=ADMIN, config={"chttpd_auth": {"iterations": "1000"}, **(config or {})})


def first_apply_requests(sim: SimServer, manifests: Path, secrets: Mapping[str, str] = LAYOUT_SECRETS
                         ) -> list[tuple[str, str, int]]:
    """(method, path, how many times it was sent before) of every request a first apply sends to `sim`,
    sorted: kinds write over a pool, so the order of a run is not the next run's, and each test worker must
    number the requests alike."""
    seen: list[tuple[str, str]] = []
    original = requests.Session.request

    def record(self: requests.Session, method: str, url: str, *args: object, **kwargs: object):
        seen.append((method, url.removeprefix(sim.url).split("?")[0]))
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = record  # type: ignore[method-assign]
    try:
        result = reconcile(sim, "apply", "--auto-approve", str(manifests), secrets=secrets)
    finally:
        requests.Session.request = original  # type: ignore[method-assign]
    assert result.exit_code == 0, result.output
    counted: dict[tuple[str, str], int] = {}
    numbered = []
    for method, path in seen:
        numbered.append((method, path, counted.get((method, path), 0)))
        counted[(method, path)] = counted.get((method, path), 0) + 1
    return sorted(numbered)


def inject(sim: SimServer, request: tuple[str, str, int], fault: str) -> None:
    """`fault` at the request numbered `request`: the same request sent before it goes through."""
    method, path, earlier = request
    pattern = "^" + re.escape(path) + r"(\?|$)"
    if earlier:
        sim.faults.inject(path=pattern, method=method, count=earlier)
    sim.faults.inject(path=pattern, method=method, count=1, **FAULTS[fault])


def faulty_apply(sim: SimServer, manifests: Path, fault: str, secrets: Mapping[str, str] = LAYOUT_SECRETS
                 ) -> "CliRunner.invoke":
    """apply with the faults injected, then the faults cleared and what the server still does for a request
    apply gave up on done; a failure says so in one line, never a traceback."""
    failed = reconcile(sim, "apply", "--auto-approve", "--timeout", TIMEOUT, str(manifests), secrets=secrets)
    sim.faults.clear()
    sim.faults.wait_settled(30)  # a request apply gave up on is still handled, its write made late
    assert "Traceback" not in failed.output
    if failed.exit_code != 0:
        assert len(failed.stderr.splitlines()) == 1, failed.stderr
    return failed


def planned_changes(sim: SimServer, manifests: Path) -> set[tuple[str, str]]:
    result = reconcile(sim, "plan", "--format", "json", str(manifests))
    assert result.exit_code == 0, result.output
    return {(change["kind"], change["key"]) for change in json.loads(result.stdout)["changes"]}


SUMMARY_LINE = re.compile(r"^  (applied|maybe applied|not applied): (.*)$")


def summary(stdout: str) -> dict[str, set[tuple[str, str]]]:
    """The failed apply's summary: section -> {(kind, key)}. Each kind lists at most 5 keys, which this
    layout never exceeds."""
    sections: dict[str, set[tuple[str, str]]] = {"applied": set(), "maybe applied": set(), "not applied": set()}
    for line in stdout.splitlines():
        match = SUMMARY_LINE.match(line)
        if match:
            for group in match.group(2).split("; "):
                kind_and_count, _, keys = group.partition(" (")
                kind = kind_and_count.split(" ", 1)[1]
                sections[match.group(1)] |= {(kind, key) for key in keys.removesuffix(")").split(", ")}
    return sections


def markers(sim: SimServer) -> dict[str, bool]:
    """Whether each object the layout creates carries the tool's ownership mark."""
    http = requests.Session()
    http.auth = ADMIN
    base = sim.url
    marks = {}
    for database in ("analytics", "_global_changes", "orders"):
        security = http.get(f"{base}/{quote(database, safe='')}/_security").json()
        marks[f"database/{database}"] = security.get("couch_reconciler") == MARKER
    marks["design_document"] = http.get(f"{base}/orders/_design/counts").json().get("couch_reconciler") == MARKER
    marks["replication"] = http.get(f"{base}/_replicator/orders-to-analytics").json().get("couch_reconciler") == MARKER
    marks["user"] = http.get(f"{base}/_users/org.couchdb.user:alice").json().get("created_by") == "couch-reconciler"
    node = http.get(f"{base}/_membership").json()["all_nodes"][0]
    marks["server_admin"] = http.get(f"{base}/_node/{node}/_config/couch_reconciler_admins/ops").status_code == 200
    http.close()
    return marks


def fault_cases() -> Iterator[tuple[int, str]]:
    for index in range(REQUESTS):
        for fault in FAULTS:
            yield index, fault


REQUESTS = 24  # the first apply's requests (the test below pins it): one case per request and fault


@pytest.fixture(scope="module")
def first_requests(manifests: Path) -> list[tuple[str, str, int]]:
    with server() as sim:
        return first_apply_requests(sim, manifests)


def test_the_cases_cover_every_request_of_a_first_apply(first_requests):
    assert len(first_requests) == REQUESTS
    assert any(method != "GET" for method, _, _ in first_requests)


@pytest.mark.parametrize("index, fault", list(fault_cases()))
def test_a_fault_leaves_a_true_summary_and_a_rerun_restores_every_mark(index, fault, manifests, first_requests):
    with server() as sim:
        inject(sim, first_requests[index], fault)

        failed = faulty_apply(sim, manifests, fault)

        if failed.exit_code != 0:
            left = planned_changes(sim, manifests)
            told = summary(failed.stdout)
            if told["applied"] | told["maybe applied"] | told["not applied"]:
                assert not told["applied"] & left, f"said applied, still planned: {told['applied'] & left}"
                assert told["not applied"] <= left, f"said not applied, yet done: {told['not applied'] - left}"
        rerun = reconcile(sim, "apply", "--auto-approve", str(manifests))
        assert rerun.exit_code == 0, rerun.output
        assert planned_changes(sim, manifests) == set()
        assert markers(sim) == dict.fromkeys(markers(sim), True)


def test_a_database_whose_marker_write_fails_keeps_its_creation_record_and_the_rerun_marks_it(manifests):
    """CouchDB creates a database from a body-less PUT, so its marker takes a second write. When that write fails,
    the database stays, unmarked: the record written before the batch's PUTs (`_users/_local/couch-reconciler-
    creating:ID`, a `_local` document: never replicated, outside `_all_docs`) is what tells the next plan it is
    this tool's. The databases marked meanwhile are no longer named by it."""
    with server() as sim:
        sim.faults.inject(path="^/orders/_security", method="PUT", status=500)
        failed = reconcile(sim, "apply", "--auto-approve", str(manifests))
        sim.faults.clear()
        records = requests.get(f"{sim.url}/_users/_local_docs", params={"include_docs": "true"}, auth=ADMIN).json()

        rerun = reconcile(sim, "apply", "--auto-approve", str(manifests))

        assert failed.exit_code == 1
        [record] = records["rows"]
        assert failed.stderr.splitlines() == [
            "database/orders: writing its _security and ownership marker: HTTP 500 couchsim_fault: injected by the "
            "test; the server failed; rerun when it is healthy; database/orders was created without it: the next "
            f"apply writes it (a creation record, _users/{record['id']}, says this tool created it)"]
        assert record["id"].startswith("_local/couch-reconciler-creating:")
        assert record["doc"]["databases"] == ["orders"]
        assert rerun.exit_code == 0, rerun.output
        assert "~ database/orders: updated" in rerun.stdout
        assert markers(sim) == dict.fromkeys(markers(sim), True)
        assert requests.get(f"{sim.url}/_users/_local_docs", auth=ADMIN).json()["rows"] == []


def test_without_users_a_database_whose_marker_and_undoing_both_fail_is_named_for_the_user(tmp_path):
    """A server with no `_users` (not set up) has nowhere to keep creation records: a database whose marked
    `_security` write fails is deleted again (it is empty), and when that fails too, only the error line can say
    who made it."""
    (tmp_path / "orders.yaml").write_text("apiVersion: reconciler/v1\nkind: Database\nmetadata: {name: orders}\n"
                                          "spec: {}\n", encoding="utf-8")
    with server() as sim:
        assert requests.delete(f"{sim.url}/_users", auth=ADMIN).status_code == 200
        sim.faults.inject(path="^/orders/_security", method="PUT", status=500)
        sim.faults.inject(path="^/orders$", method="DELETE", status=500)

        failed = reconcile(sim, "apply", "--auto-approve", str(tmp_path))

    assert failed.exit_code == 1
    assert failed.stderr.splitlines() == [
        "database/orders: writing its _security and ownership marker: HTTP 500 couchsim_fault: injected by the "
        "test; the server failed; rerun when it is healthy; database/orders was created but neither its ownership "
        "marker could be written nor the database deleted again: it stays unmanaged (never pruned) unless you "
        "delete it (it is empty) before the next apply"]


def test_on_a_terminal_the_progress_bar_stays_above_the_summary(tmp_path, monkeypatch):
    import couch_reconciler.cli

    monkeypatch.setattr(couch_reconciler.cli_output, "terminal", lambda stream: stream is couch_reconciler.cli.sys.stdout)
    (tmp_path / "dbs.yaml").write_text("---\n".join(
        f"apiVersion: reconciler/v1\nkind: Database\nmetadata: {{name: db{n:02}}}\nspec: {{}}\n" for n in range(60)),
        encoding="utf-8")
    with server() as sim:
        sim.faults.inject(path="^/db59$", method="PUT", status=500)

        failed = reconcile(sim, "apply", "--auto-approve", str(tmp_path))

    assert failed.exit_code == 1
    bar = failed.stdout.index("Applying")
    assert failed.stdout.index("Apply stopped: 0 of 60 changes applied, 60 may or may not have been", bar)
    assert failed.stderr.startswith("database/db59: HTTP 500")


# The reference manifests on a server as they meet it in production: users signed up, couch_peruser on (its
# start period set to 0, `[couch_peruser] cluster_start_period`, couch_peruser.erl: every case's server is ready
# at once), each user with her database. The first apply then creates what the manifests declare, ops, the
# role grants, and the databases of alice and bob (the manifests' users) as couch_peruser would.
PERUSER_ON = {"couch_peruser": {"enable": "true", "database_prefix": "userdb-", "cluster_start_period": "0"}}
SIGNED_UP = 5
REFERENCE_REQUESTS = 62  # the first apply's requests (the test below pins it)


@contextmanager
def reference_server() -> Iterator[SimServer]:
    with server(PERUSER_ON) as sim, requests.Session() as http:
        http.auth = ADMIN
        docs = [{"_id": f"org.couchdb.user:user{n}", "name": f"user{n}", "type": "user", "roles": []}
                for n in range(SIGNED_UP)]
        assert http.post(f"{sim.url}/_users/_bulk_docs", json={"docs": docs}).status_code == 201
        databases = {user_database("userdb-", doc["name"]) for doc in docs}
        wait_for(lambda: databases <= set(http.get(f"{sim.url}/_all_dbs").json()), "couch_peruser's databases")
        yield sim


def reference_cases() -> Iterator[tuple[int, str]]:
    # Every request with every fault: 310 cases, about 150 s of a quiet 2-core machine with two workers.
    for index in range(REFERENCE_REQUESTS):
        for fault in FAULTS:
            yield index, fault


@pytest.fixture(scope="module")
def reference_requests() -> list[tuple[str, str, int]]:
    with reference_server() as sim:
        return first_apply_requests(sim, REFERENCE_MANIFESTS, demo_env())


def test_the_reference_cases_cover_every_request_of_its_first_apply(reference_requests):
    assert len(reference_requests) == REFERENCE_REQUESTS
    assert {fault for _, fault in reference_cases()} == set(FAULTS)


@pytest.mark.parametrize("index, fault", list(reference_cases()))
def test_a_fault_in_the_first_apply_of_the_reference_manifests_then_one_rerun_converges(index, fault,
                                                                                        reference_requests):
    with reference_server() as sim:
        inject(sim, reference_requests[index], fault)
        faulty_apply(sim, REFERENCE_MANIFESTS, fault, demo_env())

        rerun = reconcile(sim, "apply", "--auto-approve", str(REFERENCE_MANIFESTS), secrets=demo_env())
        planned = reconcile(sim, "plan", "--detailed-exitcode", str(REFERENCE_MANIFESTS), secrets=demo_env())

    assert rerun.exit_code == 0, rerun.output
    assert planned.exit_code == 0, planned.output
