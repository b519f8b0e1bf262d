"""`--target` and `--exclude` by manifest: the everyday plan is full of pending sign-ups (what a UserDatabases
template makes for each new user); a reviewer narrows it to the changes the manifests' edits make, or to the
sign-ups only, and an apply so narrowed makes only those."""

from __future__ import annotations

import json

from reconcile_runner import reconcile, write
from waiting import written_to_every_copy

SIGNUPS = 200


def manifests(tmp_path, *databases: str) -> None:
    write(tmp_path, "app.yaml", "---".join([
        """
        apiVersion: reconciler/v1
        kind: Role
        metadata: {name: app-user}
        spec: {}
        """,
        """
        apiVersion: reconciler/v1
        kind: UserDatabases
        metadata: {name: per-user}
        spec: {prefix: t-sign-, grantRoles: [app-user]}
        """,
        *(f"""
        apiVersion: reconciler/v1
        kind: Database
        metadata: {{name: {name}}}
        spec: {{security: {{members: {{roles: [app-user]}}}}}}
        """ for name in databases)]))


def sign_ups(couch, http, unique) -> list[str]:
    """Users as an app's back end writes them: no role yet, so each waits for the template."""
    names = [unique("signup") for _ in range(SIGNUPS)]
    docs = [{"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": []} for name in names]
    written_to_every_copy(http, couch.url, "_users", docs)
    return names


def planned(run) -> list[tuple[str, str]]:
    return [(change["kind"], change["key"]) for change in json.loads(run.stdout)["changes"]]


def test_excluding_the_template_shows_and_applies_only_the_manifests_change(couch, http, unique, tmp_path):
    shared = unique("shared")
    manifests(tmp_path)
    names = sign_ups(couch, http, unique)
    manifests(tmp_path, shared)  # the pull request: one more database

    everything = reconcile(couch, "plan", "--format", "json", str(tmp_path))
    edited = reconcile(couch, "plan", "--format", "json", "--exclude", "UserDatabases/per-user", str(tmp_path))
    signed_up = reconcile(couch, "plan", "--format", "json", "--target", "UserDatabases/per-user", str(tmp_path))

    assert everything.code == 0, everything.stderr
    assert len(planned(everything)) >= 3 * SIGNUPS + 2  # each: role, database, security
    assert planned(edited) == [("database", shared), ("security", shared)]
    assert json.loads(edited.stdout)["warnings"][-1].startswith(
        f"--exclude: a partial plan: {len(planned(everything)) - 2} of {len(planned(everything))} changes are left out")
    assert set(planned(signed_up)) == set(planned(everything)) - {("database", shared), ("security", shared)}
    assert ("user", names[0]) in planned(signed_up)

    applied = reconcile(couch, "apply", "--auto-approve", "--exclude", "UserDatabases/per-user", str(tmp_path))

    assert applied.code == 0, applied.stderr
    assert applied.stdout.splitlines()[-1] == "Apply complete: 2 added, 0 changed, 0 destroyed."
    assert "app-user" in http.get(f"{couch.url}/{shared}/_security").json()["members"]["roles"]
    assert http.get(f"{couch.url}/_users/org.couchdb.user:{names[0]}").json()["roles"] == []  # still pending
    assert set(planned(reconcile(couch, "plan", "--format", "json", str(tmp_path)))) == set(planned(signed_up))


def test_a_manifest_excluded_keeps_the_changes_another_manifest_wants_too(couch, http, unique, tmp_path):
    """A user declared by her own manifest is also given the template's role: excluding the template leaves
    her change in, since her manifest wants it too."""
    manifests(tmp_path)
    declared = unique("declared")
    write(tmp_path, "user.yaml", f"""
        apiVersion: reconciler/v1
        kind: User
        metadata: {{name: {declared}}}
        spec: {{roles: [app-user]}}
        """)

    edited = reconcile(couch, "plan", "--format", "json", "--exclude", "UserDatabases/per-user", str(tmp_path))

    assert edited.code == 0, edited.stderr
    assert ("user", declared) in planned(edited)
    assert not any(key.startswith("t-sign-") for _, key in planned(edited))


def test_a_selector_naming_no_manifest_kind_is_one_line(couch, tmp_path):
    manifests(tmp_path)

    run = reconcile(couch, "plan", "--exclude", "UserDatabase/per-user", str(tmp_path))

    assert run.code == 1 and len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith("--exclude UserDatabase/per-user: unknown kind `UserDatabase`; ")
    assert "UserDatabases" in run.stderr
