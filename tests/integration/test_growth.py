"""The share thresholds on a server with existing users: growth passes, a rewrite of many users is refused.

With couch_peruser on (apache/couchdb src/couch_peruser/src/couch_peruser.erl), every user already has her
database; the first apply of the reference manifests grants each of them `app-user` (UserDatabases
`grantRoles`), which only adds to what they held.
"""

from __future__ import annotations

from urllib.parse import quote

from reconcile_runner import config_changed, reconcile, write
from reference_world import reconcile_manifests
from waiting import wait_for, written_to_every_copy
from couch_reconciler.kinds.user_databases import user_database

EXISTING = 300


def existing_users(couch, http, unique, roles: list[str]) -> list[str]:
    """`EXISTING` users written as an app's back end writes them (no password: they are not signed in here)."""
    names = [unique("existing") for _ in range(EXISTING)]
    docs = [{"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": roles} for name in names]
    written_to_every_copy(http, couch.url, "_users", docs)
    return names


def test_the_first_apply_of_the_reference_manifests_to_existing_users_is_not_refused(couch, http, unique):
    with config_changed(http, f"{couch.url}/_node/_local/_config/couch_peruser/enable", "true"):
        names = existing_users(couch, http, unique, roles=[])
        last = quote(user_database("userdb-", names[-1]), safe="")
        wait_for(lambda: http.get(f"{couch.url}/{last}").status_code == 200, "couch_peruser's databases", timeout=60)

        applied = reconcile_manifests(couch, "apply", "--auto-approve")

        assert applied.code == 0, applied.stderr
        assert "refusing" not in applied.stderr
        user = http.get(f"{couch.url}/_users/{quote('org.couchdb.user:' + names[0], safe=':')}").json()
        assert user["roles"] == ["app-user"]


def test_a_manifest_rewriting_the_roles_of_a_third_of_the_users_is_refused_and_shown(couch, http, unique, tmp_path):
    names = existing_users(couch, http, unique, roles=["free"])
    rewritten = names[:EXISTING // 3]
    write(tmp_path, "users.yaml", "---".join(f"""
        apiVersion: reconciler/v1
        kind: User
        metadata: {{name: {name}}}
        spec: {{roles: [paid]}}
        """ for name in rewritten) + """---
        apiVersion: reconciler/v1
        kind: Role
        metadata: {name: paid}
        spec: {}
        """)

    refused = reconcile(couch, "apply", "--auto-approve", str(tmp_path))

    assert refused.code == 1
    assert refused.stderr.startswith(f"refusing to update {len(rewritten)} of ")
    assert f"~ user/{rewritten[0]}" in refused.stdout and '["free"] -> ["paid"]' in refused.stdout
    user = http.get(f"{couch.url}/_users/{quote('org.couchdb.user:' + rewritten[0], safe=':')}").json()
    assert user["roles"] == ["free"]
