"""_changes feeds: normal, longpoll, continuous; since, limit, include_docs, style=all_docs, filter=_doc_ids,
filter=_selector.

Sources: src/chttpd/src/chttpd_db.erl (handle_changes_req), couch_changes / fabric_view_changes, CouchDB docs
API -> Database -> /{db}/_changes; recorded exchanges "changes normal", "changes doc_ids filter".
"""

import json
import threading

from behaviour_fixtures import db_url


def changes(server, db, method="GET", body=None, **params):
    response = server.admin.request(method, db_url(db, "_changes"), params=params, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def fill(server, db, *ids):
    response = server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [{"_id": i, "n": k} for k, i in enumerate(ids)]})
    assert response.status_code == 201
    return {row["id"]: row["rev"] for row in response.json()}


def test_normal_feed_lists_each_doc_once_with_its_leaf_rev(server, db):
    """One row per document {seq, id, changes: [{rev}]}, plus last_seq and pending; a deleted doc says "deleted": true."""
    revs = fill(server, db, "a", "b")
    deleted = server.admin.delete(db_url(db, "a"), params={"rev": revs["a"]}).json()["rev"]
    body = changes(server, db)
    assert set(body) == {"results", "last_seq", "pending"}
    rows = {row["id"]: row for row in body["results"]}
    assert set(rows) == {"a", "b"}
    assert rows["b"]["changes"] == [{"rev": revs["b"]}]
    assert rows["a"]["changes"] == [{"rev": deleted}] and rows["a"]["deleted"] is True
    assert body["pending"] == 0


def test_since_last_seq_is_empty_until_something_changes(server, db):
    """since=<last_seq> returns only later changes; seqs are opaque strings (facts: compare for equality only)."""
    fill(server, db, "a")
    last = changes(server, db)["last_seq"]
    assert isinstance(last, str)
    assert changes(server, db, since=last)["results"] == []
    fill(server, db, "b")
    assert [row["id"] for row in changes(server, db, since=last)["results"]] == ["b"]


def test_since_now_starts_at_the_end(server, db):
    """since=now (CouchDB docs /{db}/_changes): no past changes."""
    fill(server, db, "a")
    assert changes(server, db, since="now")["results"] == []


def test_limit_and_pending(server, db):
    """limit=N returns N rows; `pending` says changes are left after last_seq (a count the recorded exchanges treat as
    opaque on a sharded database, so only "some" is asserted), and following last_seq returns the rest."""
    fill(server, db, "a", "b", "c")
    body = changes(server, db, limit=1)
    assert len(body["results"]) == 1
    assert body["pending"] > 0
    rest = changes(server, db, since=body["last_seq"])
    assert len(rest["results"]) == 2 and rest["pending"] == 0


def test_include_docs(server, db):
    """include_docs=true adds the winning revision's body as `doc`."""
    fill(server, db, "a")
    row = changes(server, db, include_docs="true")["results"][0]
    assert row["doc"]["_id"] == "a" and row["doc"]["n"] == 0 and row["doc"]["_rev"] == row["changes"][0]["rev"]


def test_style_all_docs_lists_every_leaf(server, db):
    """style=all_docs lists all leaf revisions of a conflicted doc; the default main_only lists the winner."""
    a, b = "1-" + "a" * 32, "1-" + "b" * 32
    server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [{"_id": "c", "_rev": a}, {"_id": "c", "_rev": b}],
                                                      "new_edits": False})
    assert changes(server, db)["results"][0]["changes"] == [{"rev": b}]
    leaves = changes(server, db, style="all_docs")["results"][0]["changes"]
    assert sorted(change["rev"] for change in leaves) == [a, b]


def test_filter_doc_ids_by_get_and_post(server, db):
    """filter=_doc_ids with doc_ids as a JSON query parameter (GET) or in the body (POST)."""
    fill(server, db, "a", "b", "c")
    by_get = changes(server, db, filter="_doc_ids", doc_ids=json.dumps(["c", "a"]))
    assert sorted(row["id"] for row in by_get["results"]) == ["a", "c"]
    by_post = changes(server, db, "POST", {"doc_ids": ["b"]}, filter="_doc_ids")
    assert [row["id"] for row in by_post["results"]] == ["b"]


def test_filter_selector(server, db):
    """filter=_selector with a Mango selector in the POST body."""
    fill(server, db, "a", "b", "c")
    body = changes(server, db, "POST", {"selector": {"n": {"$gte": 1}}}, filter="_selector")
    assert sorted(row["id"] for row in body["results"]) == ["b", "c"]


def test_filter_selector_matches_tombstones_and_each_leaf(server, db):
    """couch_changes:filter/5 (src/couch/src/couch_changes.erl) matches the selector against
    couch_doc:to_json_obj/2 of each revision the style lists: a deletion is {"_id", "_rev", "_deleted": true},
    so `_deleted` lets tombstones through, and with style=all_docs a row lists only the leaves that pass.
    `$beginsWith` (src/mango/src/mango_selector.erl, 3.4) compares a string's start; a non-string never matches.
    docs/couchdb.md, "Replication": the per-user fan-in's selector relies on all three."""
    fill(server, db, "ann:1", "ann:2", "bob:1", "ann")
    ann2 = server.admin.get(db_url(db, "ann:2")).json()["_rev"]
    gone = server.admin.delete(db_url(db, "ann:2"), params={"rev": ann2}).json()["rev"]
    mine, theirs = "1-" + "a" * 32, "1-" + "b" * 32
    server.admin.post(db_url(db, "_bulk_docs"), json={"new_edits": False, "docs": [
        {"_id": "ann:3", "_rev": mine, "owner": "ann"}, {"_id": "ann:3", "_rev": theirs, "owner": "bob"}]})
    selector = {"_id": {"$beginsWith": "ann:"}, "$or": [{"owner": "ann"}, {"n": {"$lt": 2}}, {"_deleted": True}]}
    rows = {row["id"]: row for row in changes(server, db, "POST", {"selector": selector}, filter="_selector",
                                               style="all_docs")["results"]}
    assert sorted(rows) == ["ann:1", "ann:2", "ann:3"]
    assert rows["ann:2"]["changes"] == [{"rev": gone}] and rows["ann:2"]["deleted"] is True
    assert rows["ann:3"]["changes"] == [{"rev": mine}]
    # main_only matches the winner alone: the owner "bob" revision wins (the higher hash), and does not pass.
    winners = changes(server, db, "POST", {"selector": selector}, filter="_selector")["results"]
    assert sorted(row["id"] for row in winners) == ["ann:1", "ann:2"]


def test_begins_with_needs_a_string(server, db):
    """mango_selector:norm_ops/1 accepts `$beginsWith` only with a string: any other argument is no operator at
    all, 400 invalid_operator (the same answer as a misspelt operator)."""
    response = server.admin.post(db_url(db, "_find"), json={"selector": {"_id": {"$beginsWith": 1}}})
    assert response.status_code == 400 and response.json()["error"] == "invalid_operator"


def test_filter_selector_without_selector_is_400(server, db):
    """couch_changes:get_selector_and_fields: filter=_selector without a POST body -> 400 bad_request
    "Selector must be specified in POST payload"."""
    response = server.admin.get(db_url(db, "_changes"), params={"filter": "_selector"})
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "reason": "Selector must be specified in POST payload"}


def test_longpoll_waits_for_the_next_change(server, db):
    """feed=longpoll&since=<last_seq> holds the request until a change arrives, then answers {results, last_seq}."""
    since = changes(server, db)["last_seq"]
    result = {}

    def wait():
        result["body"] = changes(server, db, feed="longpoll", since=since, timeout=10000)

    waiter = threading.Thread(target=wait)
    waiter.start()
    fill(server, db, "late")
    waiter.join(timeout=15)
    assert not waiter.is_alive()
    assert [row["id"] for row in result["body"]["results"]] == ["late"]


def test_longpoll_times_out_empty(server, db):
    """feed=longpoll with timeout=T and nothing happening ends after T ms with no results."""
    body = changes(server, db, feed="longpoll", since="now", timeout=200)
    assert body["results"] == [] and "last_seq" in body


def test_continuous_feed_streams_rows_then_last_seq(server, db):
    """feed=continuous: one JSON object per line; with timeout the feed ends with a {"last_seq": ...} line. The
    database has the default q (2): rows come in no global order (a real 3.4.3 answered `b, a`)."""
    fill(server, db, "a", "b")
    response = server.admin.get(db_url(db, "_changes"), params={"feed": "continuous", "timeout": 300}, stream=True)
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
    assert sorted(line["id"] for line in lines[:-1]) == ["a", "b"]
    assert set(lines[-1]) >= {"last_seq"}


def test_a_single_shard_feed_follows_the_write_order(server, new_db):
    """A q=1 database has one shard, whose sequence index orders every change: the feed lists them in the order
    they were written (couch_changes over one couch_db), and descending=true walks it backwards."""
    db = new_db(q="1")
    ids = ["m", "c", "x", "a", "q"]
    for doc_id in ids:
        fill(server, db, doc_id)
    assert [row["id"] for row in changes(server, db)["results"]] == ids
    assert [row["id"] for row in changes(server, db, descending="true")["results"]] == ids[::-1]


def test_a_sharded_feed_resumes_after_any_row(server, new_db):
    """With q > 1 a feed merges its shards' feeds as they answer (fabric_view_changes), so it promises no global
    order; each row's seq packs every shard's position at that row, so `since=<that seq>` lists exactly the
    rows the feed had not yet given (API docs, /{db}/_changes: "since" takes any seq the feed returned)."""
    db = new_db(q="4")
    ids = [f"doc{n}" for n in range(12)]
    for doc_id in ids:
        fill(server, db, doc_id)
    rows = changes(server, db)["results"]
    assert sorted(row["id"] for row in rows) == sorted(ids)
    for index in (0, 5, len(rows) - 1):
        later = changes(server, db, since=rows[index]["seq"])["results"]
        assert sorted(row["id"] for row in later) == sorted(row["id"] for row in rows[index + 1:])


def test_continuous_feed_delivers_later_changes(server, db):
    """feed=continuous&since=now keeps the connection and writes each new change as a line."""
    response = server.admin.get(db_url(db, "_changes"), params={"feed": "continuous", "since": "now", "timeout": 5000},
                                stream=True)
    lines = response.iter_lines()
    fill(server, db, "x")
    first = next(line for line in lines if line.strip())
    assert json.loads(first)["id"] == "x"
    response.close()


def test_changes_need_membership(server, db):
    """chttpd_auth_request:db_authorization_check: an admin-only db's _changes refuses anonymous readers (401)."""
    response = server.anon.get(db_url(db, "_changes"))
    assert response.status_code == 401


def test_descending_lists_every_change(server, db):
    """descending=true walks each shard's sequence index backwards; across shards there is no order."""
    fill(server, db, "a", "b", "c")
    assert sorted(row["id"] for row in changes(server, db, descending="true")["results"]) == ["a", "b", "c"]


def test_doc_ids_must_be_a_list(server, db):
    """couch_changes/chttpd_changes check_docids: `doc_ids` that is not a list of ids -> 400
    "`doc_ids` filter parameter is not a list of doc ids."."""
    response = server.admin.post(db_url(db, "_changes"), params={"filter": "_doc_ids"}, json={"doc_ids": "a"})
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "reason": "`doc_ids` filter parameter is not a list of doc ids."}
