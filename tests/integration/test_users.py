"""Users and roles: plan and apply against a server, as a pipeline runs them.

Relied on: docs/couchdb.md ("Stored user": pbkdf2 fields and no `password`;
verifying derives with the salt's hex string; `_users/_design/_auth` appears asynchronously),
apache/couchdb src/couch/src/couch_users_db.erl (a write carrying `password` is hashed by the
server, which drops the plaintext), and `[chttpd_auth_lockout]` (never test a password with `_session`:
CouchDB 3.4 locks users out after 5 failures).
"""

from __future__ import annotations

import threading

import pytest

from reconcile_runner import assert_no_secret, reconcile, stored_password_is, write
from waiting import copies, listed_by_every_read, written_to_every_copy


def manifests(alice: str, bob: str) -> str:
    """alice is declared with a password; bob only gets the `writers` role from a Role."""
    return f"""
        apiVersion: reconciler/v1
        kind: User
        metadata: {{name: {alice}}}
        spec:
          password: env:ALICE_PASSWORD
          roles: [readers]
          fields: {{email: alice@example.com}}
        ---
        apiVersion: reconciler/v1
        kind: Role
        metadata: {{name: readers}}
        spec: {{}}
        ---
        apiVersion: reconciler/v1
        kind: Role
        metadata: {{name: writers}}
        spec:
          members: [{alice}, {bob}]
        """


@pytest.fixture
def names(unique):
    return unique("alice"), unique("bob")


def user(couch, http, name: str) -> dict | None:
    answer = http.get(f"{couch.url}/_users/org.couchdb.user:{name}")
    return answer.json() if answer.status_code == 200 else None


def sign_up(couch, http, name: str, roles: list[str], **extra) -> None:
    """A user made outside the tool (an app back end, a person with Fauxton)."""
    doc = {"name": name, "type": "user", "roles": roles, "password": f"{name}-pw", **extra}
    assert http.put(f"{couch.url}/_users/org.couchdb.user:{name}", json=doc).status_code == 201


def test_apply_creates_users_with_their_roles_and_role_memberships(couch, http, names, tmp_path):
    alice, bob = names
    sign_up(couch, http, bob, ["legacy"], phone="123")
    write(tmp_path, "users.yaml", manifests(alice, bob))
    env = {"ALICE_PASSWORD": "alice-secret-1"}

    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env)

    assert applied.code == 0, applied.stderr
    created = user(couch, http, alice)
    assert sorted(created["roles"]) == ["readers", "writers"]
    assert created["email"] == "alice@example.com"
    assert stored_password_is(created, "alice-secret-1")
    existing = user(couch, http, bob)  # exists only on the server: gains the Role's role, keeps the rest
    assert sorted(existing["roles"]) == ["legacy", "writers"]
    assert existing["phone"] == "123" and stored_password_is(existing, f"{bob}-pw")
    again = reconcile(couch, "plan", "--detailed-exitcode", str(tmp_path), env=env)
    assert again.code == 0, again.stdout
    assert "No changes" in again.stdout
    assert_no_secret(["alice-secret-1"], applied.stdout, applied.stderr, again.stdout, again.stderr)


def test_role_member_that_exists_nowhere_is_a_warning_and_is_not_created(couch, http, unique, tmp_path):
    ghost = unique("ghost")
    write(tmp_path, "roles.yaml", f"""
        apiVersion: reconciler/v1
        kind: Role
        metadata: {{name: writers}}
        spec:
          members: [{ghost}]
        """)

    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path))

    assert applied.code == 0, applied.stderr
    output = applied.stdout + applied.stderr
    assert f"user/{ghost} is given a role but exists neither in the manifests nor on the server" in output
    assert user(couch, http, ghost) is None


def test_rotated_secret_is_detected_offline_and_applied(couch, http, names, tmp_path):
    alice, bob = names
    write(tmp_path, "users.yaml", manifests(alice, bob))
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env={"ALICE_PASSWORD": "old-pw-1"}).code == 0
    listed_by_every_read(http, couch.url, "_users", f"org.couchdb.user:{alice}")
    rev_before = user(couch, http, alice)["_rev"]
    plan_file = tmp_path.parent / "rotation.plan.json"

    planned = reconcile(couch, "plan", "--out", str(plan_file), str(tmp_path), env={"ALICE_PASSWORD": "new-pw-2"})

    assert planned.code == 0, planned.stderr
    assert "password: (sensitive, will change)" in planned.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in planned.stdout
    assert not any("_session" in path for path in planned.paths())
    applied = reconcile(couch, "apply", "--auto-approve", str(plan_file), env={"ALICE_PASSWORD": "new-pw-2"})
    assert applied.code == 0, applied.stderr
    rotated = user(couch, http, alice)
    assert rotated["_rev"] != rev_before
    assert stored_password_is(rotated, "new-pw-2")
    assert rotated["email"] == "alice@example.com" and sorted(rotated["roles"]) == ["readers", "writers"]
    assert not any("_session" in path for path in applied.paths())
    assert_no_secret(["old-pw-1", "new-pw-2"], planned.stdout, planned.stderr, applied.stdout, applied.stderr,
                     plan_file.read_text())


def test_unchanged_secret_sends_no_write(couch, names, tmp_path):
    write(tmp_path, "users.yaml", manifests(*names))
    env = {"ALICE_PASSWORD": "same-pw"}
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env).code == 0

    second = reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env)

    assert second.code == 0
    assert [method for method, _, _ in second.sent if method != "GET"] == []


def listed_users(couch, http) -> int:
    return http.get(f"{couch.url}/_users/_all_docs", params={"limit": "0"}).json()["total_rows"]


def test_user_reads_are_paged_bulk_reads_not_one_per_user(couch, http, names, unique, tmp_path):
    docs = [{"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": []}
            for name in (unique("bulk") for _ in range(1500))]
    written_to_every_copy(http, couch.url, "_users", docs)
    users = listed_users(couch, http)
    write(tmp_path, "users.yaml", manifests(*names))

    planned = reconcile(couch, "plan", str(tmp_path), env={"ALICE_PASSWORD": "pw"})

    assert planned.code == 0, planned.stderr
    user_reads = [path for path in planned.paths() if "/_users/" in path]
    assert set(user_reads) == {f"{couch.url}/_users/_all_docs"}
    assert 2 <= len(user_reads) <= users // 1000 + 1  # pages of 1,000


def test_roles_and_fields_drift_is_updated_keeping_the_password_and_other_fields(couch, http, names, tmp_path):
    alice, bob = names
    write(tmp_path, "users.yaml", manifests(alice, bob))
    env = {"ALICE_PASSWORD": "keep-me"}
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env).code == 0
    edited = user(couch, http, alice)
    edited.update(roles=["readers"], email="changed@example.com", nickname="al")
    # Every copy holds the edit before the plan and the apply read `_users/_all_docs`, which takes each shard range
    # from one copy (fabric_view_all_docs.erl): with a quorum write a loaded cluster's third copy lagged, the
    # apply read it, found nothing to repair, and the edit stayed.
    assert http.put(f"{couch.url}/_users/org.couchdb.user:{alice}", json=edited,
                    params={"w": copies(http, couch.url, "_users")}).status_code == 201

    planned = reconcile(couch, "plan", str(tmp_path), env=env)

    assert f"~ user/{alice}" in planned.stdout
    assert 'email: "changed@example.com" -> "alice@example.com"' in planned.stdout
    assert 'roles: ["readers"] -> ["readers", "writers"]' in planned.stdout
    assert "password" not in planned.stdout
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env).code == 0
    fixed = user(couch, http, alice)
    assert fixed["email"] == "alice@example.com" and fixed["nickname"] == "al"
    assert stored_password_is(fixed, "keep-me")


def test_only_users_the_tool_created_are_deleted_and_only_with_allow_delete(couch, http, names, unique, tmp_path):
    if couch.real:
        pytest.skip("--allow-delete prunes every kind, so on a shared real server other tests' objects too")
    alice, bob = names
    carol = unique("carol")
    sign_up(couch, http, carol, [])
    write(tmp_path, "users.yaml", manifests(alice, bob))
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env={"ALICE_PASSWORD": "pw-a"}).code == 0
    (tmp_path / "users.yaml").unlink()
    write(tmp_path, "roles.yaml", """
        apiVersion: reconciler/v1
        kind: Role
        metadata: {name: readers}
        spec: {}
        """)

    without = reconcile(couch, "plan", str(tmp_path))
    with_opt_in = reconcile(couch, "plan", "--allow-delete", str(tmp_path))

    assert "user/" not in without.stdout
    assert f"- user/{alice}" in with_opt_in.stdout
    assert carol not in with_opt_in.stdout
    assert reconcile(couch, "apply", "--auto-approve", "--allow-delete", str(tmp_path)).code == 0
    assert user(couch, http, alice) is None
    assert user(couch, http, carol) is not None


def test_users_are_created_only_once_the_auth_design_doc_exists(couch, http, names, tmp_path):
    """docs/couchdb.md: `_users/_design/_auth` appears asynchronously after start-up and `_users`
    accepts invalid documents until then. Simulated by removing it and putting it back 0.6 s later."""
    if couch.real:
        pytest.skip("removes _users/_design/_auth, which a shared real server must keep")
    ddoc_url = f"{couch.url}/_users/_design/_auth"
    ddoc = http.get(ddoc_url).json()
    assert http.delete(ddoc_url, params={"rev": ddoc["_rev"]}).status_code == 200
    restore = threading.Timer(0.6, lambda: couch.session().put(ddoc_url, json={
        key: value for key, value in ddoc.items() if key != "_rev"}))
    write(tmp_path, "users.yaml", manifests(*names))

    restore.start()
    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path), env={"ALICE_PASSWORD": "pw-late"})
    restore.join()

    assert applied.code == 0, applied.stderr
    requests_sent = [(method, url) for method, url, _ in applied.sent]
    bulk = requests_sent.index(("POST", f"{couch.url}/_users/_bulk_docs"))
    waits = [index for index, sent in enumerate(requests_sent) if sent == ("GET", ddoc_url)]
    assert len(waits) >= 2 and max(waits) < bulk  # polled while it was missing, created after it came back
    assert stored_password_is(user(couch, http, names[0]), "pw-late")


def test_prune_true_on_a_user_deletes_the_users_this_tool_made_that_no_manifest_lists(couch, http, names, unique,
                                                                                      tmp_path):
    alice, bob = names  # bob never exists: his Role membership only warns
    keeper, carol = unique("keeper"), unique("carol")
    sign_up(couch, http, carol, [])
    write(tmp_path, "users.yaml", manifests(alice, bob))
    write(tmp_path, "keeper.yaml", f"""
        apiVersion: reconciler/v1
        kind: User
        metadata: {{name: {keeper}}}
        spec:
          prune: true
        """)
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env={"ALICE_PASSWORD": "pw-p"}).code == 0
    (tmp_path / "users.yaml").unlink()

    planned = reconcile(couch, "plan", str(tmp_path))
    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path))

    assert f"- user/{alice}" in planned.stdout
    assert carol not in planned.stdout  # made by hand: never deleted
    assert applied.code == 0, applied.stderr
    assert user(couch, http, alice) is None
    assert user(couch, http, carol) is not None and user(couch, http, keeper) is not None
