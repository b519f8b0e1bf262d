"""/_node/{node}/_config: strings only, old values returned, 404 for unset keys and unknown nodes, per-node stores.

Sources: chttpd_node.erl (handle_node_req, call_node), facts "Config" section, couch_passwords.erl for [admins].
"""

import hashlib
import re

import pytest

from behaviour_fixtures import NOT_SERVER_ADMIN, Client, answer

HASHED_ADMIN = re.compile(r"-pbkdf2:sha256-([0-9a-f]{64}),([0-9a-f]{32}),(\d+)")


def config_path(section, key=None, node="_local"):
    return f"/_node/{node}/_config/{section}" + (f"/{key}" if key else "")


def test_put_returns_the_old_value_and_get_reads_it_back(server, set_config, new_name):
    """chttpd_node PUT .../Section/Key: send_json(200, OldValue) where OldValue defaults to ""; facts:
    "PUT and DELETE return the old value"."""
    section, key = new_name("sect"), "answer"
    assert set_config(section, key, "41").json() == ""
    assert set_config(section, key, "42").json() == "41"
    response = server.admin.get(config_path(section, key))
    assert answer(response) == (200, "42")
    assert server.admin.get(config_path(section)).json() == {key: "42"}


def test_delete_returns_the_old_value_then_the_key_reads_404(server, set_config, new_name):
    """chttpd_node DELETE .../Section/Key: 200 with the old value; afterwards GET throws
    {not_found, unknown_config_value} -> 404 {"error":"not_found","reason":"unknown_config_value"}."""
    section = new_name("sect")
    set_config(section, "k", "v")
    response = server.admin.delete(config_path(section, "k"))
    assert answer(response) == (200, "v")
    response = server.admin.get(config_path(section, "k"))
    assert answer(response) == (404, {"error": "not_found", "reason": "unknown_config_value"})
    response = server.admin.delete(config_path(section, "k"))
    assert answer(response) == (404, {"error": "not_found", "reason": "unknown_config_value"})


@pytest.mark.parametrize("value", [True, 3600])
def test_values_must_be_json_strings(server, new_name, value):
    """Facts, Config: "/_node/{node}/_config/... takes only JSON strings ("true", "3600"); a bare true or 3600 is 400"."""
    section = new_name("sect")
    response = server.admin.put(config_path(section, "k"), json=value)
    assert response.status_code == 400
    assert server.admin.get(config_path(section, "k")).status_code == 404


def test_unset_key_with_a_builtin_default_reads_404(server):
    """Facts, Config: "An unset key reads 404 even when CouchDB has a built-in default for it (e.g. couchdb/default_security)"."""
    response = server.admin.get(config_path("couchdb", "default_security"))
    assert answer(response) == (404, {"error": "not_found", "reason": "unknown_config_value"})


def test_unknown_section_reads_empty_object(server, new_name):
    """Facts, Config: "An unknown section reads {}"; recorded exchange "config section" (couch_peruser, unset)."""
    response = server.admin.get(config_path(new_name("nosection")))
    assert answer(response) == (200, {})


def test_unknown_node_is_404_no_such_node(server, new_name):
    """chttpd_node:call_node: a node name that is no existing atom -> throw({not_found, <<"no such node: ", Node>>});
    facts: "A node name not in the cluster: 404"."""
    node = f"couchdb@{new_name('nohost')}.invalid"
    response = server.admin.get(config_path("couchdb", node=node))
    assert answer(response) == (404, {"error": "not_found", "reason": f"no such node: {node}"})


def test_named_node_and_local_alias_share_one_store(server, set_config, new_name):
    """chttpd_node:handle_node_req rewrites `_local` to node(); /_node/_local names that node."""
    section = new_name("sect")
    set_config(section, "k", "via-local")
    node = server.node()
    assert server.admin.get(config_path(section, "k", node=node)).json() == "via-local"


def test_whole_config_groups_sections(server, set_config, new_name):
    """chttpd_node GET /_node/{node}/_config: every section as an object of string values."""
    section = new_name("sect")
    set_config(section, "k", "v")
    whole = server.admin.get("/_node/_local/_config").json()
    assert whole[section] == {"k": "v"}
    assert all(isinstance(value, str) for values in whole.values() for value in values.values())


def test_config_is_admin_only(server, new_user):
    """chttpd_auth_request:server_authorization_check: /_node requires a server admin ->
    401 "You are not a server admin." even for an authenticated user."""
    user = new_user()
    for client in (server.anon, user.client):
        response = client.get(config_path("couchdb"))
        assert answer(response) == NOT_SERVER_ADMIN


def test_config_is_per_node(cluster, new_name):
    """Facts, Config: "config is per node"; chttpd_node:call_node runs config:set on the named node only,
    and /_membership lists every node of the cluster."""
    nodes = cluster.get("/_membership").json()["cluster_nodes"]
    assert len(nodes) >= 2
    section = new_name("sect")
    try:
        assert cluster.put(config_path(section, "k", node=nodes[0]), json="only-here").status_code == 200
        assert cluster.get(config_path(section, "k", node=nodes[0])).json() == "only-here"
        for other in nodes[1:]:
            assert cluster.get(config_path(section, "k", node=other)).status_code == 404
    finally:
        cluster.delete(config_path(section, "k", node=nodes[0]))


@pytest.mark.parametrize("password", ["plain-secret", "-starts-like-a-hash"])
def test_plaintext_admin_is_hashed_asynchronously_then_authenticates(server, set_config, new_name, poll, password):
    """Facts, Security: a plaintext [admins] value is hashed asynchronously to -pbkdf2:sha256-DERIVED,SALT,ITERATIONS
    (couch_passwords:hash_admin_password); until then it may read back as plaintext and not authenticate. Only
    the hash forms count as hashed (couch_passwords.erl `get_unhashed_admins`): a password starting with "-",
    as one of secrets.token_urlsafe's in 64 does, is hashed too."""
    name = new_name("adm")
    set_config("admins", name, password)
    stored = poll(lambda: HASHED_ADMIN.fullmatch(server.admin.get(config_path("admins", name)).json() or ""),
                  timeout=10, what="admin password hashed")
    derived, salt, iterations = stored.groups()
    assert hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode("ascii"), int(iterations)).hex() == derived
    admin = Client(server.url, (name, password))
    session = poll(lambda: (lambda r: r.status_code == 200 and r.json())(admin.get("/_session")), what="new admin authenticates")
    assert session["userCtx"] == {"name": name, "roles": ["_admin"]}
    admin.close()


@pytest.mark.parametrize("raw", [False, True])
def test_prehashed_admin_is_stored_as_is_and_authenticates_at_once(server, set_config, new_name, raw):
    """Facts, Security: a value already of the form -pbkdf2:sha256-DERIVED,SALT,ITERATIONS (salt used as its hex
    string) is stored as is, with or without ?raw=true, and authenticates at once."""
    name, password, salt, iterations = new_name("adm"), "pre-hashed", "0123456789abcdef0123456789abcdef", 1000
    derived = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode("ascii"), iterations).hex()
    value = f"-pbkdf2:sha256-{derived},{salt},{iterations}"
    set_config("admins", name, value, raw=raw)
    assert server.admin.get(config_path("admins", name)).json() == value
    admin = Client(server.url, (name, password))
    response = admin.get("/_session")
    assert response.json()["userCtx"] == {"name": name, "roles": ["_admin"]}
    admin.close()


def test_deleted_admin_stops_authenticating(server, set_config, new_name, poll):
    """Removing a key from [admins] (DELETE, old value returned) removes the credential on that node."""
    name, password, salt, iterations = new_name("adm"), "gone-soon", "fedcba9876543210fedcba9876543210", 1000
    derived = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode("ascii"), iterations).hex()
    value = f"-pbkdf2:sha256-{derived},{salt},{iterations}"
    set_config("admins", name, value)
    admin = Client(server.url, (name, password))
    assert admin.get("/_session").status_code == 200
    assert server.admin.delete(config_path("admins", name)).json() == value
    poll(lambda: admin.get("/_session").status_code == 401, what="deleted admin refused")
    admin.close()
