"""Database authorization, CouchDB 3.x rules: admin-only default, members and admins by names and roles,
readers vs writers vs design-doc writers vs `_security` writers, empty members = public.

Sources: facts "Security and users"; couch_db.erl (check_is_admin, check_is_member, is_public_db,
throw_security_error); chttpd_auth_request.erl (require_admin, db_authorization_check); recorded exchanges.
"""

import pytest

from behaviour_fixtures import ADMIN_ONLY_SECURITY, NOT_SERVER_ADMIN, answer, db_url

ANON_REFUSED = {"error": "unauthorized", "reason": "You are not authorized to access this db."}
MEMBER_REFUSED = {"error": "forbidden", "reason": "You are not allowed to access this db."}
NOT_DB_ADMIN = "You are not a db or server admin."


def test_new_database_is_admin_only(server, db):
    """Facts: a new database's _security reads back {"members":{"roles":["_admin"]},"admins":{"roles":["_admin"]}}
    ([couchdb] default_security = admin_only); recorded exchange "security fresh"."""
    assert answer(server.admin.get(db_url(db, "_security"))) == (200, ADMIN_ONLY_SECURITY)


def test_admin_only_database_refuses_anonymous_401_and_users_403(server, db, new_user):
    """Facts: "Anonymous request to an admin-only db: 401; an authenticated non-member: 403";
    couch_db:throw_security_error words them."""
    server.admin.put(db_url(db, "doc"), json={})
    user = new_user(roles=["app-user"])
    for path in (db_url(db), db_url(db, "doc"), db_url(db, "_all_docs"), db_url(db, "_security")):
        assert answer(server.anon.get(path)) == (401, ANON_REFUSED), path
        assert answer(user.client.get(path)) == (403, MEMBER_REFUSED), path


def test_empty_security_makes_the_database_public(server, db, new_user):
    """Facts: "After PUT _security {} it reads {} and the database is public"; couch_db:is_public_db
    (members names and roles both empty)."""
    assert answer(server.admin.put(db_url(db, "_security"), json={})) == (200, {"ok": True})
    assert answer(server.admin.get(db_url(db, "_security"))) == (200, {})
    assert server.anon.put(db_url(db, "by-anon"), json={"a": 1}).status_code == 201
    assert server.anon.get(db_url(db, "by-anon")).json()["a"] == 1
    assert new_user().client.get(db_url(db, "by-anon")).status_code == 200


def test_empty_member_lists_are_public_too(server, new_db):
    """couch_db:is_public_db: Names =:= [] andalso Roles =:= [] -- empty lists count as no members,
    even when admins are set."""
    db = new_db(security={"members": {"names": [], "roles": []}, "admins": {"roles": ["_admin"]}})
    assert server.anon.get(db_url(db)).status_code == 200


@pytest.mark.parametrize("by", ["name", "role"])
def test_members_read_and_write_documents(server, new_db, new_user, by):
    """couch_db:check_is_member (names or roles in members): members read and write documents; recorded exchanges
    "carl reads rec-a by role", "carl writes rec-a"."""
    user = new_user(roles=["team"])
    members = {"names": [user.name]} if by == "name" else {"roles": ["team"]}
    db = new_db(security={"members": members})
    created = user.client.put(db_url(db, "note"), json={"n": 1})
    assert created.status_code == 201
    assert user.client.get(db_url(db, "note")).json()["n"] == 1
    assert user.client.get(db_url(db, "_all_docs")).status_code == 200
    assert user.client.post(db_url(db, "_bulk_docs"), json={"docs": [{"_id": "b"}]}).status_code == 201


def test_members_read_the_security_object(server, new_db, new_user):
    """chttpd_auth_request:db_authorization_check: any member may GET /{db}/_security."""
    user = new_user()
    security = {"members": {"names": [user.name]}}
    db = new_db(security=security)
    assert answer(user.client.get(db_url(db, "_security"))) == (200, security)


def test_members_cannot_write_design_docs(server, new_db, new_user):
    """couch_db: design-doc updates need check_is_admin -> 403 forbidden "You are not a db or server admin."
    (recorded exchange "carl writes ddoc")."""
    user = new_user()
    db = new_db(security={"members": {"names": [user.name]}})
    response = user.client.put(db_url(db, "_design", "x"), json={"views": {}})
    assert answer(response) == (403, {"error": "forbidden", "reason": NOT_DB_ADMIN})


def test_members_cannot_write_security(server, new_db, new_user):
    """couch_db:set_security -> check_is_admin throws forbidden on every shard; fabric_rpc:with_db replies it as an
    error, fabric_db_meta:handle_set_message counts no success and check_sec_set_int throws no_majority -> 500 {"error":"error","reason":"no_majority"}, the same
    path as facts' invalid-security quirk. The object is unchanged."""
    user = new_user()
    security = {"members": {"names": [user.name]}}
    db = new_db(security=security)
    response = user.client.put(db_url(db, "_security"), json={})
    assert answer(response) == (500, {"error": "error", "reason": "no_majority"})
    assert server.admin.get(db_url(db, "_security")).json() == security


@pytest.mark.parametrize("by", ["name", "role"])
def test_db_admins_write_design_docs_and_security_but_cannot_delete(server, new_db, new_user, by):
    """couch_db:check_is_admin accepts admins.names / admins.roles for ddocs and _security; deleting the database
    still requires a server admin (chttpd_auth_request require_admin: 401 "You are not a server admin.");
    recorded exchanges "dana (db admin by name) writes ddoc", "dana writes security", "dana deletes db"."""
    user = new_user(roles=["ops"])
    admins = {"names": [user.name]} if by == "name" else {"roles": ["ops"]}
    security = {"members": {"roles": ["nobody-else"]}, "admins": admins}
    db = new_db(security=security)
    assert user.client.get(db_url(db, "doc")).status_code == 404  # db admins are members: reads pass the check
    assert user.client.put(db_url(db, "_design", "x"), json={"language": "javascript"}).status_code == 201
    assert answer(user.client.put(db_url(db, "_security"), json=security)) == (200, {"ok": True})
    assert answer(user.client.delete(db_url(db))) == NOT_SERVER_ADMIN


def test_anonymous_design_doc_write_on_public_db_is_401(server, new_db):
    """couch_db:throw_security_error: an anonymous userCtx gets {unauthorized, Reason} where a named one gets forbidden."""
    db = new_db(security={})
    response = server.anon.put(db_url(db, "_design", "x"), json={})
    assert answer(response) == (401, {"error": "unauthorized", "reason": NOT_DB_ADMIN})


def test_server_admin_bypasses_security(server, new_db):
    """couch_db:is_admin: the _admin role is always a db admin (and so a member)."""
    db = new_db(security={"members": {"names": ["someone-else"]}, "admins": {"names": ["someone-else"]}})
    assert server.admin.put(db_url(db, "_design", "x"), json={}).status_code == 201
    assert server.admin.get(db_url(db, "_security")).status_code == 200


def test_security_write_bumps_update_seq(server, db):
    """Facts, Bulk reads: "A _security write bumps the database's update_seq ... an unchanged update_seq means
    nothing in that database changed" (compare for equality only)."""
    before = server.admin.get(db_url(db)).json()["update_seq"]
    assert server.admin.get(db_url(db)).json()["update_seq"] == before
    server.admin.put(db_url(db, "_security"), json={"members": {"roles": ["x"]}})
    assert server.admin.get(db_url(db)).json()["update_seq"] != before


@pytest.mark.parametrize("body", [[], {"members": {"names": "someone"}}])
def test_invalid_security_object_is_500_no_majority(server, db, body):
    """Facts, Quirks: an invalid _security body (not an object, or names not a list) answers
    500 {"error":"error","reason":"no_majority"}; recorded exchanges "security not an object", "security names not a list"."""
    response = server.admin.put(db_url(db, "_security"), json=body)
    assert answer(response) == (500, {"error": "error", "reason": "no_majority"})
    assert server.admin.get(db_url(db, "_security")).json() == ADMIN_ONLY_SECURITY


def test_default_security_everyone_creates_public_databases(server, set_config, new_db):
    """[couchdb] default_security = everyone (rel/overlay/etc/default.ini; CouchDB docs config/couchdb.html):
    new databases get an empty security object instead of the admin-only one."""
    set_config("couchdb", "default_security", "everyone")
    db = new_db()
    assert server.admin.get(db_url(db, "_security")).json() == {}
    assert server.anon.get(db_url(db)).status_code == 200
