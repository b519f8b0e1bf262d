"""Security objects through plan/apply: exact and merge modes, other writers, stale saved plans.

Relied on: docs/couchdb.md (a new database's `_security` is
`{"members":{"roles":["_admin"]},"admins":{"roles":["_admin"]}}`; couch_peruser's
userdb security names the user in members and admins; a `_security` write bumps
`update_seq`), apache/couchdb couch_db.erl (`set_security` stores the whole object,
so keys beside members/admins are kept), and superlogin's practice (it adds session keys
as names at run time; `_security` has no `_rev`).
"""

from __future__ import annotations

import json

import pytest
import requests

from reconcile_runner import reconcile, write


def secured(name: str, security: str) -> str:
    return f"""
    apiVersion: reconciler/v1
    kind: Database
    metadata: {{name: {name}}}
    spec:
      security: {security}
    ---
    apiVersion: reconciler/v1
    kind: Role
    metadata: {{name: app-user}}
    spec: {{}}
    """


def security(couch, http, name: str) -> dict:
    return http.get(f"{couch.url}/{name}/_security").json()


def test_exact_mode_update_shows_the_fields_and_converges(couch, http, unique, tmp_path):
    name = unique("sec")
    manifest = write(tmp_path, "dbs.yaml", secured(name, "{members: {roles: [app-user]}}"))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    assert security(couch, http, name)["members"] == {"names": [], "roles": ["_admin", "app-user"]}

    write(tmp_path, "dbs.yaml", secured(name, "{members: {roles: [app-user]}, admins: {names: [dana]}}"))
    plan = reconcile(couch, "plan", str(tmp_path))
    assert plan.stdout.splitlines()[4:8] == [f"  ~ security/{name}  ({manifest}:5)",
                                             '      admins.names: [] -> ["dana"]', "",
                                             "Plan: 0 to add, 1 to change, 0 to destroy."]
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    assert security(couch, http, name)["admins"] == {"names": ["dana"], "roles": ["_admin"]}
    assert security(couch, http, name)["couch_reconciler"]  # the ownership marker survived the rewrite
    assert reconcile(couch, "plan", str(tmp_path), "--detailed-exitcode").code == 0


def test_merge_mode_leaves_names_other_writers_added(couch, http, unique, tmp_path):
    name = unique("merge")
    write(tmp_path, "dbs.yaml", secured(name, "{mode: merge, members: {roles: [app-user]}}"))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    # A login service adds a session key as a member, as superlogin does.
    current = security(couch, http, name)
    current["members"]["names"] = ["session-key-1"]
    assert http.put(f"{couch.url}/{name}/_security", json=current).status_code == 200

    assert reconcile(couch, "plan", str(tmp_path), "--detailed-exitcode").code == 0
    write(tmp_path, "dbs.yaml", secured(name, "{mode: exact, members: {roles: [app-user]}}"))
    exact = reconcile(couch, "plan", str(tmp_path))
    assert '      members.names: ["session-key-1"] -> []' in exact.stdout


def test_a_saved_plan_is_refused_when_the_security_object_changed_since(couch, http, unique, tmp_path):
    name = unique("stale")
    write(tmp_path, "dbs.yaml", secured(name, "{members: {roles: [app-user]}}"))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    write(tmp_path, "dbs.yaml", secured(name, "{members: {roles: [app-user], names: [erin]}}"))
    planfile = tmp_path / "plan.json"
    assert reconcile(couch, "plan", str(tmp_path), "--out", str(planfile)).code == 0
    assert json.loads(planfile.read_text())["changes"][0]["version"].startswith("sha256:")

    current = security(couch, http, name)
    current["admins"]["names"] = ["someone-else"]
    assert http.put(f"{couch.url}/{name}/_security", json=current).status_code == 200
    refused = reconcile(couch, "apply", str(planfile))
    assert refused.code == 1
    assert refused.stderr == (f"the server changed since the plan was made (security/{name}); nothing was applied: "
                              "run plan again\n")
    assert [sent[0] for sent in refused.sent if sent[0] == "PUT"] == []
    assert security(couch, http, name)["members"]["names"] == []


def test_a_database_public_on_purpose_is_declared_explicitly_and_shown_as_public(couch, http, unique, tmp_path):
    """A read-only catalog PouchDB clients sync from is public on purpose. docs/couchdb.md: a `_security`
    whose members name no one and no role lets anonymous requests in (a new database is admin-only: 401)."""
    name = unique("catalog")
    write(tmp_path, "dbs.yaml", secured(name, "{members: {roles: [app-user]}}"))
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    assert requests.get(f"{couch.url}/{name}/_all_docs").status_code == 401
    manifest = write(tmp_path, "dbs.yaml", secured(name, "{public: true, admins: {roles: [app-user]}}"))

    plan = reconcile(couch, "plan", str(tmp_path))
    applied = reconcile(couch, "apply", str(tmp_path), "--auto-approve")

    assert plan.stdout.splitlines()[4:7] == [
        f"  ~ security/{name}  ({manifest}:5)",
        '      members: {"names": [], "roles": ["_admin", "app-user"]} -> "public"',
        '      admins.roles: ["_admin"] -> ["_admin", "app-user"]']
    assert "# members: public: anyone, even without logging in, may read and write its documents" in plan.stdout
    assert applied.code == 0, applied.stderr
    assert requests.get(f"{couch.url}/{name}/_all_docs").status_code == 200
    assert security(couch, http, name)["members"] == {"names": [], "roles": []}
    assert reconcile(couch, "plan", str(tmp_path), "--detailed-exitcode").code == 0
    write(tmp_path, "dbs.yaml", secured(name, "{admins: {roles: [app-user]}}"))  # `public` removed: private again
    private = reconcile(couch, "plan", str(tmp_path))
    assert '      members: "public" -> {"names": [], "roles": ["_admin"]}' in private.stdout


def test_public_with_members_or_merge_is_refused_before_anything_is_sent(couch, unique, tmp_path):
    name = unique("catalog")
    manifest = write(tmp_path, "dbs.yaml", secured(name, "{public: true, mode: merge, members: {roles: [app-user]}}"))

    refused = reconcile(couch, "plan", str(tmp_path))

    assert refused.code == 1
    assert f"{manifest}:5: Database/{name}: `public: true` with `members`: a public database has no members" \
        in refused.stdout + refused.stderr
    assert f"{manifest}:5: Database/{name}: `public: true` with `mode: merge`" in refused.stdout + refused.stderr
    assert refused.sent == []


@pytest.mark.parametrize("mode", ["exact", "merge"])
def test_a_new_database_gets_its_security_and_marker_in_one_write(couch, http, unique, tmp_path, mode):
    """CouchDB sets `_security` only on an existing database, so creating one with its security takes two
    requests (PUT db, PUT db/_security); the object written then is the wanted one with the ownership
    marker, with no re-read and no second write, and the plan still lists the security object."""
    name = unique("fresh")
    write(tmp_path, "dbs.yaml", secured(name, f"{{mode: {mode}, members: {{roles: [app-user]}}, "
                                              "admins: {names: [dana]}}"))

    applied = reconcile(couch, "apply", str(tmp_path), "--auto-approve")

    assert applied.code == 0, applied.stderr
    assert f"+ security/{name}: created" in applied.stdout
    touched = [(method, url.removeprefix(couch.url)) for method, url, _ in applied.sent
               if url.startswith(f"{couch.url}/{name}")]
    assert touched == [("PUT", f"/{name}"), ("PUT", f"/{name}/_security")]
    assert security(couch, http, name) == {"members": {"names": [], "roles": ["_admin", "app-user"]},
                                           "admins": {"names": ["dana"], "roles": ["_admin"]},
                                           "couch_reconciler": {"created_by": "couch-reconciler"}}
    assert reconcile(couch, "plan", str(tmp_path), "--detailed-exitcode").code == 0
