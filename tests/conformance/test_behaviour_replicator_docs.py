"""`_replicator` documents: full URLs only, `owner` added, credentials visible to admins only, admin-only database.

Sources: facts "Replication"; src/couch_replicator/src/couch_replicator_docs.erl (parse_rep_db ->
local_endpoints_not_supported, before_doc_update adds `owner`, after_doc_read strips credentials for others);
chttpd_auth_request.erl (_replicator rules).
"""

import pytest

from behaviour_fixtures import NOT_SERVER_ADMIN, answer, db_url

MEMBER_REFUSED = {"error": "forbidden", "reason": "You are not allowed to access this db."}


@pytest.fixture
def rep_doc(server, new_name):
    """A replication doc id in _replicator, deleted after the case."""
    doc_id = new_name("rep")
    yield doc_id
    current = server.admin.get(db_url("_replicator", doc_id))
    if current.status_code == 200:
        server.admin.delete(db_url("_replicator", doc_id), params={"rev": current.json()["_rev"]})


def endpoint(server, db, password):
    """Facts: the URL is the one the server uses to reach the database, which can differ from the client's."""
    return {"url": f"{server.url_from_server}/{db}",
            "auth": {"basic": {"username": server.admin_name, "password": password}}}


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


def test_wrong_password_shows_as_crashing_in_the_scheduler(server, new_db, rep_doc, poll):
    """Facts: "A wrong password -> crashing with a replication_auth_error" in /_scheduler/docs/_replicator/ID."""
    source, target = new_db(), new_db()
    doc = {"source": endpoint(server, source, "wrong-password"), "target": endpoint(server, target, server.admin_password),
           "continuous": True}
    assert server.admin.put(db_url("_replicator", rep_doc), json=doc).status_code == 201

    def state():
        response = server.admin.get(f"/_scheduler/docs/_replicator/{rep_doc}")
        return response.status_code == 200 and response.json().get("state") == "crashing" and response.json()

    info = poll(state, timeout=15, what="replication crashing")
    assert "replication_auth_error" in str(info.get("info"))
