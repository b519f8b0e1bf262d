"""Documents: revisions and rev trees, conflicts, new_edits=false, _local docs, _bulk_docs, _bulk_get, _revs_diff,
attachments, _find, ETag/Location headers.

Sources: src/chttpd/src/chttpd_db.erl (db_doc_req, send_doc, update_doc, db_attachment_req, bulk_get, revs_diff);
couch_doc.erl, couch_key_tree.erl; mango; CouchDB docs API -> Documents; recorded exchanges.
"""

import base64
import gzip
import hashlib
import re

import pytest
import requests

from behaviour_fixtures import answer, db_url

REV = re.compile(r"(\d+)-[0-9a-f]{32}")


def put(server, db, doc_id, body, **params):
    response = server.admin.put(db_url(db, doc_id), json=body, params=params or None)
    assert response.status_code in (201, 202), response.text
    return response.json()["rev"]


def test_put_answers_201_with_etag_and_location(server, db):
    """chttpd_db:update_doc: 201 {"ok","id","rev"}, ETag "\"<rev>\"" and Location naming the doc; revs are N-<32 hex md5>."""
    response = server.admin.put(db_url(db, "doc1"), json={"a": 1})
    assert response.status_code == 201
    body = response.json()
    assert (body["ok"], body["id"]) == (True, "doc1")
    assert REV.fullmatch(body["rev"]).group(1) == "1"
    assert response.headers["ETag"] == f'"{body["rev"]}"'
    assert response.headers["Location"].endswith(f"/{db}/doc1")


def test_get_sends_etag_and_honours_if_none_match(server, db):
    """chttpd_db:db_doc_req GET -> send_doc: ETag is the quoted rev; If-None-Match with it -> 304 without a body."""
    rev = put(server, db, "doc1", {"a": 1})
    response = server.admin.get(db_url(db, "doc1"))
    assert response.headers["ETag"] == f'"{rev}"'
    assert response.headers["Content-Type"] == "application/json"
    cached = server.admin.get(db_url(db, "doc1"), headers={"If-None-Match": f'"{rev}"'})
    assert (cached.status_code, cached.content) == (304, b"")


def test_same_content_gives_same_rev_in_different_databases(server, new_db):
    """couch_db:new_revid: the rev id is an md5 over the doc's content and ancestry, so it is deterministic."""
    a, b = new_db(), new_db()
    assert put(server, a, "same", {"x": [1, 2]}) == put(server, b, "same", {"x": [1, 2]})


def test_update_needs_the_current_rev_via_body_query_or_if_match(server, db):
    """chttpd_db:extract_header_rev / couch_doc: the rev comes from _rev, ?rev= or If-Match; a stale one -> 409 conflict."""
    rev1 = put(server, db, "d", {"v": 1})
    rev2 = put(server, db, "d", {"v": 2, "_rev": rev1})
    rev3 = put(server, db, "d", {"v": 3}, rev=rev2)
    response = server.admin.put(db_url(db, "d"), json={"v": 4}, headers={"If-Match": f'"{rev3}"'})
    assert response.status_code == 201 and response.json()["rev"].startswith("4-")
    stale = server.admin.put(db_url(db, "d"), json={"v": 5, "_rev": rev1})
    assert answer(stale) == (409, {"error": "conflict", "reason": "Document update conflict."})


def test_rev_and_etag_disagreeing_is_400(server, db):
    """chttpd_db:couch_doc_from_req passes the body's _rev to extract_header_rev; when If-Match differs ->
    bad_request "Document rev and etag have different values" (no ?rev= was sent)."""
    rev = put(server, db, "d", {})
    response = server.admin.put(db_url(db, "d"), json={"_rev": rev}, headers={"If-Match": '"1-00000000000000000000000000000000"'})
    assert answer(response) == (400, {"error": "bad_request", "reason": "Document rev and etag have different values"})


def test_revs_shows_the_history(server, db):
    """chttpd_db:parse_doc_query revs=true -> _revisions {start, ids newest first}; revs_info=true lists each rev
    with a status, the current one "available"."""
    rev1 = put(server, db, "d", {"v": 1})
    rev2 = put(server, db, "d", {"v": 2, "_rev": rev1})
    doc = server.admin.get(db_url(db, "d"), params={"revs": "true"}).json()
    assert doc["_revisions"] == {"start": 2, "ids": [rev2.split("-")[1], rev1.split("-")[1]]}
    info = server.admin.get(db_url(db, "d"), params={"revs_info": "true"}).json()["_revs_info"]
    assert [entry["rev"] for entry in info] == [rev2, rev1]
    assert info[0]["status"] == "available"


def test_old_revisions_stay_readable_until_compaction(server, db):
    """couch_db_updater keeps non-leaf revision bodies until compaction (couch_db_compactor drops them): before
    compacting, ?rev=<old>, revs_info ("available") and _bulk_get by old rev all return the old body."""
    rev1 = put(server, db, "d", {"v": 1})
    put(server, db, "d", {"v": 2, "_rev": rev1})
    old = server.admin.get(db_url(db, "d"), params={"rev": rev1}).json()
    assert (old.get("_rev"), old.get("v")) == (rev1, 1)
    info = server.admin.get(db_url(db, "d"), params={"revs_info": "true"}).json()["_revs_info"]
    assert info[1] == {"rev": rev1, "status": "available"}
    result = server.admin.post(db_url(db, "_bulk_get"), json={"docs": [{"id": "d", "rev": rev1}]}).json()
    assert result["results"][0]["docs"][0]["ok"]["v"] == 1


def test_deleted_doc_reads_404_deleted_and_can_be_recreated(server, db):
    """couch_db:open_doc -> {not_found, deleted}; reading the tombstone by rev shows _deleted; a PUT without rev
    on a deleted doc extends the deleted branch (recorded exchanges "delete doc2", "get deleted doc2")."""
    rev1 = put(server, db, "d", {"v": 1})
    deleted = server.admin.delete(db_url(db, "d"), params={"rev": rev1})
    assert deleted.status_code == 200
    rev2 = deleted.json()["rev"]
    assert answer(server.admin.get(db_url(db, "d"))) == (404, {"error": "not_found", "reason": "deleted"})
    assert server.admin.get(db_url(db, "d"), params={"rev": rev2}).json() == {"_id": "d", "_rev": rev2, "_deleted": True}
    again = server.admin.put(db_url(db, "d"), json={"v": 3})
    assert again.status_code == 201 and again.json()["rev"].startswith("3-")


def test_new_edits_false_stores_given_revs_and_makes_conflicts(server, db):
    """_bulk_docs new_edits=false (replication path, couch_db update_docs replicated_changes): revs stored as given,
    answer [] ; two leaves -> the winner is the higher rev, the other listed in _conflicts (conflicts=true),
    open_revs=all returns both leaves."""
    a = {"_id": "c", "_rev": "1-" + "a" * 32, "side": "a"}
    b = {"_id": "c", "_rev": "1-" + "b" * 32, "side": "b"}
    response = server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [a, b], "new_edits": False})
    assert answer(response) == (201, [])
    doc = server.admin.get(db_url(db, "c"), params={"conflicts": "true"}).json()
    assert (doc["_rev"], doc["side"], doc["_conflicts"]) == (b["_rev"], "b", [a["_rev"]])
    leaves = server.admin.get(db_url(db, "c"), params={"open_revs": "all"}, headers={"Accept": "application/json"}).json()
    assert sorted(item["ok"]["_rev"] for item in leaves) == [a["_rev"], b["_rev"]]


def test_new_edits_false_with_revisions_builds_a_branch(server, db):
    """couch_doc:from_json_obj reads _revisions {start, ids}: the whole ancestry is grafted into the rev tree."""
    ids = ["c" * 32, "b" * 32, "a" * 32]
    doc = {"_id": "r", "_rev": "3-" + ids[0], "_revisions": {"start": 3, "ids": ids}, "v": 3}
    assert server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [doc], "new_edits": False}).status_code == 201
    stored = server.admin.get(db_url(db, "r"), params={"revs": "true"}).json()
    assert stored["_revisions"] == {"start": 3, "ids": ids}


def test_conflict_resolution_by_deleting_the_loser(server, db):
    """Deleting the losing leaf leaves one live leaf: GET ?conflicts=true has no _conflicts (CouchDB docs, Replication -> Conflicts)."""
    a = {"_id": "c", "_rev": "1-" + "a" * 32}
    b = {"_id": "c", "_rev": "1-" + "b" * 32}
    server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [a, b], "new_edits": False})
    assert server.admin.delete(db_url(db, "c"), params={"rev": a["_rev"]}).status_code == 200
    doc = server.admin.get(db_url(db, "c"), params={"conflicts": "true"}).json()
    assert doc["_rev"] == b["_rev"] and "_conflicts" not in doc


def branches(server, db, doc_id: str) -> tuple[str, list[str]]:
    """Document `doc_id` with five leaves, grafted as the replicator writes them (`_bulk_docs` new_edits=false
    with `_revisions`): 3-c... (the winner: the longest branch, couch_doc:to_doc_info), 2-b... (on the first
    revision), 2-a... and 1-8... (roots of their own) and the deleted 2-d... Returns the winner and the live
    losing revisions."""
    first = put(server, db, doc_id, {"v": 1}).split("-", 1)[1]
    chains = {"3-" + "c" * 32: ["c" * 32, "e" * 32, "f" * 32], "2-" + "b" * 32: ["b" * 32, first],
              "2-" + "a" * 32: ["a" * 32, "9" * 32], "1-" + "8" * 32: ["8" * 32], "2-" + "d" * 32: ["d" * 32, first]}
    grafted = [{"_id": doc_id, "_rev": rev, "v": rev[2], "_revisions": {"start": int(rev[0]), "ids": ids},
                **({"_deleted": True} if rev[2] == "d" else {})} for rev, ids in chains.items()]
    response = server.admin.post(db_url(db, "_bulk_docs"), json={"docs": grafted, "new_edits": False})
    assert answer(response) == (201, [])
    return "3-" + "c" * 32, ["2-" + "b" * 32, "2-" + "a" * 32, "1-" + "8" * 32]


def test_all_docs_with_include_docs_and_conflicts_lists_the_losing_live_revisions(server, db):
    """`_all_docs?include_docs=true&conflicts=true`, GET and POST with `keys`: each included document as a GET
    with conflicts=true gives it (api/database/bulk-api.rst and api/document/common.rst `conflicts`; the doc is
    opened with the query's doc options, fabric_view_all_docs.erl): `_conflicts` only when it has some, the
    live losing leaves by generation then revision id, both descending (couch_doc:to_doc_info sorts the leaves
    so), never a deleted leaf; without `conflicts` no `_conflicts`."""
    winner, losing = branches(server, db, "split")
    put(server, db, "whole", {"v": 1})
    params = {"include_docs": "true", "conflicts": "true"}
    listed = server.admin.get(db_url(db, "_all_docs"), params=params).json()["rows"]
    keyed = server.admin.post(db_url(db, "_all_docs"), params=params,
                              json={"keys": ["split", "whole", "missing"]}).json()["rows"]
    for rows in (listed, keyed[:2]):
        docs = {row["id"]: row["doc"] for row in rows}
        assert (docs["split"]["_rev"], docs["split"]["_conflicts"], docs["split"]["v"]) == (winner, losing, "c")
        assert "_conflicts" not in docs["whole"] and "_deleted_conflicts" not in docs["split"]
    assert keyed[2] == {"key": "missing", "error": "not_found"}
    plain = server.admin.get(db_url(db, "_all_docs"), params={"include_docs": "true"}).json()["rows"]
    assert all("_conflicts" not in row["doc"] for row in plain)


def test_one_bulk_docs_updates_the_winner_and_deletes_the_losers_row_by_row_in_order(server, db):
    """The resolution of CouchDB's docs (replication/conflicts.rst: update one revision and delete the other
    revisions in a single POST to `_bulk_docs`): one row per document in the order sent (chttpd_db.erl answers
    the documents' results in order), though they share an `_id`; a revision that is no longer a leaf answers
    `conflict`; what is left is one live leaf, the update (`open_revs=all`: the others are deleted leaves)."""
    winner, losing = branches(server, db, "split")
    docs = [{"_id": "split", "_rev": winner, "v": "merged"},
            {"_id": "split", "_rev": "2-" + "e" * 32, "_deleted": True},  # an ancestor of the winner, not a leaf
            *({"_id": "split", "_rev": rev, "_deleted": True} for rev in losing)]
    rows = server.admin.post(db_url(db, "_bulk_docs"), json={"docs": docs}).json()
    assert [(row["id"], row.get("error"), "rev" in row) for row in rows] == \
        [("split", None, True), ("split", "conflict", False)] + [("split", None, True)] * len(losing)
    assert rows[0]["rev"].startswith("4-")
    leaves = server.admin.get(db_url(db, "split"), params={"open_revs": "all"},
                              headers={"Accept": "application/json"}).json()
    live = [leaf["ok"] for leaf in leaves if not leaf["ok"].get("_deleted")]
    assert [(doc["_rev"], doc["v"]) for doc in live] == [(rows[0]["rev"], "merged")]
    doc = server.admin.get(db_url(db, "split"), params={"conflicts": "true"}).json()
    assert doc["_rev"] == rows[0]["rev"] and "_conflicts" not in doc


def test_local_docs_have_0_n_revs_and_stay_out_of_listings(server, db):
    """_local docs (couch_db local docs): revs "0-1", "0-2"..., never in _all_docs or _changes, DELETE with rev
    (recorded exchanges "local doc put", "local docs not in all_docs")."""
    first = server.admin.put(db_url(db, "_local", "cp"), json={"seq": 1})
    assert answer(first) == (201, {"ok": True, "id": "_local/cp", "rev": "0-1"})
    second = server.admin.put(db_url(db, "_local", "cp"), json={"seq": 2, "_rev": "0-1"})
    assert second.json()["rev"] == "0-2"
    assert server.admin.get(db_url(db, "_local", "cp")).json() == {"_id": "_local/cp", "_rev": "0-2", "seq": 2}
    assert server.admin.get(db_url(db, "_all_docs")).json()["rows"] == []
    assert server.admin.get(db_url(db, "_changes")).json()["results"] == []
    assert server.admin.delete(db_url(db, "_local", "cp"), params={"rev": "0-2"}).status_code == 200
    assert server.admin.get(db_url(db, "_local", "cp")).status_code == 404


def test_local_docs_have_no_revision_check(server, db):
    """A `_local` doc is written whatever rev the write names, and deleted without one: couch_db_updater.erl
    `increment_local_doc_revs` makes the new rev `0-(N+1)` from the `0-N` given (`0-1` from none, `0-0` for a
    delete, stored or not) and compares nothing; a rev not of the form `0-N` is a 500 "Invalid rev format"."""
    assert server.admin.put(db_url(db, "_local", "r"), json={"v": 1}).json()["rev"] == "0-1"
    assert answer(server.admin.put(db_url(db, "_local", "r"), json={"v": 2})) == (
        201, {"ok": True, "id": "_local/r", "rev": "0-1"})
    assert server.admin.put(db_url(db, "_local", "r"), json={"v": 3, "_rev": "0-7"}).json()["rev"] == "0-8"
    assert server.admin.get(db_url(db, "_local", "r")).json() == {"_id": "_local/r", "_rev": "0-8", "v": 3}
    assert answer(server.admin.put(db_url(db, "_local", "r"), json={"_rev": "2-abc"})) == (
        500, {"error": "error", "reason": "Invalid rev format"})
    bulk = server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [
        {"_id": "_local/r", "v": 4}, {"_id": "_local/gone", "_deleted": True}]})
    assert bulk.json() == [{"ok": True, "id": "_local/r", "rev": "0-1"}, {"ok": True, "id": "_local/gone", "rev": "0-0"}]
    assert answer(server.admin.delete(db_url(db, "_local", "r"))) == (200, {"ok": True, "id": "_local/r", "rev": "0-0"})
    assert server.admin.delete(db_url(db, "_local", "r")).status_code == 404


def test_local_docs_lists_a_key_range_with_the_documents(server, db):
    """`GET /{db}/_local_docs` takes `_all_docs`' key options (api/local.rst): a start/end key range of ids,
    `include_docs`, `keys`; `total_rows` and `offset` are null."""
    for name in ("a.1", "a.2", "b.1"):
        server.admin.put(db_url(db, "_local", name), json={"n": name})
    ranged = server.admin.get(db_url(db, "_local_docs"), params={
        "include_docs": "true", "start_key": '"_local/a."', "end_key": '"_local/a.\ufff0"'}).json()
    assert ranged == {"total_rows": None, "offset": None, "rows": [
        {"id": f"_local/{n}", "key": f"_local/{n}", "value": {"rev": "0-1"},
         "doc": {"_id": f"_local/{n}", "_rev": "0-1", "n": n}} for n in ("a.1", "a.2")]}
    keyed = server.admin.post(db_url(db, "_local_docs"), json={"keys": ["_local/none", "_local/b.1"]}).json()
    assert keyed["rows"] == [{"key": "_local/none", "error": "not_found"},
                             {"id": "_local/b.1", "key": "_local/b.1", "value": {"rev": "0-1"}}]


def test_bulk_docs_reports_per_doc_results(server, db):
    """chttpd_db _bulk_docs: 201 and one result per doc in order; a stale rev is a per-doc conflict (recorded exchange "bulk docs")."""
    rev = put(server, db, "x", {})
    response = server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [
        {"_id": "y"}, {"_id": "x"}, {"_id": "x", "_rev": rev, "_deleted": True}]})
    assert response.status_code == 201
    results = response.json()
    assert results[0]["ok"] is True and results[0]["id"] == "y"
    assert results[1] == {"id": "x", "error": "conflict", "reason": "Document update conflict."}
    assert results[2]["ok"] is True and results[2]["rev"].startswith("2-")


def test_bulk_get_returns_requested_revs_and_errors(server, db):
    """chttpd_db:db_req _bulk_get: {"results": [{"id", "docs": [{"ok": doc} | {"error": {...}}]}]}; revs=true adds
    _revisions (recorded exchange "bulk get")."""
    rev1 = put(server, db, "g", {"v": 1})
    rev2 = put(server, db, "g", {"v": 2, "_rev": rev1})
    response = server.admin.post(db_url(db, "_bulk_get"), params={"revs": "true"},
                                 json={"docs": [{"id": "g", "rev": rev2}, {"id": "g"}, {"id": "nope"}]})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == ["g", "g", "nope"]
    assert results[0]["docs"][0]["ok"]["v"] == 2
    latest = results[1]["docs"][0]["ok"]
    assert (latest["_rev"], latest["_revisions"]["start"]) == (rev2, 2)
    error = results[2]["docs"][0]["error"]
    assert (error["id"], error["error"], error["reason"]) == ("nope", "not_found", "missing")


def test_revs_diff_lists_missing_revs_only(server, db):
    """chttpd_db:db_req _revs_diff via fabric_doc_missing_revs: force_reply(_, {[], _}, Acc) -> Acc, so docs whose revs
    are all known are left out; missing ones listed, with possible_ancestors when the doc exists."""
    rev1 = put(server, db, "have", {})
    known = put(server, db, "known", {})
    unknown = "2-" + "f" * 32
    response = server.admin.post(db_url(db, "_revs_diff"), json={"have": [rev1, unknown], "new": ["1-" + "e" * 32],
                                                                  "known": [known]})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"have", "new"}
    assert body["have"]["missing"] == [unknown]
    assert body["have"]["possible_ancestors"] == [rev1]
    assert body["new"] == {"missing": ["1-" + "e" * 32]}


def test_missing_revs_endpoint(server, db):
    """chttpd_db:db_req _missing_revs: {"missing_revs": {id: [revs]}} (replication protocol, pre-2.x peers)."""
    rev1 = put(server, db, "have", {})
    unknown = "1-" + "d" * 32
    body = server.admin.post(db_url(db, "_missing_revs"), json={"have": [rev1, unknown]}).json()
    assert body == {"missing_revs": {"have": [unknown]}}


def md5_digest(data: bytes) -> str:
    return "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode()


def test_inline_attachment_stub_and_digest(server, db):
    """couch_att: inline base64 data stored; GET shows a stub with content_type, length, revpos and digest
    "md5-<base64 md5>"; ?attachments=true inlines the data again (recorded exchanges "inline attachment", "attachment
    stub"). A binary type is stored as given, so the digest is the MD5 of its bytes."""
    data = b"\x89PNG\r\n\x1a\n not really an image"
    put(server, db, "a", {"_attachments": {"i.png": {"content_type": "image/png", "data": base64.b64encode(data).decode()}}})
    stub = server.admin.get(db_url(db, "a")).json()["_attachments"]["i.png"]
    assert stub == {"content_type": "image/png", "revpos": 1, "digest": md5_digest(data), "length": len(data),
                    "stub": True}
    info = server.admin.get(db_url(db, "a"), params={"att_encoding_info": "true"}).json()["_attachments"]["i.png"]
    assert "encoding" not in info and "encoded_length" not in info
    full = server.admin.get(db_url(db, "a"), params={"attachments": "true"}).json()["_attachments"]["i.png"]
    assert base64.b64decode(full["data"]) == data


def gzip_stored(server, path: str) -> tuple[requests.Response, bytes]:
    """The attachment as a client that accepts gzip gets it, and the bytes on the wire (not decoded)."""
    response = server.admin.get(path, headers={"Accept-Encoding": "gzip"}, stream=True)
    return response, response.raw.read(decode_content=False)


@pytest.mark.parametrize("content_type", ["text/html", "text/plain; charset=utf-8", "application/json",
                                          "application/javascript", "application/xml"])
def test_text_like_attachments_are_stored_gzip_encoded(server, db, content_type):
    """couch_db:with_stream/3 gzips an attachment whose type matches `[attachments] compressible_types` (default
    `text/*, application/javascript, application/json, application/xml`, rel/overlay/etc/default.ini) and
    records the MD5 of the bytes written (couch_stream): the stub's `digest` is the MD5 of the gzip stream, not
    of the file, and `length` stays the identity length; `?att_encoding_info=true` adds `encoding: gzip` and
    `encoded_length` (couch_att:to_json/4). GET decodes for a client that does not accept gzip and sends the
    stored stream with `Content-Encoding: gzip` to one that does (chttpd_db:db_attachment_req/4)."""
    data = b"<h1>hello</h1>\n" * 20
    put(server, db, "page", {"_attachments": {"f": {"content_type": content_type,
                                                    "data": base64.b64encode(data).decode()}}})
    stub = server.admin.get(db_url(db, "page")).json()["_attachments"]["f"]
    assert (stub["length"], stub["stub"]) == (len(data), True)
    assert stub["digest"] != md5_digest(data)
    info = server.admin.get(db_url(db, "page"), params={"att_encoding_info": "true"}).json()["_attachments"]["f"]
    assert info["encoding"] == "gzip"
    response, stored = gzip_stored(server, db_url(db, "page", "f"))
    assert response.headers["Content-Encoding"] == "gzip"
    assert (len(stored), md5_digest(stored)) == (info["encoded_length"], stub["digest"])
    assert gzip.decompress(stored) == data
    plain = server.admin.get(db_url(db, "page", "f"), headers={"Accept-Encoding": "identity"})
    assert plain.content == data and "Content-Encoding" not in plain.headers
    assert plain.headers["ETag"] == '"' + stub["digest"].removeprefix("md5-") + '"'
    full = server.admin.get(db_url(db, "page"), params={"attachments": "true"}).json()["_attachments"]["f"]
    assert base64.b64decode(full["data"]) == data


def test_attachments_are_served_sandboxed_unless_csp_says_otherwise(server, db, set_config):
    """chttpd_db:db_attachment_req/4 adds chttpd_util:maybe_add_csp_header("attachments", ..., "sandbox"):
    `Content-Security-Policy: sandbox` unless `[csp] attachments_enable = false`; `attachments_header_value`
    replaces the policy (rel/overlay/etc/default.ini, [csp]). A page served from a design document runs its
    scripts only on a server configured so."""
    put(server, db, "p", {"_attachments": {"index.html": {"content_type": "text/html",
                                                          "data": base64.b64encode(b"<p>hi</p>").decode()}}})
    path = db_url(db, "p", "index.html")
    assert server.admin.get(path).headers["Content-Security-Policy"] == "sandbox"
    set_config("csp", "attachments_header_value", "sandbox allow-scripts")
    assert server.admin.get(path).headers["Content-Security-Policy"] == "sandbox allow-scripts"
    set_config("csp", "attachments_enable", "false")
    assert "Content-Security-Policy" not in server.admin.get(path).headers


def test_compression_level_zero_stores_text_as_given(server, db, set_config):
    """`[attachments] compression_level = 0` disables compression (docs: config/misc.rst; couch_stream:gzip_init/1
    keeps identity below level 1), so a text attachment's digest is the MD5 of its bytes again. Attachments
    stored before keep their encoding."""
    set_config("attachments", "compression_level", "0")
    data = b"plain text, not compressed"
    put(server, db, "t", {"_attachments": {"t.txt": {"content_type": "text/plain",
                                                     "data": base64.b64encode(data).decode()}}})
    stub = server.admin.get(db_url(db, "t"), params={"att_encoding_info": "true"}).json()["_attachments"]["t.txt"]
    assert stub == {"content_type": "text/plain", "revpos": 1, "digest": md5_digest(data), "length": len(data),
                    "stub": True}


def test_standalone_attachment_put_get_delete(server, db):
    """chttpd_db:db_attachment_req: PUT /db/doc/att?rev= with a Content-Type creates a new rev; GET returns the bytes
    with that Content-Type and ETag "\"<base64 md5>\""; DELETE ?rev= removes it."""
    rev1 = put(server, db, "doc", {"v": 1})
    data = b"\x00\x01binary\xff"
    response = server.admin.put(db_url(db, "doc", "blob.bin"), params={"rev": rev1}, data=data,
                                headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201
    rev2 = response.json()["rev"]
    assert rev2.startswith("2-")
    fetched = server.admin.get(db_url(db, "doc", "blob.bin"))
    assert (fetched.status_code, fetched.content) == (200, data)
    assert fetched.headers["Content-Type"] == "application/octet-stream"
    assert fetched.headers["ETag"] == '"' + base64.b64encode(hashlib.md5(data).digest()).decode() + '"'
    assert server.admin.get(db_url(db, "doc")).json()["v"] == 1
    gone = server.admin.delete(db_url(db, "doc", "blob.bin"), params={"rev": rev2})
    assert gone.status_code == 200
    assert answer(server.admin.get(db_url(db, "doc", "blob.bin"))) == (404, {"error": "not_found", "reason": "Document is missing attachment"})


def test_attachment_names_may_not_start_with_underscore(server, db):
    """chttpd_db:validate_attachment_name: "_x" -> 400 "Attachment name '_x' starts with prohibited character '_'"."""
    rev = put(server, db, "doc", {})
    response = server.admin.put(db_url(db, "doc", "_x"), params={"rev": rev}, data=b"x", headers={"Content-Type": "text/plain"})
    assert answer(response) == (400, {"error": "bad_request", "reason": "Attachment name '_x' starts with prohibited character '_'"})


def test_find_with_operators_fields_and_limit(server, db):
    """mango _find: selector with $gt/$in/$exists, fields projection, limit; without an index the answer carries
    CouchDB's warning (recorded exchange "find")."""
    server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [
        {"_id": "a", "n": 1, "tag": "x"}, {"_id": "b", "n": 2, "tag": "y"}, {"_id": "c", "n": 3, "tag": "x"},
        {"_id": "d", "tag": "x"}]})
    body = server.admin.post(db_url(db, "_find"), json={"selector": {"n": {"$gt": 1}, "tag": {"$in": ["x"]}},
                                                        "fields": ["_id", "n"]}).json()
    assert body["docs"] == [{"_id": "c", "n": 3}]
    assert body["warning"] == "No matching index found, create an index to optimize query time."
    missing = server.admin.post(db_url(db, "_find"), json={"selector": {"n": {"$exists": False}}, "fields": ["_id"]}).json()
    assert missing["docs"] == [{"_id": "d"}]
    limited = server.admin.post(db_url(db, "_find"), json={"selector": {"tag": "x"}, "limit": 2}).json()
    assert len(limited["docs"]) == 2


def test_doc_ids_with_slashes_round_trip(server, db):
    """chttpd_db: a doc id holding "/" travels escaped (%2F) and comes back intact."""
    put(server, db, "a/b", {"v": 1})
    assert server.admin.get(db_url(db, "a/b")).json()["_id"] == "a/b"


def test_design_doc_urls(server, db):
    """chttpd_db: /db/_design/NAME addresses design docs; they list in _design_docs, not as plain ids with %2F."""
    assert server.admin.put(db_url(db, "_design", "app"), json={"language": "javascript"}).status_code == 201
    assert server.admin.get(db_url(db, "_design", "app")).json()["_id"] == "_design/app"
    rows = server.admin.get(db_url(db, "_design_docs")).json()["rows"]
    assert [row["id"] for row in rows] == ["_design/app"]


def test_head_doc_sends_the_etag_without_a_body(server, db):
    """chttpd_db:db_doc_req HEAD answers like GET without the body: the ETag is the quoted current rev."""
    rev = put(server, db, "h", {"v": 1})
    response = server.admin.head(db_url(db, "h"))
    assert (response.status_code, response.headers["ETag"], response.content) == (200, f'"{rev}"', b"")
    assert server.admin.head(db_url(db, "nope")).status_code == 404


def test_all_docs_design_range_and_keys(server, db):
    """_all_docs (couch_mrview all_docs): startkey/endkey select the _design/ range; key= selects one row;
    include_docs adds bodies; total_rows counts design docs too (recorded exchanges "all_docs *")."""
    server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [
        {"_id": "_design/a"}, {"_id": "_design/b"}, {"_id": "plain", "v": 1}]})
    rows = server.admin.get(db_url(db, "_all_docs"), params={"startkey": '"_design/"', "endkey": '"_design0"'}).json()
    assert [row["id"] for row in rows["rows"]] == ["_design/a", "_design/b"]
    assert rows["total_rows"] == 3
    one = server.admin.get(db_url(db, "_all_docs"), params={"key": '"plain"', "include_docs": "true"}).json()["rows"]
    assert [(row["id"], row["doc"]["v"]) for row in one] == [("plain", 1)]


def test_all_docs_hides_deleted_docs_but_keys_reports_them(server, db):
    """_all_docs lists live docs only; with keys, a deleted doc's row carries value.deleted = true (CouchDB docs,
    /{db}/_all_docs with keys)."""
    rev = put(server, db, "gone", {})
    server.admin.delete(db_url(db, "gone"), params={"rev": rev})
    assert server.admin.get(db_url(db, "_all_docs")).json()["rows"] == []
    row = server.admin.post(db_url(db, "_all_docs"), json={"keys": ["gone"]}).json()["rows"][0]
    assert row["id"] == "gone" and row["value"]["deleted"] is True


def test_bulk_docs_without_docs_is_400(server, db):
    """chttpd_db _bulk_docs: a body with no `docs` member -> 400 "POST body must include `docs` parameter."."""
    response = server.admin.post(db_url(db, "_bulk_docs"), json={"new_edits": True})
    assert answer(response) == (400, {"error": "bad_request", "reason": "POST body must include `docs` parameter."})


def test_delete_database_with_rev_is_refused(server, db):
    """chttpd_db:delete_db_req: DELETE /{db}?rev=... is almost certainly a mis-aimed document delete ->
    400 (CouchDB words it "?=rev", sic) and the database stays."""
    response = server.admin.delete(db_url(db), params={"rev": "1-abc"})
    assert answer(response) == (400, {
        "error": "bad_request",
        "reason": "You tried to DELETE a database with a ?=rev parameter. Did you mean to DELETE a document instead?"})
    assert server.admin.head(db_url(db)).status_code == 200


def test_open_revs_lists_found_and_missing_revs(server, db):
    """chttpd_db open_revs=[...] with Accept: application/json: one entry per asked rev, {"ok": doc} or
    {"missing": rev} (the replicator's fetch of specific leaves)."""
    rev = put(server, db, "o", {"v": 1})
    unknown = "1-" + "9" * 32
    response = server.admin.get(db_url(db, "o"), params={"open_revs": f'["{rev}","{unknown}"]'},
                                headers={"Accept": "application/json"})
    assert response.status_code == 200
    entries = response.json()
    assert {"missing": unknown} in entries
    assert [entry["ok"]["_rev"] for entry in entries if "ok" in entry] == [rev]


def test_ensure_full_commit_answers_201(server, db):
    """chttpd_db _ensure_full_commit (kept for replicators of older CouchDBs): 201 {"ok": true, "instance_start_time"}
    where the time is mem3:shard_creation_time/1, the suffix of the shard files: the database's creation time in
    seconds, as a string."""
    response = server.admin.post(db_url(db, "_ensure_full_commit"), json={})
    status, body = answer(response)
    assert (status, set(body), body["ok"]) == (201, {"ok", "instance_start_time"}, True)
    assert re.fullmatch(r"[1-9][0-9]{9}", body["instance_start_time"]), body
