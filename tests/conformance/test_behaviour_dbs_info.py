"""Bulk reads of databases: GET/POST /_dbs_info (paging, key cap, missing dbs) and /_db_updates.

Sources: src/chttpd/src/chttpd_misc.erl (handle_dbs_info_req, handle_all_dbs_info_req); couch_server.erl
(max_dbs_open, the LRU of open shards); facts "Bulk reads", "Cost of opening databases";
global_changes_httpd.erl; recorded exchanges "dbs_info", "dbs_info keys not array".
"""

import json
import threading

import pytest

from behaviour_fixtures import NOT_SERVER_ADMIN, answer, db_url


def test_post_dbs_info_answers_in_key_order_with_missing_marked(server, new_db, new_name):
    """chttpd_misc:handle_dbs_info_req POST: one row per key, in order: {"key", "info"} or {"key", "error": "not_found"}."""
    a, b = new_db(), new_db()
    missing = new_name("missing")
    response = server.admin.post("/_dbs_info", json={"keys": [b, missing, a]})
    assert response.status_code == 200
    rows = response.json()
    assert [row["key"] for row in rows] == [b, missing, a]
    assert rows[1] == {"key": missing, "error": "not_found"}
    assert rows[0]["info"]["db_name"] == b and rows[2]["info"]["db_name"] == a
    assert {"update_seq", "doc_count", "doc_del_count", "sizes"} <= set(rows[0]["info"])


def test_post_dbs_info_takes_at_most_100_keys(server, new_name):
    """[chttpd] max_db_number_for_dbs_info_req (default 100): 101 keys -> 400 {"error":"bad_request","reason":"too_many_keys"};
    100 keys are answered (facts, Bulk reads)."""
    keys = [new_name("k") for _ in range(101)]
    assert answer(server.admin.post("/_dbs_info", json={"keys": keys})) == (400, {"error": "bad_request", "reason": "too_many_keys"})
    response = server.admin.post("/_dbs_info", json={"keys": keys[:100]})
    assert response.status_code == 200 and len(response.json()) == 100


def test_post_dbs_info_key_cap_follows_config(server, set_config, new_name):
    """chttpd_misc:handle_dbs_info_req reads max_db_number_for_dbs_info_req from [chttpd] on every request."""
    set_config("chttpd", "max_db_number_for_dbs_info_req", "2")
    keys = [new_name("k") for _ in range(3)]
    assert server.admin.post("/_dbs_info", json={"keys": keys}).status_code == 400
    assert server.admin.post("/_dbs_info", json={"keys": keys[:2]}).status_code == 200


def test_post_dbs_info_without_keys_is_400(server):
    """chttpd_misc:handle_dbs_info_req: keys undefined -> {bad_request, "`keys` member must exist."}; facts: "keys absent -> 400"."""
    assert answer(server.admin.post("/_dbs_info", json={})) == (400, {"error": "bad_request", "reason": "`keys` member must exist."})


def test_get_dbs_info_pages_like_all_dbs(server, new_db, new_name):
    """Facts, Bulk reads: GET /_dbs_info (3.2+) pages like _all_dbs (start_key, end_key, limit, skip), rows {"key","info"}."""
    prefix = new_name("page")
    names = sorted(new_db(name=f"{prefix}-{s}") for s in ("a", "b", "c"))
    params = {"start_key": json.dumps(prefix), "end_key": json.dumps(prefix + "\ufff0")}
    rows = server.admin.get("/_dbs_info", params=params).json()
    assert [row["key"] for row in rows] == names
    assert all(row["info"]["db_name"] == row["key"] for row in rows)
    page = server.admin.get("/_dbs_info", params={**params, "skip": 1, "limit": 1}).json()
    assert [row["key"] for row in page] == names[1:2]


def test_dbs_info_is_admin_only(server, new_user):
    """[chttpd] admin_only_all_dbs = true (default.ini) guards /_dbs_info like /_all_dbs: require_admin ->
    401 "You are not a server admin." (chttpd_dbs_info_test.erl should_not_allow_non_admin_access: 401 without credentials)."""
    user = new_user()
    for client in (server.anon, user.client):
        response = client.post("/_dbs_info", json={"keys": ["_users"]})
        assert answer(response) == NOT_SERVER_ADMIN


def test_update_seq_changes_with_docs_design_docs_and_security_only(server, db):
    """Facts, Bulk reads: a _security write bumps update_seq, as do document and design-doc writes; an unchanged
    update_seq means nothing in that database changed."""
    def seq():
        return server.admin.post("/_dbs_info", json={"keys": [db]}).json()[0]["info"]["update_seq"]

    seqs = [seq()]
    assert seq() == seqs[-1]
    for path, body in ((db_url(db, "d"), {}), (db_url(db, "_design", "x"), {}), (db_url(db, "_security"), {"members": {"roles": ["r"]}})):
        assert server.admin.put(path, json=body).status_code in (200, 201)
        seqs.append(seq())
        assert seqs[-1] != seqs[-2], path
    assert len(set(seqs)) == len(seqs)


def test_on_a_cluster_the_update_seq_number_agrees_where_its_text_may_not(cluster, new_name, poll):
    """fabric_db_info.erl takes each shard range's seq from the first copy to answer, and the packed seq names
    that copy: on a 3-node 3.4.3 two reads of an n=3 database with no write between them differed after the
    number. The number, the sum of the shards' seqs, is what every read agrees on once the copies are in sync
    (a write is acknowledged by a quorum, so a lagging copy may answer for a moment)."""
    name = new_name("seqs")
    assert cluster.put(f"/{name}").status_code in (201, 202)
    try:
        for index in range(3):
            assert cluster.put(db_url(name, f"d{index}"), json={}).status_code in (201, 202)

        def numbers() -> set[int]:
            return {int(cluster.get(f"/{name}").json()["update_seq"].split("-", 1)[0]) for _ in range(12)}

        assert poll(lambda: numbers() == {3}, 30.0, 0.2, "every read to count the 3 writes") is True
    finally:
        cluster.delete(f"/{name}")


def test_on_a_cluster_the_feed_since_an_update_seq_lists_the_writes_after_it_only(cluster, new_name):
    """fabric_view_changes.erl `send_changes/6` resumes each shard range at the copy the packed seq names (another
    copy only when that node is down), so `_changes?since=<update_seq of a _dbs_info read>` answers whether the
    database took an update after that read, whichever copies answered: no row with no write after it, the
    write once one came. couch_reconciler/databases.py `moved_since` relies on it where the texts differ."""
    name = new_name("since")
    assert cluster.put(f"/{name}", params={"q": 2, "n": 3}).status_code in (201, 202)
    try:
        assert cluster.put(db_url(name, "before"), json={}, params={"w": 3}).status_code == 201
        recorded = cluster.post("/_dbs_info", json={"keys": [name]}).json()[0]["info"]["update_seq"]

        def after(limit: int = 1) -> list[str]:
            feed = cluster.get(f"/{name}/_changes", params={"since": recorded, "limit": limit})
            assert feed.status_code == 200, feed.text
            return [row["id"] for row in feed.json()["results"]]

        assert [after() for _ in range(6)] == [[]] * 6
        assert cluster.put(db_url(name, "after"), json={}, params={"w": 3}).status_code == 201
        assert after(10) == ["after"]
    finally:
        cluster.delete(f"/{name}")


def test_db_updates_is_404_without_global_changes(server):
    """Facts, Bulk reads: "/_db_updates answers 404 until a _global_changes database exists; a fresh single node has none"."""
    if server.admin.head("/_global_changes").status_code == 200:
        pytest.skip("this server has a _global_changes database, so /_db_updates is served")
    response = server.admin.get("/_db_updates")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.fixture
def global_changes(server):
    """A _global_changes database for the duration of the case (deleted again only if this case created it)."""
    created = server.admin.put("/_global_changes").status_code == 201
    yield
    if created:
        server.admin.delete("/_global_changes")


def test_db_updates_reports_created_databases(server, global_changes, new_db, poll):
    """global_changes_httpd: with _global_changes present, /_db_updates lists {"db_name", "type", "seq"} events;
    a new database shows as "created" (batched by [global_changes] max_event_delay, hence the bounded wait)."""
    name = new_db()

    def created():
        rows = server.admin.get("/_db_updates").json()["results"]
        return [row for row in rows if row["db_name"] == name and row["type"] == "created"]

    rows = poll(created, timeout=5, what=f"created event for {name}")
    assert "seq" in rows[0]


def test_db_updates_longpoll_waits_for_an_event(server, global_changes, new_db, new_name):
    """/_db_updates?feed=longpoll&since=<last_seq> holds the request until database events arrive, then lists
    them; following `last_seq` from answer to answer reaches the new database's event. An answer may hold
    other databases' events first (`_dbs`, which CouchDB writes when any database is created)."""
    name = new_name("db")
    answers: list[dict] = []

    def seen() -> list[str]:
        return [row["db_name"] for answer in answers for row in answer["results"]]

    def follow(since: str) -> None:
        while len(answers) < 5 and name not in seen():
            answer = server.admin.get("/_db_updates", params={"feed": "longpoll", "since": since,
                                                              "timeout": 10000}).json()
            answers.append(answer)
            since = answer["last_seq"]

    waiter = threading.Thread(target=follow, args=(server.admin.get("/_db_updates").json()["last_seq"],))
    waiter.start()
    new_db(name=name)
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert all(answer["results"] for answer in answers), "a longpoll answered without any event"
    assert name in seen()


def test_db_updates_continuous_streams_events_then_last_seq(server, global_changes, new_db, poll):
    """/_db_updates?feed=continuous: one JSON object per line; with timeout it ends with a {"last_seq": ...} line."""
    since = server.admin.get("/_db_updates").json()["last_seq"]
    name = new_db()
    poll(lambda: name in [row["db_name"] for row in server.admin.get("/_db_updates", params={"since": since}).json()["results"]],
         what=f"{name} in /_db_updates")
    response = server.admin.get("/_db_updates", params={"feed": "continuous", "since": since, "timeout": 300}, stream=True)
    lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
    assert name in [line.get("db_name") for line in lines[:-1]]
    assert "last_seq" in lines[-1]

