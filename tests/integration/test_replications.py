"""Replications as `_replicator` documents, through plan/apply.

Relied on: docs/couchdb.md ("Replication": full URLs only, local names 403
`local_endpoints_not_supported`; credentials in `auth.basic`; an admin reads the stored password in
clear and an `owner` added by CouchDB; `/_scheduler/docs` states), CouchDB's replicator docs
(src/docs/src/replication/replicator.rst: updating a document restarts its job; a document that cannot
run is marked `failed` with `_replication_state_reason`), and
apache/couchdb src/couch_replicator/src/couch_replicator_doc_processor.erl (a second document asking
for a replication that already runs is `failed`: "already started ... triggered by document").
"""

from __future__ import annotations

import pytest

from reconcile_runner import assert_no_secret, reconcile, write
from replication_setup import members_and_databases, replication, replication_manifests, scheduler_doc
from waiting import wait_for

PASSWORD = "repl-s3cret-pw"
ENV = {"REPLICATOR_PASSWORD": PASSWORD, "REPLICATION_PASSWORD": PASSWORD}


def document(couch, http, database: str, doc_id: str) -> dict | None:
    answer = http.get(f"{couch.url}/{database}/{doc_id}")
    return answer.json() if answer.status_code == 200 else None


def test_a_continuous_replication_defined_in_yaml_moves_a_document(couch, http, unique, tmp_path, replication_ids):
    source, target, user, name = unique("src"), unique("dst"), unique("repl"), unique("rep")
    replication_ids.append(name)
    write(tmp_path / "m", "repl.yaml", replication_manifests(couch, source, target, user, name))
    planned = reconcile(couch, "plan", str(tmp_path / "m"), "--out", str(tmp_path / "plan.json"), env=ENV)
    assert planned.code == 0, planned.stderr
    assert f"  + replication/{name}" in planned.stdout
    assert "source.auth.basic.password: (sensitive, will change)" in planned.stdout

    applied = reconcile(couch, "apply", str(tmp_path / "plan.json"), env=ENV)
    assert applied.code == 0, applied.stderr
    stored = http.get(f"{couch.url}/_replicator/{name}").json()
    assert stored["source"]["url"].endswith(f"/{source}") and "@" not in stored["source"]["url"]
    assert stored["source"]["auth"]["basic"] == {"username": user, "password": PASSWORD}

    assert http.put(f"{couch.url}/{source}/order-1", json={"type": "order"}).status_code == 201
    moved = wait_for(lambda: document(couch, http, target, "order-1"), "the document to reach the target")
    assert moved["type"] == "order"

    again = reconcile(couch, "plan", str(tmp_path / "m"), "--detailed-exitcode", env=ENV)
    assert (again.code, again.stdout) == (0, "No changes. The server matches the manifests.\n")
    assert_no_secret([PASSWORD], planned.stdout, planned.stderr, applied.stdout, applied.stderr, again.stdout,
                     (tmp_path / "plan.json").read_text())


def test_a_changed_replication_is_updated_in_place(couch, http, unique, tmp_path, replication_ids):
    source, target, user, name = unique("src"), unique("dst"), unique("repl"), unique("rep")
    replication_ids.append(name)
    write(tmp_path, "repl.yaml", replication_manifests(couch, source, target, user, name))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve", env=ENV).code == 0
    write(tmp_path, "repl.yaml", replication_manifests(couch, source, target, user, name,
                                                      "  selector: {type: order}"))

    planned = reconcile(couch, "plan", str(tmp_path), env=ENV)
    assert f"  ~ replication/{name}" in planned.stdout and 'selector: null -> {"type": "order"}' in planned.stdout
    assert "password" not in planned.stdout  # the stored password still matches its secret
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve", env=ENV).code == 0
    stored = http.get(f"{couch.url}/_replicator/{name}").json()
    assert stored["selector"] == {"type": "order"} and stored["_rev"].startswith("2-")

    http.post(f"{couch.url}/{source}/_bulk_docs", json={"docs": [{"_id": "o", "type": "order"},
                                                                  {"_id": "n", "type": "note"}]})
    wait_for(lambda: document(couch, http, target, "o"), "the selected document to reach the target")
    assert document(couch, http, target, "n") is None


def test_a_failed_replication_is_shown_and_written_again_once_the_manifest_is_fixed(
        couch, http, unique, tmp_path, replication_ids):
    if len(http.get(f"{couch.url}/_membership").json()["cluster_nodes"]) > 1:
        pytest.skip("a cluster: each `_replicator` document is run by the node that owns it (couch_replicator_utils.erl owner/2) and a replication already running is found only in that node's scheduler, so two documents "
                    "of one replication owned by different nodes both run")
    source, target, other, user = unique("src"), unique("dst"), unique("other"), unique("repl")
    first, second = unique("first"), unique("second")
    replication_ids.extend([first, second])
    write(tmp_path, "first.yaml", members_and_databases(user, source, target)
          + "---" + replication(couch, first, source, target, user))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve", env=ENV).code == 0
    wait_for(lambda: scheduler_doc(couch, http, first).get("state") == "running", "the first replication to run")

    # The same replication again under another id: CouchDB refuses to run it twice and marks it failed.
    setup = members_and_databases(user, source, target, other)
    write(tmp_path, "first.yaml", setup + "---" + replication(couch, first, source, target, user)
          + "---" + replication(couch, second, source, target, user))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve", env=ENV).code == 0
    failed = wait_for(lambda: (doc := http.get(f"{couch.url}/_replicator/{second}").json())
                      .get("_replication_state") == "failed" and doc, "CouchDB to mark the duplicate failed")
    assert "already started" in failed["_replication_state_reason"]

    unchanged = reconcile(couch, "plan", str(tmp_path), env=ENV)
    assert f"replication/{second}: CouchDB marked it failed (" in unchanged.stdout
    assert "No changes." in unchanged.stdout

    write(tmp_path, "first.yaml", setup + "---" + replication(couch, first, source, target, user)
          + "---" + replication(couch, second, source, other, user))
    fixed = reconcile(couch, "plan", str(tmp_path), env=ENV)
    assert f"  ~ replication/{second}" in fixed.stdout
    assert "# CouchDB marked it failed (" in fixed.stdout and "writing it makes CouchDB start it again" in fixed.stdout
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve", env=ENV).code == 0
    wait_for(lambda: scheduler_doc(couch, http, second).get("state") == "running", "the fixed replication to run",
             timeout=60)  # its node's doc processor, then the scheduler, on a possibly loaded cluster
    assert "_replication_state" not in http.get(f"{couch.url}/_replicator/{second}").json()


def test_only_replications_the_tool_wrote_are_deleted_and_only_with_allow_delete(
        couch, http, unique, tmp_path, replication_ids):
    source, target, user, name, by_hand = unique("src"), unique("dst"), unique("repl"), unique("rep"), unique("hand")
    replication_ids.extend([name, by_hand])
    write(tmp_path, "repl.yaml", replication_manifests(couch, source, target, user, name))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve", env=ENV).code == 0
    made_by_hand = {"source": f"{couch.url}/{source}", "target": f"{couch.url}/{target}", "doc_ids": ["x"]}
    assert http.put(f"{couch.url}/_replicator/{by_hand}", json=made_by_hand).status_code == 201
    write(tmp_path, "repl.yaml", members_and_databases(user, source, target))

    assert reconcile(couch, "plan", str(tmp_path), env=ENV).stdout == "No changes. The server matches the manifests.\n"
    if couch.real:
        pytest.skip("--allow-delete prunes every object this tool created on the server: couchsim only")
    pruning = reconcile(couch, "plan", str(tmp_path), "--allow-delete", env=ENV)
    assert f"  - replication/{name}\n      # no manifest lists it; couch-reconciler created it" in pruning.stdout
    assert by_hand not in pruning.stdout
    assert reconcile(couch, "apply", str(tmp_path), "--allow-delete", "--auto-approve", env=ENV).code == 0
    assert http.get(f"{couch.url}/_replicator/{name}").status_code == 404
    assert http.get(f"{couch.url}/_replicator/{by_hand}").status_code == 200


def test_batch_size_is_refused_for_the_name_couchdb_reads(couch, unique, tmp_path):
    """couch_replicator_parse:convert_options/1 reads `worker_batch_size` and silently skips unknown
    fields, so `batch_size` would be accepted by CouchDB and do nothing."""
    source, target, user, name = unique("src"), unique("dst"), unique("repl"), unique("rep")
    write(tmp_path, "repl.yaml", replication_manifests(couch, source, target, user, name, "  batch_size: 100"))
    checked = reconcile(couch, "validate", str(tmp_path))
    assert checked.code == 1 and checked.sent == []
    assert f"repl.yaml:25: Replication/{name}: unknown field `batch_size`" in checked.stderr
    assert "did you mean `worker_batch_size`?" in checked.stderr
