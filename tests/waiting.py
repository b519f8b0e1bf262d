"""Bounded polling, for what CouchDB (and couchsim) do asynchronously: admin hashing, couch_peruser, the
`_auth` design document, replication, `reconcile watch`. Never a fixed sleep: a test waits only as long as
the server needs, and fails naming what it waited for."""

from __future__ import annotations

import json
import time
from typing import Callable, TypeVar
from urllib.parse import quote

import requests

T = TypeVar("T")

# A database a test reads right after writing to it holds one copy of each shard (`params=ONE_COPY` at its
# creation). On a cluster the copies of an n = 3 database converge asynchronously (a write returns once w = 2
# copies have it, mem3_rep brings the third), and a read picks whichever copy answers first: right after a
# write, _changes may miss it or list it in another order, and update_seq (which encodes the copies that
# answered) may differ between two reads. CouchDB promises no read-your-writes across copies; with one copy
# every read sees every write, in order.
ONE_COPY = {"n": "1"}


def wait_for(check: Callable[[], T], what: str = "the condition", timeout: float = 20.0,
             interval: float = 0.05) -> T:
    """check()'s first truthy result, asked every `interval` s; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}; last result: {result!r}")
        time.sleep(interval)


def wait_while_growing(count: Callable[[], int], want: int, what: str, stall: float, interval: float = 0.2) -> None:
    """Until count() reaches `want`, however long that takes while it grows: a loaded server that is slow but
    progressing is waited for, one that stopped fails the test `stall` s after its last step."""
    best, grew_at = -1, time.monotonic()
    while (now := count()) < want:
        if now > best:
            best, grew_at = now, time.monotonic()
        elif time.monotonic() - grew_at >= stall:
            raise AssertionError(f"waited for {what}: {now} of {want}, none more for {stall:g}s")
        time.sleep(interval)


def copies(http: requests.Session, url: str, database: str) -> int:
    """How many copies of `database` the server keeps (its `cluster.n`): the `w` a write waits for, or the `r`
    a read asks, so that no copy lags what a test wrote or purged (one on a single node, three on a cluster)."""
    return int(http.get(f"{url}/{database}").json()["cluster"]["n"])


def copies_agree_within(http: requests.Session, url: str) -> float:
    """Seconds within which every copy holds what CouchDB itself wrote to one copy: its replicator writes a
    one-shot document's `completed` into the shard on the node running the job only
    (couch_replicator_docs.erl `save_rep_doc`, couch_db:update_doc on the shard, and fabric_doc_open.erl skips
    read repair for `_replicator`), so a read that takes other copies sees the revision before it until
    internal replication pushes it: a shard sync_delay ms after its first update, then a shard about every
    sync_frequency ms ([mem3], 5000 and 500 by default, mem3_sync_event_listener.erl). The margin is for the
    pushes queued behind other databases' under load."""
    def setting(key: str, default: int) -> int:
        answer = http.get(f"{url}/_node/_local/_config/mem3/{key}")
        return int(answer.json()) if answer.status_code == 200 else default

    return (setting("sync_delay", 5000) + setting("sync_frequency", 500)) / 1000 + 10.0


LISTED_IN_A_ROW = 3


def written_to_every_copy(http: requests.Session, url: str, database: str, docs: list[dict]) -> list[dict]:
    """`docs` written in one `_bulk_docs` that waits for every copy (w = n): the tool lists documents with
    `_all_docs`, which takes each shard range from one copy (fabric_view_all_docs.erl), and must see them all.
    A loaded cluster may answer 202 (some stored on fewer copies in time; written all the same, internal
    replication brings the rest), so this returns once `_all_docs` counts them LISTED_IN_A_ROW reads in a row.
    The rows CouchDB answered, one per document."""
    def listed() -> int:
        return int(http.get(f"{url}/{database}/_all_docs", params={"limit": "0"}).json()["total_rows"])

    before = listed()
    answer = http.post(f"{url}/{database}/_bulk_docs", json={"docs": docs}, params={"w": copies(http, url, database)})
    assert answer.status_code in (201, 202) and all("ok" in row for row in answer.json()), answer.text
    listed_in_a_row(lambda: listed() >= before + len(docs),
                    f"every copy of {database} to list the {len(docs)} documents written")
    return answer.json()


def listed_by_every_read(http: requests.Session, url: str, database: str, *doc_ids: str) -> None:
    """Returns once `_all_docs` lists every one of `doc_ids` LISTED_IN_A_ROW reads in a row, each read one
    request (the key range from the first id to the last). What the tool writes waits for a quorum of copies only
    (CouchDB's default `w`), and a plan lists documents with `_all_docs`, which takes each shard range from one
    copy (fabric_view_all_docs.erl): right after an apply, that copy may still lack one. A range is read as the
    plan reads it; `keys` would not be (each key is a `fabric:open_doc` from a quorum, `open_doc_int`)."""
    wanted = set(doc_ids)

    def listed() -> bool:
        bounds = {"start_key": json.dumps(min(wanted)), "end_key": json.dumps(max(wanted))}
        rows = http.get(f"{url}/{quote(database, safe='')}/_all_docs", params=bounds).json()["rows"]
        return wanted <= {row["id"] for row in rows}

    shown = ", ".join(doc_ids[:3]) + (f" and {len(doc_ids) - 3} more" if len(doc_ids) > 3 else "")
    listed_in_a_row(listed, f"every copy of {database} to list {shown}")


def listed_in_a_row(listed: Callable[[], bool], what: str) -> None:
    """Returns once `listed()` holds LISTED_IN_A_ROW times in a row: each read may come from another copy."""
    wait_for(lambda: all(listed() for _ in range(LISTED_IN_A_ROW)), what, 60.0, 0.5)


def security_reads_back(http: requests.Session, security_url: str, security: dict) -> None:
    """Returns once a GET of `security_url` (a database's `_security`, just written with a 200) shows
    `security`. A cluster answers the PUT once a majority of the shard copies took it (fabric_db_meta.erl
    `set_security`) and a read takes it from one copy, the coordinating node's own (fabric.erl `get_security`,
    fabric_util.erl `get_db`), which may be the copy still writing it."""
    wait_for(lambda: http.get(security_url, timeout=30).json() == security, f"{security_url} to read back as written")
