"""Whether a fan-in's source database took an update since the update_seq recorded for it, as watch's catch-up,
its triggered runs, `reconcile status` and plan's stale fan-in warning ask it (couch_reconciler/databases.py
`moved_since`), on the `cluster`: a real one named by COUCHDB_CLUSTER_URLS, else a 3-node couchsim."""

from __future__ import annotations

import secrets
from typing import Any, Iterator

import pytest

from couch_reconciler.client import Connection, CouchSession
from couch_reconciler.databases import moved_since

READS = 12  # reads with no write between them: on a 3-node cluster some take a shard range from another copy


@pytest.fixture
def session(cluster: Any) -> Iterator[CouchSession]:
    with CouchSession(Connection(cluster.url, *cluster.admin)) as opened:
        yield opened


@pytest.fixture
def database(cluster: Any, http: Any) -> Iterator[Any]:
    """Makes `t-moved-<hex>` with the given q and n (deleted afterwards) and returns its name."""
    made: list[str] = []

    def make(q: int, n: int) -> str:
        name = f"t-moved-{secrets.token_hex(4)}"
        assert http.put(f"{cluster.url}/{name}", params={"q": q, "n": n}).status_code in (201, 202)
        made.append(name)
        return name

    yield make
    for name in made:
        http.delete(f"{cluster.url}/{name}")


def row(http: Any, cluster: Any, name: str) -> dict:
    return http.post(f"{cluster.url}/_dbs_info", json={"keys": [name]}).json()[0]["info"]


def write(http: Any, cluster: Any, name: str, doc_id: str, copies: int) -> None:
    """A document every copy holds before the answer (w = n), so that any copy a later read takes has it."""
    assert http.put(f"{cluster.url}/{name}/{doc_id}", json={}, params={"w": copies}).status_code == 201


def test_copies_answering_a_read_differently_are_no_update_and_a_write_is_one(cluster, http, session, database):
    """fabric_db_info.erl takes each shard range from the copy that answers first, so reads with no write between
    them may name other copies, and copies count a document's revisions differently (internal replication brings
    a copy only the latest one): neither the text nor its number tells an update. Watch must neither rerun
    a database for that nor miss a write."""
    name = database(q=2, n=3)
    write(http, cluster, name, "before", 3)
    recorded = row(http, cluster, name)["update_seq"]
    later = [row(http, cluster, name) for _ in range(READS)]
    assert moved_since(session, [(name, info, recorded) for info in later]) == [False] * READS

    write(http, cluster, name, "after", 3)
    assert moved_since(session, [(name, row(http, cluster, name), recorded)]) == [True]


def test_with_one_copy_per_range_the_text_says_it_and_no_feed_is_read(cluster, http, session, database):
    """With n = 1 the same copy answers every read: a text that differs is an update, known without a request."""
    name = database(q=2, n=1)
    recorded = row(http, cluster, name)["update_seq"]
    write(http, cluster, name, "after", 1)
    now, same = row(http, cluster, name), row(http, cluster, name)
    sent = session.requests_sent
    assert moved_since(session, [(name, now, recorded), (name, same, now["update_seq"])]) == [True, False]
    assert session.requests_sent == sent


def test_a_database_deleted_since_took_no_update_to_deliver(cluster, http, session, database):
    name = database(q=2, n=3)
    before = row(http, cluster, name)
    write(http, cluster, name, "after", 3)
    now = row(http, cluster, name)
    assert http.delete(f"{cluster.url}/{name}").status_code in (200, 202)
    assert moved_since(session, [(name, now, before["update_seq"])]) == [False]


def test_a_source_never_run_has_moved(cluster, http, session, database):
    name = database(q=1, n=3)
    assert moved_since(session, [(name, row(http, cluster, name), None)]) == [True]
