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


def test_a_write_that_brings_a_lagging_copy_to_the_recorded_number_is_still_an_update(cluster, http, session,
                                                                                      database):
    """Copies of a range count differently: internal replication brings a copy that missed two updates of a
    document only the latest revision (mem3_rep.erl sends the leaves the target lacks), one update where the copy
    that took both counted two. So a read that took such a copy after a write can show the number a read of the
    other copy showed before it, as on the real 3-node cluster where status then called a written database
    delivered. The write is an update all the same."""
    name = database(q=1, n=3)
    first = http.put(f"{cluster.url}/{name}/doc", json={}, params={"w": 3}).json()
    write(http, cluster, name, f"doc?rev={first['rev']}", 3)

    def number(info: dict) -> int:
        return int(str(info["update_seq"]).split("-", 1)[0])

    before = [row(http, cluster, name) for _ in range(READS * 3)]
    recorded = max(before, key=number)
    write(http, cluster, name, "after", 3)
    same_number = [info for info in (row(http, cluster, name) for _ in range(READS * 3))
                   if number(info) == number(recorded)]
    if not same_number:
        pytest.skip("the copies of this cluster counted the two updates alike: no read after the write shows the "
                    "number a read before it showed")
    assert moved_since(session, [(name, same_number[0], recorded["update_seq"])]) == [True]


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
