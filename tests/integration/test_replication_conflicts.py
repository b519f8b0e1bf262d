"""Replication documents in conflict: a write of the tool leaves one revision, a deletion none.

On a cluster CouchDB's replicator writes a document's `_replication_state` into the shard copy of the node
running its job (src/couch_replicator/src/couch_replicator_docs.erl `save_rep_doc`) while the tool writes
another copy from the same parent revision: internal replication keeps both branches (docs/couchdb.md,
Replication). Deleting only the winning one makes a losing branch the winner, and the replication comes back.
The tool reads `_replicator` with `conflicts=true` and deletes the losing revisions in the `_bulk_docs` of its
own write, as CouchDB's docs resolve a conflict (src/docs/src/replication/conflicts.rst). The conflicts here are
made with `_bulk_docs` new_edits=false (`replication_setup.conflict`), which any server takes.
"""

from __future__ import annotations

from reconcile_runner import reconcile, write
from replication_setup import conflict, live_leaves, replication_manifests
from test_user_databases import sign_up
from couch_reconciler.kinds.user_databases import user_database

PASSWORD = "repl-s3cret-pw"
ENV = {"REPLICATOR_PASSWORD": PASSWORD, "REPLICATION_PASSWORD": PASSWORD}


def template(couch, name: str, user: str) -> str:
    """A UserDatabases template of its own name (so it prunes only its own replications), for `user` alone."""
    return f"""
apiVersion: reconciler/v1
kind: UserDatabases
metadata: {{name: {name}}}
spec:
  select: {{namePattern: {user}}}
  replicateTo:
    - target: analytics
      replicationBaseUrl: {couch.url}
      auth: {{username: {couch.user}, password: env:ADMIN_PASSWORD}}
---
apiVersion: reconciler/v1
kind: Database
metadata: {{name: analytics}}
spec: {{}}
"""


def test_a_pruned_replication_in_conflict_goes_with_every_branch(couch, http, unique, tmp_path):
    """A gone user's replication is pruned by its template: its losing branch goes in the same write, so the
    document stays deleted and the next plan has nothing more to delete."""
    name, owner = unique("split"), unique("tpl")
    sign_up(couch, http, name)
    write(tmp_path, "userdbs.yaml", template(couch, owner, name))
    env = {"ADMIN_PASSWORD": couch.password}
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env).code == 0
    doc_id = f"{owner}.{user_database('userdb-', name)}.to.analytics"
    conflict(couch, http, doc_id)
    assert len(live_leaves(couch, http, doc_id)) == 2
    user_doc = f"{couch.url}/_users/org.couchdb.user:{name}"
    http.delete(user_doc, params={"rev": http.get(user_doc).json()["_rev"]})

    planned = reconcile(couch, "plan", str(tmp_path), env=env)
    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env)
    again = reconcile(couch, "plan", str(tmp_path), env=env)

    assert applied.code == 0, applied.stderr
    assert f"- replication/{doc_id}: deleted" in applied.stdout
    assert live_leaves(couch, http, doc_id) == []
    assert http.get(f"{couch.url}/_replicator/{doc_id}").status_code == 404
    assert again.code == 0 and f"replication/{doc_id}" not in again.stdout
    assert f"  - replication/{doc_id}\n" in planned.stdout
    assert "its 1 conflicting revision(s) (written on another copy at the same time) go too" in planned.stdout


def test_an_update_of_a_replication_in_conflict_leaves_one_revision(couch, http, unique, tmp_path, replication_ids):
    """A changed option, through a saved plan (which carries the losing revisions): the document is the
    manifest's under one live revision, whichever branch was winning."""
    source, target, user, name = unique("src"), unique("dst"), unique("repl"), unique("rep")
    replication_ids.append(name)
    write(tmp_path / "m", "repl.yaml", replication_manifests(couch, source, target, user, name))
    assert reconcile(couch, "apply", str(tmp_path / "m"), "--auto-approve", env=ENV).code == 0
    conflict(couch, http, name, wins=True)
    write(tmp_path / "m", "repl.yaml", replication_manifests(couch, source, target, user, name,
                                                             "  selector: {type: order}"))

    planned = reconcile(couch, "plan", str(tmp_path / "m"), "--out", str(tmp_path / "plan.json"), env=ENV)
    applied = reconcile(couch, "apply", str(tmp_path / "plan.json"), env=ENV)

    assert applied.code == 0, applied.stderr
    assert [leaf.get("selector") for leaf in live_leaves(couch, http, name)] == [{"type": "order"}]
    stored = http.get(f"{couch.url}/_replicator/{name}", params={"conflicts": "true"}).json()
    assert "_conflicts" not in stored
    again = reconcile(couch, "plan", str(tmp_path / "m"), "--detailed-exitcode", env=ENV)
    assert (again.code, again.stdout) == (0, "No changes. The server matches the manifests.\n")
    assert f"  ~ replication/{name}" in planned.stdout
    assert "1 conflicting revision(s) of it on the server" in planned.stdout
