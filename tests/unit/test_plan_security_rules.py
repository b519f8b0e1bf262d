"""How a security manifest compares with what the server holds (couch_reconciler/kinds/security.py).

CouchDB facts relied on (docs/couchdb.md, recorded on 3.4.3): a new database's
`_security` is `{"members":{"roles":["_admin"]},"admins":{"roles":["_admin"]}}`;
after `PUT _security {}` the database is public. couch_db.erl
`validate_security_object` checks only `admins` and `members`, and `set_security`
stores the whole object, so other top-level keys (our ownership marker) survive.
"""

from __future__ import annotations

from couch_reconciler.kinds.security import ADMIN_ONLY, RESOURCE, compose, digest, groups
from couch_reconciler.model import Desired, Observed, Source

PERUSER = {"members": {"names": ["alice"], "roles": ["_admin"]}, "admins": {"names": ["alice"], "roles": ["_admin"]}}


def want(members=None, admins=None, mode="exact") -> Desired:
    body = {"members": {"names": [], "roles": [], **(members or {})},
            "admins": {"names": [], "roles": [], **(admins or {})}}
    return Desired("security", "app", body, Source("dbs.yaml", 4), options={"mode": mode})


def live(security: dict) -> Observed:
    return Observed("security", "app", groups(security), digest(security), facts={"raw": security})


def test_exact_mode_adds_a_role_beside_the_fresh_databases_admin_role_and_is_stable():
    change = RESOURCE.diff(want(members={"roles": ["app-user"]}), live(ADMIN_ONLY))
    assert [(f.path, f.before, f.after) for f in change.fields] == [("members.roles", ["_admin"], ["_admin", "app-user"])]
    written = compose(ADMIN_ONLY, want(members={"roles": ["app-user"]}))
    assert RESOURCE.diff(want(members={"roles": ["app-user"]}), live(written)) is None


def test_exact_mode_without_members_keeps_a_fresh_database_admin_only_and_fixes_a_public_one():
    assert RESOURCE.diff(want(), live(ADMIN_ONLY)) is None
    change = RESOURCE.diff(want(), live({}))  # a public database made private: its members shown whole
    assert [(f.path, f.before, f.after) for f in change.fields] == \
        [("members", "public", {"names": [], "roles": ["_admin"]})]


def test_exact_mode_removes_names_others_added_but_merge_mode_keeps_them():
    manifest = {"roles": ["app-user"]}
    exact = RESOURCE.diff(want(members=manifest), live(PERUSER))
    assert ("members.names", ["alice"], []) in [(f.path, f.before, f.after) for f in exact.fields]
    merged = {**PERUSER, "members": {"names": ["alice"], "roles": ["_admin", "app-user"]}}
    assert RESOURCE.diff(want(members=manifest, mode="merge"), live(merged)) is None
    change = RESOURCE.diff(want(members={"names": ["bob"]}, mode="merge"), live(PERUSER))
    assert [(f.path, f.after) for f in change.fields] == [("members.names", ["alice", "bob"])]


def test_order_of_names_and_roles_is_not_drift():
    server = {"members": {"names": ["b", "a"], "roles": ["y", "x"]}, "admins": {"names": [], "roles": []}}
    assert RESOURCE.diff(want(members={"names": ["a", "b"], "roles": ["x", "y"]}), live(server)) is None


def test_the_ownership_marker_and_other_top_level_keys_are_kept_and_never_drift():
    server = {**ADMIN_ONLY, "couch_reconciler": {"created_by": "couch-reconciler"}, "other_tool": 1}
    assert RESOURCE.diff(want(), live(server)) is None
    written = compose(server, want(members={"roles": ["app-user"]}))
    assert written["couch_reconciler"] == {"created_by": "couch-reconciler"} and written["other_tool"] == 1


def test_a_database_being_created_gets_a_create_against_the_admin_only_default():
    change = RESOURCE.diff(want(members={"names": ["carl"]}), None)
    assert change.action == "create"
    assert change.after["members"] == {"names": ["carl"], "roles": ["_admin"]}
