"""Replication delay of one continuous `_replicator` job: a write into the source -> visible in the target.

    .venv/bin/python bench/replication_bench.py [--writes 50]
    COUCHDB_URL=http://127.0.0.1:5984 COUCHDB_USER=admin COUCHDB_PASSWORD=... \
        .venv/bin/python bench/replication_bench.py      # the same against a real CouchDB

Without COUCHDB_URL it starts `python -m couch_reconciler.couchsim` as its own process. It creates a source and a target
database and one continuous replication between them (full URLs, auth.basic as the admin), waits until the
job runs, then N times: PUT a doc into the source and wait on the target's `_changes?feed=longpoll` until the
doc is there. Printed: median and p95 of that delay, beside the floor: a bare write + read round trip
(PUT a doc, GET it back) through the same keep-alive session.

A second figure (couchsim only, started with a small `[replicator] max_jobs`, `max_churn` and `interval`):
--jobs continuous jobs fan in to one analytics database; one doc is written into every source at once and
the time until the last one arrives is printed beside the scheduler's arithmetic, ceil((jobs - max_jobs) /
max_churn) intervals: the wait the facts measured as ~23 minutes for 1,000 jobs at CouchDB's defaults.

Figures are printed, never asserted: timing belongs in benchmarks, not tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ADMIN, couchsim  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise SystemExit(f"{what} not reached within {timeout:g}s")


def measure(url: str, admin: tuple[str, str], server_url: str, writes: int) -> None:
    http = requests.Session()
    http.auth = admin
    tag = uuid.uuid4().hex[:8]
    source, target, doc_id = f"bench-src-{tag}", f"bench-tgt-{tag}", f"bench-rep-{tag}"
    for db in (source, target):
        http.put(f"{url}/{db}").raise_for_status()
    auth = {"basic": {"username": admin[0], "password": admin[1]}}
    rep = {"source": {"url": f"{server_url}/{source}", "auth": auth},
           "target": {"url": f"{server_url}/{target}", "auth": auth}, "continuous": True}
    http.put(f"{url}/_replicator/{doc_id}", json=rep).raise_for_status()
    try:
        wait_for(lambda: http.get(f"{url}/_scheduler/docs/_replicator/{doc_id}").json().get("state") == "running",
                 30, "replication running")
        delays = []
        for n in range(writes):
            since = http.get(f"{url}/{target}").json()["update_seq"]
            began = time.perf_counter()
            http.put(f"{url}/{source}/w{n}", json={"n": n}).raise_for_status()
            seen = False
            while not seen:
                feed = http.get(f"{url}/{target}/_changes", params={"feed": "longpoll", "since": since,
                                                                    "timeout": "10000"}).json()
                seen = any(row["id"] == f"w{n}" for row in feed["results"])
                since = feed["last_seq"]
            delays.append(time.perf_counter() - began)
        floor = []
        for n in range(writes):
            began = time.perf_counter()
            http.put(f"{url}/{source}/floor{n}", json={"n": n}).raise_for_status()
            http.get(f"{url}/{source}/floor{n}").raise_for_status()
            floor.append(time.perf_counter() - began)
    finally:
        current = http.get(f"{url}/_replicator/{doc_id}").json()
        http.delete(f"{url}/_replicator/{doc_id}", params={"rev": current["_rev"]})
        for db in (source, target):
            http.delete(f"{url}/{db}")
    ms = 1000
    print(f"replication delay, one continuous job, {writes} writes (write -> in target's _changes):")
    print(f"  median {statistics.median(delays) * ms:7.2f} ms   p95 {percentile(delays, 0.95) * ms:7.2f} ms")
    print("floor: bare write + read round trip through the same session:")
    print(f"  median {statistics.median(floor) * ms:7.2f} ms   p95 {percentile(floor, 0.95) * ms:7.2f} ms")


def measure_rotation(url: str, admin: tuple[str, str], jobs: int, max_jobs: int, max_churn: int,
                     interval_ms: int) -> None:
    http = requests.Session()
    http.auth = admin
    auth = {"basic": {"username": admin[0], "password": admin[1]}}
    http.put(f"{url}/analytics").raise_for_status()
    for n in range(jobs):
        http.put(f"{url}/user{n}").raise_for_status()
        rep = {"source": {"url": f"{url}/user{n}", "auth": auth}, "target": {"url": f"{url}/analytics", "auth": auth},
               "continuous": True}
        http.put(f"{url}/_replicator/fan-in-{n}", json=rep).raise_for_status()
    wait_for(lambda: [d["state"] for d in http.get(f"{url}/_scheduler/docs").json()["docs"]].count("running")
             == max_jobs, 30, "max_jobs running")
    began = time.perf_counter()
    for n in range(jobs):
        http.put(f"{url}/user{n}/event", json={"n": n}).raise_for_status()
    writing = time.perf_counter() - began
    # Every source writes the same doc id: they meet as conflicting revisions of one analytics doc.
    wait_for(lambda: len(http.get(f"{url}/analytics/event", params={"conflicts": "true"}).json()
                         .get("_conflicts", [])) == jobs - 1, 120, "every doc in analytics")
    last = time.perf_counter() - began
    rounds = -(-(jobs - max_jobs) // max_churn)
    print(f"fan-in of {jobs} continuous jobs, max_jobs {max_jobs}, max_churn {max_churn}, interval {interval_ms} ms:")
    print(f"  last doc in analytics {last * 1000:7.1f} ms after the first write (the {jobs} writes took "
          f"{writing * 1000:.1f} ms)")
    print(f"  scheduler arithmetic: every job has run within {rounds} intervals = {rounds * interval_ms} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=60, help="continuous jobs in the fan-in figure")
    parser.add_argument("--max-jobs", type=int, default=10)
    parser.add_argument("--max-churn", type=int, default=5)
    parser.add_argument("--interval-ms", type=int, default=200)
    args = parser.parse_args()
    real = os.environ.get("COUCHDB_URL")
    if real:
        admin = (os.environ.get("COUCHDB_USER", "admin"), os.environ.get("COUCHDB_PASSWORD", ""))
        # The URL the server uses to reach itself can differ from ours (a container).
        measure(real.rstrip("/"), admin, os.environ.get("COUCHDB_REPLICATION_URL", real).rstrip("/"), args.writes)
        return
    with couchsim() as server:
        print(f"couchsim at {server.url} (its own process)")
        measure(server.url, ADMIN, server.url, args.writes)
    with couchsim(f"replicator/max_jobs={args.max_jobs}", f"replicator/max_churn={args.max_churn}",
                  f"replicator/interval={args.interval_ms}") as server:
        measure_rotation(server.url, ADMIN, args.jobs, args.max_jobs, args.max_churn, args.interval_ms)


if __name__ == "__main__":
    main()
