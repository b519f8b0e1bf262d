"""Differential check, real server only: the same requests sent to COUCHDB_URL and to a couchsim started beside it
must get the same status and the same JSON (or the same keys, where values are server-specific).

The requests are chosen so that a shared, long-running server answers them the same as a fresh one: they read
system objects whose 3.x defaults the facts file records, or name things (`unique`) that cannot exist.
"""

import pytest

from behaviour_fixtures import Client, answer, db_url, user_url

pytestmark = pytest.mark.real_only("compares couchsim with the real CouchDB named by COUCHDB_URL, request by request")


@pytest.fixture
def sim(server):
    """(admin, anonymous) clients of a couchsim started beside the real server, with the same admin credentials."""
    from couch_reconciler.couchsim.testing import SimServer

    with SimServer(admin=(server.admin_name, server.admin_password)) as running:
        admin, anon = Client(running.url, (server.admin_name, server.admin_password)), Client(running.url)
        yield admin, anon
        admin.close()
        anon.close()


def test_error_answers_match(server, sim, new_name):
    """Statuses and error bodies CouchDB 3.4 gives for things that do not exist or are refused."""
    missing = new_name("missing")
    requests = [
        ("admin", "GET", db_url(missing), None),
        ("admin", "GET", user_url(missing), None),
        ("admin", "PUT", "/_users/_security", {}),
        ("admin", "DELETE", "/", None),
        ("admin", "GET", "/_nosuch", None),
        ("anon", "GET", "/_uuids?count=1001", None),
        ("admin", "POST", "/_dbs_info", {}),
        ("admin", "GET", f"/_node/_local/_config/{missing}/k", None),
        ("admin", "GET", f"/_node/couchdb@{missing}.invalid/_config", None),
        ("anon", "GET", "/_users/_all_docs", None),
        ("anon", "GET", "/_all_dbs", None),
        ("anon", "PUT", db_url(missing), None),
    ]
    clients = {"admin": (server.admin, sim[0]), "anon": (server.anon, sim[1])}
    for who, method, path, body in requests:
        real, fake = clients[who]
        assert answer(fake.request(method, path, json=body)) == answer(real.request(method, path, json=body)), (method, path)


def test_system_objects_match(server, sim):
    """3.x defaults recorded in the facts file: admin-only _users and _replicator, the anonymous session, /_up."""
    (real_admin, real_anon), (sim_admin, sim_anon) = (server.admin, server.anon), sim
    for path in ("/_users/_security", "/_replicator/_security", "/_node/_local/_config/couchdb/default_security"):
        assert answer(sim_admin.get(path)) == answer(real_admin.get(path)), path
    for path in ("/_session", "/_up"):
        assert answer(sim_anon.get(path)) == answer(real_anon.get(path)), path


def test_response_shapes_match(server, sim, new_name):
    """Keys of answers whose values are server-specific: the welcome, a new database's info, a new user's stored doc."""
    real_admin, sim_admin = server.admin, sim[0]
    assert set(sim_admin.get("/").json()) == set(real_admin.get("/").json())
    name = new_name("shape")
    user = {"name": name, "password": "pw", "roles": [], "type": "user"}
    for client in (real_admin, sim_admin):
        assert client.put(db_url(name)).status_code == 201
        assert client.put(user_url(name), json=user).status_code == 201
    try:
        assert set(sim_admin.get(db_url(name)).json()) == set(real_admin.get(db_url(name)).json())
        assert set(sim_admin.get(user_url(name)).json()) == set(real_admin.get(user_url(name)).json())
    finally:
        for client in (real_admin, sim_admin):
            client.delete(db_url(name))
