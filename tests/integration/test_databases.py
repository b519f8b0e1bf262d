"""Databases: create, replace and delete through plan/apply, as a pipeline runs them.

Relied on: docs/couchdb.md (a new database's `_security` is the admin-only
default; `_dbs_info` rows carry `update_seq`, `doc_count`, `props.partitioned`),
apache/couchdb src/couch/src/couch_db.erl (`validate_security_object` checks only
`admins`/`members` and `set_security` stores the whole object, so the ownership marker
survives), and CouchDB's docs on partitioned databases (`?partitioned=true` at creation
only: a database cannot become partitioned later).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from reconcile_runner import reconcile, write


def database(name: str, spec: str = "{}") -> str:
    return f"""
    apiVersion: reconciler/v1
    kind: Database
    metadata: {{name: {name}}}
    spec: {spec}
    """


def writes(run) -> list[tuple[str, str]]:
    """Requests that change something: every one but GETs and the POSTs that read `_dbs_info`."""
    return [(sent[0], sent[1]) for sent in run.sent
            if sent[0] != "GET" and not (sent[0] == "POST" and sent[1].endswith("/_dbs_info"))]


def info(couch, http, name: str) -> dict | None:
    answer = http.get(f"{couch.url}/{quote(name, safe='')}")
    return answer.json() if answer.status_code == 200 else None


def test_create_then_the_second_plan_is_empty(couch, http, unique, tmp_path):
    orders, events = unique("orders"), unique("events")
    write(tmp_path, "dbs.yaml", database(orders, "\n      security: {members: {names: [carl]}}") + "---"
          + database(events, "{partitioned: true, q: 2}"))
    first = reconcile(couch, "plan", str(tmp_path), "--detailed-exitcode")
    assert first.code == 2, first.stderr
    assert f"  + database/{orders}" in first.stdout and "Plan: 3 to add, 0 to change, 0 to destroy." in first.stdout
    # One bulk read; no `_security` read for a database that does not exist yet.
    assert [sent[1] for sent in first.sent] == [f"{couch.url}/_dbs_info"]

    applied = reconcile(couch, "apply", str(tmp_path), "--auto-approve")
    assert applied.code == 0, applied.stderr
    assert f"+ database/{events}: created" in applied.stdout
    assert info(couch, http, events)["props"] == {"partitioned": True}
    assert info(couch, http, events)["cluster"]["q"] == 2
    # Created by the tool: marked as such inside its security object, beside the members it was given.
    security = http.get(f"{couch.url}/{orders}/_security").json()
    assert security["members"] == {"names": ["carl"], "roles": ["_admin"]} and security["couch_reconciler"]

    again = reconcile(couch, "plan", str(tmp_path), "--detailed-exitcode")
    assert (again.code, again.stdout) == (0, "No changes. The server matches the manifests.\n")
    noop = reconcile(couch, "apply", str(tmp_path), "--auto-approve")
    assert noop.code == 0 and writes(noop) == []


def test_an_unlisted_database_is_deleted_only_with_allow_delete(couch, http, unique, tmp_path):
    keep, gone = unique("keep"), unique("gone")
    write(tmp_path, "dbs.yaml", database(keep) + "---" + database(gone))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    write(tmp_path, "dbs.yaml", database(keep))

    assert reconcile(couch, "plan", str(tmp_path)).stdout == "No changes. The server matches the manifests.\n"
    if couch.real:
        pytest.skip("--allow-delete prunes every database this tool created on the server: couchsim only")
    pruning = reconcile(couch, "plan", str(tmp_path), "--allow-delete")
    assert f"  - database/{gone}\n      # no manifest lists it; couch-reconciler created it" in pruning.stdout
    assert reconcile(couch, "apply", str(tmp_path), "--allow-delete", "--auto-approve").code == 0
    assert info(couch, http, gone) is None and info(couch, http, keep) is not None


def test_hand_made_databases_are_never_deleted(couch, http, unique, tmp_path):
    if couch.real:
        pytest.skip("--allow-delete prunes every database this tool created on the server: couchsim only")
    hand_made, userdb = unique("hand"), "userdb-" + "carl".encode().hex()
    for name in (hand_made, userdb):
        assert http.put(f"{couch.url}/{name}").status_code == 201
    write(tmp_path, "dbs.yaml", database(unique("other")))
    plan = reconcile(couch, "plan", str(tmp_path), "--allow-delete")
    assert plan.code == 0 and "Plan: 1 to add, 0 to change, 0 to destroy." in plan.stdout
    assert hand_made not in plan.stdout and userdb not in plan.stdout


def test_a_database_created_after_apply_gave_up_on_it_is_pruned_by_its_creation_record(couch, http, unique, tmp_path):
    """CouchDB creates a database from a body-less PUT, so nothing in a database says who made it; a PUT that got
    no answer in time may still create it afterwards, unmarked. The record apply wrote before the PUT
    (couch_reconciler/creations.py) makes it this tool's: `--allow-delete` prunes it once no manifest lists it,
    while a hand-made database beside it, with no record, stays."""
    if couch.real:
        pytest.skip("delays an answer with couchsim's fault injector; --allow-delete prunes every database this "
                    "tool created on the server")
    late, hand_made = unique("late"), unique("hand")
    assert http.put(f"{couch.url}/{hand_made}").status_code == 201
    write(tmp_path, "dbs.yaml", database(late))
    couch.sim.faults.inject(path=f"^/{late}(\\?|$)", method="PUT", latency=1.0, count=1)
    gave_up = reconcile(couch, "apply", str(tmp_path), "--auto-approve", "--timeout", "0.3")
    couch.sim.faults.wait_settled(30)
    assert gave_up.code == 1 and "the write may or may not have happened" in gave_up.stderr
    assert "couch_reconciler" not in http.get(f"{couch.url}/{late}/_security").json()  # created late, unmarked
    (tmp_path / "dbs.yaml").unlink()
    write(tmp_path, "other.yaml", database(unique("other")))

    assert late not in reconcile(couch, "plan", str(tmp_path)).stdout
    pruning = reconcile(couch, "plan", str(tmp_path), "--allow-delete")
    assert f"  - database/{late}\n      # no manifest lists it; couch-reconciler created it" in pruning.stdout
    assert hand_made not in pruning.stdout
    assert reconcile(couch, "apply", str(tmp_path), "--allow-delete", "--auto-approve").code == 0
    assert info(couch, http, late) is None and info(couch, http, hand_made) is not None
    records = http.get(f"{couch.url}/_users/_local_docs", params={"include_docs": "true"}).json()["rows"]
    assert [row["id"] for row in records if late in row["doc"].get("databases", [])] == []


def test_deleting_a_database_that_holds_documents_needs_allow_delete_data(couch, http, unique, tmp_path):
    if couch.real:
        pytest.skip("--allow-delete prunes every database this tool created on the server: couchsim only")
    full = unique("full")
    write(tmp_path, "dbs.yaml", database(full))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    assert http.post(f"{couch.url}/{full}", json={"a": 1}).status_code == 201
    (tmp_path / "dbs.yaml").unlink()
    write(tmp_path, "other.yaml", database(unique("other")))

    refused = reconcile(couch, "apply", str(tmp_path), "--allow-delete", "--auto-approve")
    assert refused.code == 1 and f"- database/{full}" in refused.stdout  # the refused plan, shown whole
    assert refused.stderr == (f"database/{full}: deleting it destroys 1 document; rerun with --allow-delete-data "
                              "if that is intended, or add it back to the manifests\n")
    assert info(couch, http, full)["doc_count"] == 1
    done = reconcile(couch, "apply", str(tmp_path), "--allow-delete", "--allow-delete-data", "--auto-approve")
    assert done.code == 0 and f"- database/{full}: deleted" in done.stdout
    assert info(couch, http, full) is None


def test_partitioned_cannot_change_in_place(couch, http, unique, tmp_path):
    name = unique("part")
    write(tmp_path, "dbs.yaml", database(name, "\n      security: {members: {names: [carl]}}"))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    assert http.post(f"{couch.url}/{name}", json={"a": 1}).status_code == 201
    manifest = write(tmp_path, "dbs.yaml", database(name, "\n      partitioned: true\n"
                                                          "      security: {members: {names: [carl]}}"))

    refused = reconcile(couch, "plan", str(tmp_path))
    assert refused.code == 1
    assert refused.stderr == (f"{manifest}:3: database/{name}: must be deleted and created again (`partitioned` is "
                              "fixed when a database is created); rerun with --allow-delete --allow-delete-data "
                              "to replace it, or revert the manifest\n")
    plan = reconcile(couch, "plan", str(tmp_path), "--allow-delete", "--allow-delete-data")
    assert f"-/+ database/{name}  ({manifest}:3)\n      partitioned: false -> true   # forces replacement\n" \
           "      destroys: 1 document\n" in plan.stdout
    # The security object lives in the database: replacing the database writes it again.
    assert f"  + security/{name}" in plan.stdout
    assert "Plan: 2 to add, 0 to change, 1 to destroy." in plan.stdout

    applied = reconcile(couch, "apply", str(tmp_path), "--allow-delete", "--allow-delete-data", "--auto-approve")
    assert applied.code == 0, applied.stderr
    assert info(couch, http, name)["props"] == {"partitioned": True} and info(couch, http, name)["doc_count"] == 0
    assert http.get(f"{couch.url}/{name}/_security").json()["members"]["names"] == ["carl"]
    assert reconcile(couch, "plan", str(tmp_path), "--detailed-exitcode").code == 0


def test_pruning_lists_databases_on_servers_older_than_3_2(couch, http, unique, tmp_path):
    """CouchDB 3.0/3.1 have only `POST /_dbs_info` (GET arrived in 3.2): the listing falls back to
    `_all_dbs` pages and 100-key POSTs."""
    if couch.real:
        pytest.skip("simulates a CouchDB 3.1 with couchsim's fault injector; prunes every managed database")
    keep, gone = unique("keep"), unique("gone")
    write(tmp_path, "dbs.yaml", database(keep) + "---" + database(gone))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    write(tmp_path, "dbs.yaml", database(keep))
    couch.sim.faults.inject(path="^/_dbs_info", method="GET", status=405)
    run = reconcile(couch, "plan", str(tmp_path), "--allow-delete")
    assert run.code == 0, run.stderr
    assert f"  - database/{gone}" in run.stdout and "Plan: 0 to add, 0 to change, 1 to destroy." in run.stdout
    assert f"{couch.url}/_all_dbs" in [sent[1] for sent in run.sent]


def test_a_database_created_by_someone_else_meanwhile_is_one_line(couch, unique, tmp_path):
    """CouchDB answers 412 file_exists to a PUT of an existing database: another writer won the race."""
    if couch.real:
        pytest.skip("makes the race happen with couchsim's fault injector")
    name = unique("race")
    write(tmp_path, "dbs.yaml", database(name))
    couch.sim.faults.inject(path=f"^/{name}$", method="PUT", status=412, count=1)
    run = reconcile(couch, "apply", str(tmp_path), "--auto-approve")
    assert (run.code, run.stderr) == (1, f"database/{name}: someone created it since the plan was made; "
                                         "run plan again\n")
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0


def test_a_plan_reads_each_database_once_and_asks_nothing_about_missing_ones(couch, unique, tmp_path):
    """A `_dbs_info` row costs a CouchDB server about what a `GET db/_security` does (both open the database
    and ask each of its shards), and opening a database that is not open costs most: the server keeps only
    `[couchdb] max_dbs_open` (500) open. So a plan over many databases learns which exist from `_all_dbs`
    (which opens none), asks nothing about one that does not exist yet, and asks for a row only where the
    manifest writes what the row says (here `partitioned`), each after that database's `_security` read."""
    existing = [unique("many") for _ in range(120)]  # above the 100 names one `_dbs_info` request takes
    fixed = set(existing[::12])
    new = [unique("new") for _ in range(3)]

    def spec(name: str) -> str:
        return "\n      security: {members: {names: [ann]}}" + ("\n      partitioned: false" if name in fixed else "")

    write(tmp_path, "dbs.yaml", "---".join(database(name, spec(name)) for name in existing))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    write(tmp_path, "dbs.yaml", "---".join(database(name, spec(name)) for name in existing + new))

    run = reconcile(couch, "plan", str(tmp_path))

    assert run.code == 0 and "Plan: 6 to add, 0 to change, 0 to destroy." in run.stdout, run.stderr
    opened_at = {url.removeprefix(f"{couch.url}/").removesuffix("/_security"): index
                 for index, (method, url, _) in enumerate(run.sent) if method == "GET" and url.endswith("/_security")}
    assert sorted(opened_at) == sorted(existing)
    assert len(opened_at) == sum(url.endswith("/_security") for _, url, _ in run.sent)  # once each
    asked = [(index, name) for index, ((_, url, _), body) in enumerate(zip(run.sent, run.bodies))
             if url == f"{couch.url}/_dbs_info" for name in body["keys"]]
    assert sorted(name for _, name in asked) == sorted(fixed)
    assert all(opened_at[name] < index for index, name in asked)


def test_a_partitioned_database_is_compared_only_where_the_manifest_writes_partitioned(couch, http, unique, tmp_path):
    """`partitioned` is fixed at creation, like q and n: left out of a manifest, it is not compared (and the
    database's row not read); written, a database that differs must be replaced."""
    name = unique("parts")
    assert http.put(f"{couch.url}/{name}", params={"partitioned": "true"}).status_code == 201
    write(tmp_path, "dbs.yaml", database(name))
    assert reconcile(couch, "plan", str(tmp_path), "--detailed-exitcode").code == 0

    write(tmp_path, "dbs.yaml", database(name, "{partitioned: false}"))
    run = reconcile(couch, "plan", str(tmp_path), "--allow-delete", "--allow-delete-data")
    assert run.code == 0, run.stderr
    assert f"-/+ database/{name}" in run.stdout and "partitioned: true -> false   # forces replacement" in run.stdout
