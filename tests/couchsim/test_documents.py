"""couchsim document behaviours the recorded exchanges do not pin down. Each case cites its CouchDB source."""

from __future__ import annotations

import contextlib
import email
import json
import time

import pytest
import requests

from couch_reconciler.couchsim.testing import SimServer
from waiting import ONE_COPY


def test_posted_document_is_kept_and_listed(couch, unique):
    """chttpd_db:db_req(POST /db): the doc gets a server-generated id (couch_uuids) and is stored like any
    other; `_all_docs` counts and lists it (the exchanges' replay removes it, see test_exchanges.py)."""
    http = couch.session()
    db = unique("db")
    assert http.put(f"{couch.url}/{db}", params=ONE_COPY).status_code == 201
    created = http.post(f"{couch.url}/{db}", json={"b": 1})
    assert created.status_code == 201
    assert created.headers["Location"].endswith(f"/{db}/{created.json()['id']}")
    listing = http.get(f"{couch.url}/{db}/_all_docs").json()
    assert listing["total_rows"] == 1
    assert [row["id"] for row in listing["rows"]] == [created.json()["id"]]


def test_conflicting_branches_pick_the_same_winner_and_list_conflicts(couch, unique):
    """couch_doc:to_doc_info/1 and couch_key_tree: with new_edits=false two branches coexist; the winner is the
    longer branch, then the greater revision id; `conflicts=true` lists the losing live leaves."""
    http = couch.session()
    db = unique("db")
    http.put(f"{couch.url}/{db}")
    docs = [{"_id": "d", "_rev": "1-aaa", "v": "a"}, {"_id": "d", "_rev": "1-bbb", "v": "b"}]
    answer = http.post(f"{couch.url}/{db}/_bulk_docs", json={"docs": docs, "new_edits": False})
    assert answer.status_code == 201 and answer.json() == []
    doc = http.get(f"{couch.url}/{db}/d", params={"conflicts": "true"}).json()
    assert doc["_rev"] == "1-bbb" and doc["v"] == "b"
    assert doc["_conflicts"] == ["1-aaa"]
    stale = http.put(f"{couch.url}/{db}/d", json={"_rev": "1-zzz"})
    assert stale.status_code == 409
    assert stale.json() == {"error": "conflict", "reason": "Document update conflict."}


def test_revs_diff_reports_missing_revisions_and_ancestors(couch, unique):
    """chttpd_db:db_req(_revs_diff) via couch_db:get_missing_revs/2: unknown revs are `missing`, and leaves
    older than them are `possible_ancestors` (what the replicator asks before sending). One copy: on a cluster
    each id is answered by the first copy to reply (fabric_doc_missing_revs.erl), maybe one the write has not
    reached yet."""
    http = couch.session()
    db = unique("db")
    http.put(f"{couch.url}/{db}", params=ONE_COPY)
    rev = http.put(f"{couch.url}/{db}/d", json={"a": 1}).json()["rev"]
    diff = http.post(f"{couch.url}/{db}/_revs_diff", json={"d": [rev, "2-abc"], "e": ["1-x"]}).json()
    assert diff == {"d": {"missing": ["2-abc"], "possible_ancestors": [rev]}, "e": {"missing": ["1-x"]}}


def test_attachment_upload_then_stub_then_delete(couch, unique):
    """chttpd_db:db_attachment_req/3: PUT raw bytes makes a new revision (201 + Location); the doc shows a stub
    with `digest` md5-base64 and `revpos` (the MD5 of the bytes: a binary type is stored as given, see
    test_text_like_attachments_are_stored_gzip_encoded); DELETE with the rev removes it."""
    http = couch.session()
    db = unique("db")
    http.put(f"{couch.url}/{db}")
    rev = http.put(f"{couch.url}/{db}/d", json={"a": 1}).json()["rev"]
    put = http.put(f"{couch.url}/{db}/d/note.bin", params={"rev": rev}, data=b"hello",
                   headers={"Content-Type": "application/octet-stream"})
    assert put.status_code == 201
    rev2 = put.json()["rev"]
    assert rev2.startswith("2-")
    doc = http.get(f"{couch.url}/{db}/d").json()
    assert doc["_attachments"]["note.bin"] == {"content_type": "application/octet-stream", "revpos": 2,
                                               "digest": "md5-XUFAKrxLKna5cZ2REBfFkg==", "length": 5, "stub": True}
    body = http.get(f"{couch.url}/{db}/d/note.bin")
    assert body.content == b"hello" and body.headers["Content-Type"] == "application/octet-stream"
    gone = http.delete(f"{couch.url}/{db}/d/note.bin", params={"rev": rev2})
    assert gone.status_code == 200
    assert "_attachments" not in http.get(f"{couch.url}/{db}/d").json()


def test_sim_server_fixture_serves_on_a_free_port():
    """The fixture API other suites build on: url, admin, faults, stop()."""
    with SimServer(admin=("root", "pw"), config={"chttpd_auth": {"iterations": "1000"}}) as sim:
        assert sim.url.startswith("http://127.0.0.1:")
        assert requests.get(sim.url + "/_session", auth=sim.admin).json()["userCtx"]["roles"] == ["_admin"]
        handle = sim.faults.inject(path=r"^/_up", status=503, count=1)
        assert requests.get(sim.url + "/_up").status_code == 503
        assert requests.get(sim.url + "/_up").status_code == 200
        handle.remove()


def test_document_over_max_document_size_is_413(couch, unique):
    """[couchdb] max_document_size (default 8000000 bytes, default.ini): a bigger body is refused with 413
    document_too_large naming the doc id (chttpd:error_info({request_entity_too_large, DocId}))."""
    if couch.sim is None:
        pytest.skip("lowering max_document_size on a shared real server would disturb other clients")
    http = couch.session()
    db = unique("db")
    http.put(f"{couch.url}/{db}")
    http.put(f"{couch.url}/_node/_local/_config/couchdb/max_document_size", json="100")
    answer = http.put(f"{couch.url}/{db}/big", json={"text": "x" * 200})
    assert (answer.status_code, answer.json()) == (413, {"error": "document_too_large", "reason": "big"})
    assert http.put(f"{couch.url}/{db}/small", json={"text": "x"}).status_code == 201


def test_partitioned_database_needs_partition_ids(couch, unique):
    """chttpd_db:create_db_req/2 with ?partitioned=true records props.partitioned; couch_partition:validate_docid/1
    then refuses ids without a `partition:` prefix (400 illegal_docid); design docs are exempt."""
    http = couch.session()
    db = f"{couch.url}/{unique('db')}"
    assert http.put(db, params={"partitioned": "true"}).status_code == 201
    assert http.get(db).json()["props"] == {"partitioned": True}
    refused = http.put(f"{db}/plain", json={})
    assert (refused.status_code, refused.json()) == (
        400, {"error": "illegal_docid", "reason": "Doc id must be of form partition:id"})
    assert http.put(f"{db}/sensor-1:reading-1", json={}).status_code == 201
    assert http.put(f"{db}/_design/app", json={"language": "query"}).status_code == 201


def test_deleting_a_database_ends_its_continuous_feed(couch, unique):
    """A continuous _changes feed does not outlive its database: once it is deleted the stream ends (no
    heartbeat-only idling until the client gives up). A real cluster ends it abruptly: the coordinator writes
    a whole 404 response into the chunked body it had started, which a client reads as a broken stream."""
    http = couch.session()
    db = f"{couch.url}/{unique('db')}"
    http.put(db)
    feed = http.get(f"{db}/_changes", params={"feed": "continuous", "heartbeat": "200"}, stream=True, timeout=10)
    started = time.monotonic()
    with requests.Session() as other:
        other.auth = couch.admin
        assert other.delete(db).status_code == 200
    rows = []
    with contextlib.suppress(requests.exceptions.ChunkedEncodingError):
        rows += [line for line in feed.iter_lines() if line.strip()]
    assert time.monotonic() - started < 5
    assert not any(b'"id"' in row for row in rows)


def test_bulk_get_latest_answers_the_newest_leaf_of_a_superseded_rev(couch, unique):
    """chttpd_db:db_req(_bulk_get) with latest=true (what the 3.x replicator sends): a rev that has been
    updated since is answered with the newest leaf descending from it, with its `_revisions` chain."""
    http = couch.session()
    db = f"{couch.url}/{unique('db')}"
    http.put(db)
    first = http.put(f"{db}/d", json={"v": 1}).json()["rev"]
    second = http.put(f"{db}/d", json={"v": 2, "_rev": first}).json()["rev"]
    answer = http.post(f"{db}/_bulk_get", params={"latest": "true", "revs": "true"},
                       json={"docs": [{"id": "d", "rev": first}]}).json()
    doc = answer["results"][0]["docs"][0]["ok"]
    assert (doc["_rev"], doc["v"]) == (second, 2)
    assert doc["_revisions"] == {"start": 2, "ids": [second.split("-")[1], first.split("-")[1]]}


def test_find_in_an_open_users_db_returns_only_the_readers_own_doc(couch, unique):
    """couch_users_db:after_doc_read/2 hides other users' docs from non-admins even where `_users` is readable
    by members: a `_find` over it by a user yields her own doc only."""
    if couch.real:
        pytest.skip("opening _users on a shared real server would expose its users")
    http = couch.session()
    http.put(f"{couch.url}/_node/_local/_config/couchdb/users_db_security_editable", json="true")
    assert http.put(f"{couch.url}/_users/_security", json={}).status_code == 200
    names = [unique("u"), unique("u")]
    for name in names:
        doc = {"name": name, "type": "user", "roles": [], "password": "pw"}
        assert http.put(f"{couch.url}/_users/org.couchdb.user:{name}", json=doc).status_code == 201
    found = requests.post(f"{couch.url}/_users/_find", auth=(names[0], "pw"),
                          json={"selector": {"type": "user"}, "fields": ["name"]})
    assert found.status_code == 200
    assert found.json()["docs"] == [{"name": names[0]}]


def test_open_revs_without_json_accept_answers_multipart(couch, unique):
    """chttpd_db:db_doc_req GET with open_revs: JSON when the client accepts application/json, otherwise
    multipart/mixed with one application/json part per revision and `error="true"` for a missing one
    (what CouchDB's replicator reads)."""
    http = couch.session()
    db = f"{couch.url}/{unique('db')}"
    http.put(db)
    rev = http.put(f"{db}/d", json={"v": 1}).json()["rev"]
    wanted = json.dumps([rev, "9-" + "a" * 32])
    as_json = http.get(f"{db}/d", params={"open_revs": wanted}, headers={"Accept": "application/json"})
    assert as_json.json() == [{"ok": {"_id": "d", "_rev": rev, "v": 1}}, {"missing": "9-" + "a" * 32}]
    multipart = http.get(f"{db}/d", params={"open_revs": wanted}, headers={"Accept": "multipart/mixed"})
    assert multipart.headers["Content-Type"].startswith("multipart/mixed; boundary=")
    message = email.message_from_bytes(b"Content-Type: " + multipart.headers["Content-Type"].encode() + b"\r\n\r\n"
                                       + multipart.content)
    parts = [(part.get_content_type(), part.get_param("error"), json.loads(part.get_payload()))
             for part in message.get_payload()]
    assert parts == [("application/json", None, {"_id": "d", "_rev": rev, "v": 1}),
                     ("application/json", "true", {"missing": "9-" + "a" * 32})]
