"""couchsim's replication scheduler seen over HTTP: `[replicator] max_jobs` caps the running continuous
jobs, the others wait as `pending` and rotate in every `interval`, as CouchDB's scheduler does.

The interval is lowered at start-up (200 ms instead of 60 s): CouchDB only applies a new interval after the
current timer fires (couch_replicator_scheduler handle_cast set_interval), so this cannot be changed at run
time on a real server within a test's time.

Sources: src/docs/src/replication/replicator.rst ("Replication Scheduler": "Jobs which have been running the
longest time will be stopped, and jobs which have been waiting the longest time will be started");
couch_replicator_scheduler.erl (rotate_jobs/2, job_ejson/1 history with `stopped` events).
"""
import pytest
import requests
from waiting import wait_for

from couch_reconciler.couchsim.testing import SimServer

ADMIN = ("admin", "adminpw")


@pytest.fixture
def sim():
    config = {"chttpd_auth": {"iterations": "1000"}, "replicator": {"max_jobs": "2", "interval": "200"}}
    with SimServer(admin=ADMIN, config=config) as server:
        yield server


def states(http, base):
    docs = http.get(f"{base}/_scheduler/docs").json()["docs"]
    return {d["doc_id"]: d["state"] for d in docs}


def test_five_continuous_jobs_with_max_jobs_two_run_two_at_a_time_and_rotate(sim):
    http = requests.Session()
    http.auth = ADMIN
    base = sim.url
    auth = {"basic": {"username": ADMIN[0], "password": ADMIN[1]}}
    for n in range(5):
        http.put(f"{base}/src{n}")
        http.put(f"{base}/src{n}/doc", json={"n": n})
        doc = {"source": {"url": f"{base}/src{n}", "auth": auth}, "target": {"url": f"{base}/tgt{n}", "auth": auth},
               "continuous": True, "create_target": True}
        assert http.put(f"{base}/_replicator/rep{n}", json=doc).status_code == 201
    seen_running: set[str] = set()
    counts = []

    def every_job_took_its_turn() -> bool:
        current = states(http, base)
        counts.append((list(current.values()).count("running"), list(current.values()).count("pending")))
        seen_running.update(doc for doc, state in current.items() if state == "running")
        copied = all(http.get(f"{base}/tgt{n}/doc").status_code == 200 for n in range(5))
        return len(seen_running) == 5 and len(counts) >= 10 and copied

    # Five jobs, two at a time, one rotation every 200 ms: a few seconds; the bound allows for a loaded machine.
    wait_for(every_job_took_its_turn, "every job to run and copy its document", timeout=60)
    # Never more than max_jobs running; once the first reschedule has filled the slots: 2 running, 3 pending.
    assert all(running <= 2 for running, _ in counts)
    assert (2, 3) in counts
    assert len(http.get(f"{base}/_scheduler/jobs").json()["jobs"]) == 5
    for n in range(5):
        assert http.get(f"{base}/tgt{n}/doc").json()["n"] == n

    # A job stopped after it copied its document left a checkpoint to resume from (do_last_checkpoint/1 on
    # shutdown); one stopped before it had copied anything had nothing to record. Rotation goes on, so one
    # of them is soon stopped after copying.
    def a_stopped_job_left_a_checkpoint() -> bool:
        for job in http.get(f"{base}/_scheduler/jobs").json()["jobs"]:
            if any(event["type"] == "stopped" for event in job["history"]):
                checkpoint = http.get(f"{job['source']}_local/{job['id'].split('+')[0]}")
                if checkpoint.status_code == 200 and checkpoint.json()["history"][0]["docs_written"] == 1:
                    return True
        return False

    wait_for(a_stopped_job_left_a_checkpoint, "a job stopped after copying to leave its checkpoint", timeout=60)
