"""`_replicator` documents: full URLs only, `owner` added, credentials visible to admins only, admin-only database.

Sources: facts "Replication"; src/couch_replicator/src/couch_replicator_docs.erl (parse_rep_db ->
local_endpoints_not_supported, before_doc_update adds `owner`, after_doc_read strips credentials for others);
chttpd_auth_request.erl (_replicator rules).
"""

import pytest

from behaviour_fixtures import NOT_SERVER_ADMIN, answer, db_url
from cleanup import delete_everywhere

MEMBER_REFUSED = {"error": "forbidden", "reason": "You are not allowed to access this db."}


@pytest.fixture
def rep_doc(server, new_name):
    """A replication doc id in _replicator, deleted after the case."""
    doc_id = new_name("rep")
    yield doc_id
    # Every branch: on a cluster the replicator's state write-back can leave one beside the case's (delete_everywhere).
    delete_everywhere(server.admin.http, server.admin.base, "_replicator", [doc_id])


def endpoint(server, db, password, name=None):
    """Facts: the URL is the one the server uses to reach the database, which can differ from the client's.
    As the server admin unless another `name` is given."""
    return {"url": f"{server.url_from_server}/{db}",
            "auth": {"basic": {"username": name or server.admin_name, "password": password}}}


@pytest.mark.parametrize("side", ["source", "target"])
def test_local_endpoints_are_refused(server, db, rep_doc, side):
    """Facts: "_replicator docs must use full URLs (local names: 403 local_endpoints_not_supported)";
    couch_replicator_docs:parse_rep_db(<<_/binary>>) -> throw({error, local_endpoints_not_supported})."""
    doc = {"source": endpoint(server, db, server.admin_password), "target": endpoint(server, db, server.admin_password)}
    doc[side] = db
    response = server.admin.put(db_url("_replicator", rep_doc), json=doc)
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "forbidden" and "local_endpoints_not_supported" in body["reason"]
    assert server.admin.get(db_url("_replicator", rep_doc)).status_code == 404


def test_admin_reads_back_credentials_and_the_added_owner(server, new_db, rep_doc):
    """Facts: "An admin reading a replication doc sees the stored password in clear and an owner field added by
    CouchDB" (couch_replicator_docs:before_doc_update stores owner = the writer's name)."""
    source, target = new_db(), new_db()
    doc = {"source": endpoint(server, source, "src-pw"), "target": endpoint(server, target, "tgt-pw"), "continuous": False}
    assert server.admin.put(db_url("_replicator", rep_doc), json=doc).status_code == 201
    stored = server.admin.get(db_url("_replicator", rep_doc)).json()
    assert stored["owner"] == server.admin_name
    assert stored["source"]["auth"]["basic"]["password"] == "src-pw"
    assert stored["target"]["url"] == doc["target"]["url"]


def test_replicator_is_admin_only_for_users(server, new_user, rep_doc):
    """Facts: "Non-admins cannot read or write _replicator on a default 3.4 server (403)"."""
    user = new_user()
    response = user.client.put(db_url("_replicator", rep_doc), json={"source": "http://x/a", "target": "http://x/b"})
    assert answer(response) == (403, MEMBER_REFUSED)
    assert answer(user.client.get(db_url("_replicator", rep_doc))) == (403, MEMBER_REFUSED)


def test_replicator_all_docs_and_changes_need_a_server_admin(server, new_user):
    """chttpd_auth_request: _replicator/_all_docs and _replicator/_changes require_admin -> 401 "You are not a server admin."."""
    user = new_user()
    for path in ("/_replicator/_all_docs", "/_replicator/_changes"):
        assert answer(user.client.get(path)) == NOT_SERVER_ADMIN


def test_wrong_password_shows_as_crashing_in_the_scheduler(server, new_db, new_user, rep_doc, poll):
    """Facts: "A wrong password -> crashing with a replication_auth_error" in /_scheduler/docs/_replicator/ID.
    The wrong password is a user's of the case's own: five failed logins lock an account out for 5 minutes
    ([chttpd_auth_lockout]), which must never be the server admin's."""
    source, target = new_db(), new_db()
    reader = new_user()
    doc = {"source": endpoint(server, source, "wrong-password", reader.name),
           "target": endpoint(server, target, server.admin_password), "continuous": True}
    assert server.admin.put(db_url("_replicator", rep_doc), json=doc).status_code == 201

    def state():
        response = server.admin.get(f"/_scheduler/docs/_replicator/{rep_doc}")
        return response.status_code == 200 and response.json().get("state") == "crashing" and response.json()

    info = poll(state, timeout=15, what="replication crashing")
    assert "replication_auth_error" in str(info.get("info"))


@pytest.fixture
def shared_replicator(server, new_user):
    """Two users made members of _replicator (3.4's default security keeps them out); restored afterwards."""
    alice, bob = new_user(), new_user()
    before = server.admin.get("/_replicator/_security").json()
    assert server.put_security("_replicator", {"members": {"names": [alice.name, bob.name]},
                                               "admins": {"roles": ["_admin"]}}).status_code == 200
    yield alice, bob
    server.put_security("_replicator", before)


def user_rep_doc(server, user, db):
    """A replication doc as a user writes it: her own credentials, user_ctx naming herself."""
    side = {"url": f"{server.url_from_server}/{db}", "auth": {"basic": {"username": user.name, "password": user.password}}}
    return {"source": side, "target": side, "user_ctx": {"name": user.name, "roles": []}}


def test_owner_is_the_writer_and_cannot_be_forged(server, db, shared_replicator, rep_doc):
    """couch_replicator_docs:before_doc_update: `owner` is set to the writer's name; a non-admin writing a doc whose
    owner is someone else -> 403 "Can't update replication documents from other users."."""
    alice, bob = shared_replicator
    assert alice.client.put(db_url("_replicator", rep_doc), json=user_rep_doc(server, alice, db)).status_code == 201
    assert server.admin.get(db_url("_replicator", rep_doc)).json()["owner"] == alice.name
    forged = {**user_rep_doc(server, bob, db), "owner": alice.name}
    response = bob.client.put(db_url("_replicator", rep_doc + "-forged"), json=forged)
    assert answer(response) == (403, {"error": "forbidden", "reason": "Can't update replication documents from other users."})


def test_other_users_read_replication_docs_without_credentials(server, db, shared_replicator, rep_doc):
    """couch_replicator_docs:after_doc_read: for a reader who is neither admin nor owner, `auth` and `headers` are
    stripped from object endpoints; the owner reads her doc whole."""
    alice, bob = shared_replicator
    assert alice.client.put(db_url("_replicator", rep_doc), json=user_rep_doc(server, alice, db)).status_code == 201
    assert alice.client.get(db_url("_replicator", rep_doc)).json()["source"]["auth"]["basic"]["password"] == alice.password
    seen_by_bob = bob.client.get(db_url("_replicator", rep_doc)).json()
    assert seen_by_bob["source"] == {"url": f"{server.url_from_server}/{db}"}
    assert seen_by_bob["target"] == {"url": f"{server.url_from_server}/{db}"}
