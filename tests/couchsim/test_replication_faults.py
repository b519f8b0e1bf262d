"""Replication through a flaky network: couchsim's fault injector breaks requests, the replicator retries
them as CouchDB's does (couch_replicator_httpc: `retries_per_request`, default 5, with growing waits) and
the job neither loses documents nor shows up as crashing.

Sources: src/docs/src/config/replicator.rst (`retries_per_request`); couch_replicator_httpc.erl (retries on
connection errors and 5xx); couch_replicator_changes_reader.erl (a broken feed restarts from the last seq).
"""

import requests

from couch_reconciler.couchsim.testing import SimServer
from waiting import wait_for

ADMIN = ("admin", "adminpw")
AUTH = {"basic": {"username": ADMIN[0], "password": ADMIN[1]}}


def test_5xx_and_dropped_connections_are_retried_and_every_doc_arrives():
    """Two 500s on the target's _bulk_docs, a dropped _bulk_get (a POST: no client library retries it for
    us) and a 503 on the continuous feed itself."""
    with SimServer(admin=ADMIN, config={"chttpd_auth": {"iterations": "1000"}}) as sim:
        http = requests.Session()
        http.auth = ADMIN
        base = sim.url
        http.put(f"{base}/src")
        http.put(f"{base}/tgt")
        for n in range(5):
            http.put(f"{base}/src/d{n}", json={"n": n})
        faults = [sim.faults.inject(path=r"^/tgt/_bulk_docs", status=500, count=2),
                  sim.faults.inject(path=r"^/src/_bulk_get", drop=True, count=1),
                  sim.faults.inject(path=r"^/src/_changes", status=503, count=1)]
        doc = {"source": {"url": f"{base}/src", "auth": AUTH}, "target": {"url": f"{base}/tgt", "auth": AUTH},
               "continuous": True}
        assert http.put(f"{base}/_replicator/flaky", json=doc).status_code == 201
        wait_for(lambda: http.get(f"{base}/tgt").json()["doc_count"] == 5)
        http.put(f"{base}/src/later", json={})
        wait_for(lambda: http.get(f"{base}/tgt/later").status_code == 200)
        state = http.get(f"{base}/_scheduler/docs/_replicator/flaky").json()
        assert (state["state"], state["error_count"]) == ("running", 0)
        assert [fault.fired for fault in faults] == [2, 1, 1]
