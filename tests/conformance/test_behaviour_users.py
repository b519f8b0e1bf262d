"""The `_users` database: stored hashes, the _auth validation function's errors, who may read and write what.

Sources: facts "Security and users"; src/couch/src/couch_users_db.erl (before_doc_update, save_doc,
after_doc_read); src/couch/include/couch_js_functions.hrl (AUTH_DB_DOC_VALIDATE_FUNCTION, quoted below as "_auth");
chttpd_db.erl (validate_security_can_be_edited).
"""

import hashlib
import re

import pytest

from behaviour_fixtures import ADMIN_ONLY_SECURITY, NOT_SERVER_ADMIN, Client, answer, db_url, delete_user, user_url


def forbidden(reason):
    return 403, {"error": "forbidden", "reason": reason}


def test_auth_design_doc_is_installed(server, poll):
    """Facts: "After start-up, CouchDB installs _users/_design/_auth (the validation function) asynchronously";
    bounded wait, then it holds a validate_doc_update."""
    ddoc = poll(lambda: (lambda r: r.status_code == 200 and r.json())(server.admin.get("/_users/_design/_auth")),
                timeout=10, what="_users/_design/_auth")
    assert ddoc["validate_doc_update"].lstrip().startswith("function")


def test_stored_user_has_pbkdf2_fields_and_no_password(server, new_user):
    """couch_users_db:save_doc (pbkdf2 scheme): password replaced by password_scheme, pbkdf2_prf, iterations
    ([chttpd_auth] iterations), 32-hex salt, 64-hex derived_key; facts: the derived key is
    pbkdf2_hmac(prf, password, salt-as-hex-string, iterations)."""
    user = new_user(roles=["app"], password="s3cret")
    doc = server.admin.get(user_url(user.name)).json()
    assert "password" not in doc
    assert (doc["password_scheme"], doc["pbkdf2_prf"], doc["type"], doc["roles"]) == ("pbkdf2", "sha256", "user", ["app"])
    assert re.fullmatch(r"[0-9a-f]{32}", doc["salt"]) and re.fullmatch(r"[0-9a-f]{64}", doc["derived_key"])
    configured = server.admin.get("/_node/_local/_config/chttpd_auth/iterations")
    assert doc["iterations"] == (int(configured.json()) if configured.status_code == 200 else 600000)
    expected = hashlib.pbkdf2_hmac("sha256", b"s3cret", doc["salt"].encode("ascii"), doc["iterations"]).hex()
    assert doc["derived_key"] == expected


def test_new_user_authenticates_at_once(server, new_user):
    """couch_users_db hashes synchronously in before_doc_update: the user can log in right after the 201."""
    user = new_user()
    assert user.client.get("/_session").json()["userCtx"]["name"] == user.name


def test_password_change_rehashes(server, new_user):
    """couch_users_db:save_doc runs on every update carrying `password`: new salt and derived key, old password fails."""
    user = new_user(password="first")
    doc = server.admin.get(user_url(user.name)).json()
    doc["password"] = "second"
    assert server.admin.put(user_url(user.name), json=doc).status_code == 201
    stored = server.admin.get(user_url(user.name)).json()
    assert stored["salt"] != doc["salt"] and "password" not in stored
    assert Client(server.url, (user.name, "second")).get("/_session").json()["userCtx"]["name"] == user.name
    assert Client(server.url, (user.name, "first")).get("/_session").status_code == 401


@pytest.mark.parametrize("change, reason", [
    ({"type": "person"}, "doc.type must be user"),
    ({"type": None}, "doc.type must be user"),
    ({"name": None}, "doc.name is required"),
    ({"roles": None}, "doc.roles must exist"),
    ({"roles": "admin"}, "doc.roles must be an array"),
    ({"roles": ["ok", 7]}, "doc.roles can only contain strings"),
    ({"roles": ["_admin"]}, "No system roles (starting with underscore) in users db."),
    # without `password`: couch_users_db:save_doc would otherwise overwrite password_scheme with pbkdf2 first
    ({"password_scheme": "md5", "password": None}, "Password scheme `md5` not supported."),
])
def test_user_doc_validation_errors(server, new_name, change, reason):
    """_auth validate_doc_update (couch_js_functions.hrl) throws {forbidden: ...} -> 403 with exactly these reasons."""
    name = new_name("v")
    doc = {"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": [], "password": "x"}
    doc.update(change)
    doc = {key: value for key, value in doc.items() if value is not None}
    response = server.admin.put(user_url(name), json=doc)
    assert answer(response) == forbidden(reason)


def test_user_doc_id_must_match_the_name(server, new_name):
    """_auth: newDoc._id !== 'org.couchdb.user:' + newDoc.name -> "Doc ID must be of the form org.couchdb.user:name"."""
    name = new_name("v")
    response = server.admin.put(user_url(name), json={"name": name + "x", "type": "user", "roles": [], "password": "x"})
    assert answer(response) == forbidden("Doc ID must be of the form org.couchdb.user:name")


def test_user_name_may_not_start_with_underscore(server, new_name):
    """_auth: newDoc.name[0] === '_' -> "Username may not start with underscore." (recorded exchange "user name underscore")."""
    name = "_" + new_name("v")
    response = server.admin.put(user_url(name), json={"name": name, "type": "user", "roles": [], "password": "x"})
    assert answer(response) == forbidden("Username may not start with underscore.")


def test_user_name_may_not_hold_a_colon(server, new_name):
    """_auth badUserNameChars [':'] -> "Character `:` is not allowed in usernames."."""
    name = new_name("v") + ":x"
    response = server.admin.put(user_url(name), json={"name": name, "type": "user", "roles": [], "password": "x"})
    assert answer(response) == forbidden("Character `:` is not allowed in usernames.")


def test_renaming_a_user_is_refused_by_the_id_rule(server, new_user):
    """_auth checks the id before "Usernames can not be changed.": a renamed doc under the old id fails on its id."""
    user = new_user()
    doc = server.admin.get(user_url(user.name)).json()
    doc["name"] = user.name + "-renamed"
    response = server.admin.put(user_url(user.name), json=doc)
    assert answer(response) == forbidden("Doc ID must be of the form org.couchdb.user:name")


def test_users_security_is_admin_only_and_not_editable(server):
    """Facts: _users carries the admin-only object and "cannot be edited" ([couchdb] users_db_security_editable
    false): chttpd_db:validate_security_can_be_edited -> 403 "You can't edit the security object of the user database."."""
    assert answer(server.admin.get("/_users/_security")) == (200, ADMIN_ONLY_SECURITY)
    response = server.admin.put("/_users/_security", json={})
    assert answer(response) == forbidden("You can't edit the security object of the user database.")
    assert answer(server.admin.get("/_users/_security")) == (200, ADMIN_ONLY_SECURITY)


def test_anonymous_sign_up_is_refused(server, new_name):
    """Facts: "anonymous sign-up is refused (401)" because _users is admin-only."""
    name = new_name("signup")
    response = server.anon.put(user_url(name), json={"name": name, "type": "user", "roles": [], "password": "x"})
    assert answer(response) == (401, {"error": "unauthorized", "reason": "You are not authorized to access this db."})
    assert server.admin.get(user_url(name)).status_code == 404


def test_users_cannot_read_their_own_doc_by_default(server, new_user):
    """Facts: "a non-admin cannot read even their own user doc" (admin-only _users security)."""
    user = new_user()
    response = user.client.get(user_url(user.name))
    assert answer(response) == (403, {"error": "forbidden", "reason": "You are not allowed to access this db."})


def test_users_all_docs_and_changes_are_admin_only(server, new_user):
    """chttpd_auth_request: _users/_all_docs and _users/_changes require_admin -> 401 "You are not a server admin."."""
    user = new_user()
    for path in ("/_users/_all_docs", "/_users/_changes"):
        response = user.client.get(path)
        assert answer(response) == NOT_SERVER_ADMIN


@pytest.fixture
def open_users_db(server, set_config):
    """Opens _users to everyone the way 3.x allows (users_db_security_editable = true, then {} security);
    restores the admin-only object and the setting afterwards."""
    set_config("couchdb", "users_db_security_editable", "true")
    assert server.put_security("_users", {"members": {"names": [], "roles": []},
                                          "admins": {"roles": ["_admin"]}}).status_code == 200
    yield
    server.put_security("_users", ADMIN_ONLY_SECURITY)


def test_in_open_users_db_a_user_reads_and_updates_only_her_own_doc(server, new_user, open_users_db):
    """couch_users_db:after_doc_read: the owner reads her doc; others see only [chttpd_auth] public_fields
    (none by default) -> 404 not_found "missing"; before_doc_update: updating another's doc -> throw(not_found)."""
    alice, bob = new_user(), new_user()
    own = alice.client.get(user_url(alice.name))
    assert own.status_code == 200 and own.json()["name"] == alice.name
    assert answer(alice.client.get(user_url(bob.name))) == (404, {"error": "not_found", "reason": "missing"})
    bobs = server.admin.get(user_url(bob.name)).json()
    response = alice.client.put(user_url(bob.name), json={**bobs, "password": "hijack"})
    assert answer(response) == (404, {"error": "not_found", "reason": "missing"})


def test_in_open_users_db_only_admins_set_roles(server, new_name, new_user, open_users_db):
    """_auth (non-admin): a new doc with roles -> "Only _admin may set roles"; changing own roles ->
    "Only _admin may edit roles"; anonymous sign-up without roles is accepted."""
    name = new_name("self")
    doc = {"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": ["boss"], "password": "pw"}
    assert answer(server.anon.put(user_url(name), json=doc)) == forbidden("Only _admin may set roles")
    user = new_user()
    own = user.client.get(user_url(user.name)).json()
    response = user.client.put(user_url(user.name), json={**own, "roles": ["boss"]})
    assert answer(response) == forbidden("Only _admin may edit roles")
    signup = server.anon.put(user_url(name), json={**doc, "roles": []})
    assert signup.status_code == 201
    server.admin.delete(user_url(name), params={"rev": signup.json()["rev"]})


def test_only_admins_delete_other_users(server, new_user, open_users_db):
    """couch_users_db:before_doc_update runs before _auth: a non-admin writing (here deleting) another user's doc
    -> throw(not_found) -> 404 not_found "missing"."""
    alice, bob = new_user(), new_user()
    rev = server.admin.get(user_url(bob.name)).json()["_rev"]
    response = alice.client.delete(user_url(bob.name), params={"rev": rev})
    assert answer(response) == (404, {"error": "not_found", "reason": "missing"})
    assert server.admin.get(user_url(bob.name)).status_code == 200


def test_admin_deletes_a_user_and_the_login_stops_working(server, new_user):
    """Deleting the _users doc removes the credentials (couch_auth_cache / chttpd_auth_cache follow _users changes)."""
    user = new_user()
    assert delete_user(server.admin, user.name).status_code == 200
    assert user.client.get("/_session").status_code == 401


def test_user_docs_live_in_users_database_only(server, db):
    """couch_users_db before_doc_update applies to the authentication db only: a user-shaped doc elsewhere keeps `password`."""
    doc = {"name": "x", "type": "user", "roles": [], "password": "plain"}
    server.admin.put(db_url(db, "org.couchdb.user:x"), json=doc)
    assert server.admin.get(db_url(db, "org.couchdb.user:x")).json()["password"] == "plain"


def test_iterations_setting_applies_to_new_hashes(server, set_config, new_user):
    """couch_users_db:save_doc reads [chttpd_auth] iterations on every write."""
    set_config("chttpd_auth", "iterations", "1234")
    user = new_user(password="pw")
    doc = server.admin.get(user_url(user.name)).json()
    assert doc["iterations"] == 1234
    assert doc["derived_key"] == hashlib.pbkdf2_hmac("sha256", b"pw", doc["salt"].encode("ascii"), 1234).hex()
    assert user.client.get("/_session").json()["userCtx"]["name"] == user.name


def test_users_get_their_roles_in_the_session(server, new_user):
    """couch_httpd_auth:default_authentication_handler: the userCtx roles are the _users doc's roles."""
    user = new_user(roles=["a", "b"])
    assert user.client.get("/_session").json()["userCtx"]["roles"] == ["a", "b"]


def test_role_change_applies_to_the_next_request(server, new_user, new_db, poll):
    """Roles are read from the user doc (through chttpd_auth_cache, which follows _users changes): after an admin
    grants a role, a database open to that role admits the user."""
    user = new_user()
    db = new_db(security={"members": {"roles": ["granted"]}})
    assert user.client.get(db_url(db)).status_code == 403
    doc = server.admin.get(user_url(user.name)).json()
    assert server.admin.put(user_url(user.name), json={**doc, "roles": ["granted"]}).status_code == 201
    poll(lambda: user.client.get(db_url(db)).status_code == 200, what="new role admitted")
