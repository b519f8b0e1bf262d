"""couchsim's replication scheduler, driven with stand-in jobs so that timing is ours.

Relies on couch_replicator_scheduler.erl (apache/couchdb): maybe_start_newly_added_job/2 (a new job starts
only while total jobs < max_jobs), reschedule/1 -> stop_excess_jobs/2 + rotate_jobs/2 (stop up to max_churn of
the longest-running continuous jobs, start the longest-waiting pending ones), consecutive_crashes/2 and
backoff_micros/1 (30 s * 2^(crashes-1)), job_summary/2 (running / pending / crashing). States as documented
in src/docs/src/replication/replicator.rst ("Replication states").
"""
import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from couch_reconciler.couchsim.replication.rep import ReplicationCrash, parse_rep_doc, replication_id
from couch_reconciler.couchsim.replication.scheduler import Event, Scheduler, consecutive_crashes
from couch_reconciler.couchsim.replication.worker import Stats


def run_alone(scenario) -> None:
    """asyncio.run in a thread of its own: a test in the same worker (Playwright's sync API) may leave an event
    loop running in this one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, scenario()).result()


def make_rep(n: int, continuous: bool = True):
    rep = parse_rep_doc({"_id": f"doc{n}", "source": f"http://h:5984/src{n}", "target": f"http://h:5984/tgt{n}",
                         "continuous": continuous})
    rep.db_name = "_replicator"
    rep.id = replication_id(rep, "uuid")
    return rep


class Harness:
    def __init__(self, config: dict, runner=None, backoff_base_s: float = 30.0):
        self.config = config
        self.completed = []
        self.scheduler = Scheduler(lambda s, k: self.config.get(k), runner or self.forever,
                                   self.completed.append, backoff_base_s=backoff_base_s)

    @staticmethod
    async def forever(job):
        await asyncio.Event().wait()

    def states(self) -> dict:
        return {j.rep.doc_id: self.scheduler.job_summary(j)["state"] for j in self.scheduler.jobs.values()}

    def count(self, state: str) -> int:
        return list(self.states().values()).count(state)


def test_more_continuous_jobs_than_max_jobs_wait_as_pending_and_rotate_in():
    async def scenario():
        h = Harness({"max_jobs": "2", "interval": "50", "max_churn": "20"})
        for n in range(5):
            h.scheduler.add_job(make_rep(n))
        # The 2nd job already reaches max_jobs when counted, so it waits for the first reschedule.
        assert (h.count("running"), h.count("pending")) == (1, 4)
        h.scheduler.start()
        ever_ran = set()
        for _ in range(12):
            await asyncio.sleep(0.05)
            assert h.count("running") <= 2
            ever_ran |= {d for d, s in h.states().items() if s == "running"}
        assert (h.count("running"), h.count("pending")) == (2, 3)
        assert ever_ran == {f"doc{n}" for n in range(5)}
        await h.scheduler.stop()

    run_alone(scenario)


def test_max_churn_bounds_how_many_jobs_swap_per_interval():
    async def scenario():
        h = Harness({"max_jobs": "2", "interval": "100000", "max_churn": "1"})
        for n in range(5):
            h.scheduler.add_job(make_rep(n))
        h.scheduler.reschedule()  # fills the free slot: 2 running
        before = {d for d, s in h.states().items() if s == "running"}
        assert len(before) == 2
        h.scheduler.reschedule()
        after = {d for d, s in h.states().items() if s == "running"}
        assert len(after) == 2 and len(before & after) == 1
        await h.scheduler.stop()

    run_alone(scenario)


def test_lowering_max_jobs_stops_the_excess_at_the_next_reschedule():
    async def scenario():
        h = Harness({"max_jobs": "4", "interval": "100000", "max_churn": "20"})
        for n in range(3):
            h.scheduler.add_job(make_rep(n))
        assert h.count("running") == 3
        h.config["max_jobs"] = "1"
        h.scheduler.reschedule()
        assert (h.count("running"), h.count("pending")) == (1, 2)
        await h.scheduler.stop()

    run_alone(scenario)


def test_a_crashed_job_shows_crashing_and_waits_its_backoff_before_it_runs_again():
    attempts = []

    async def crashing(job):
        attempts.append(job.id)
        raise ReplicationCrash("db_not_found: could not open http://h:5984/src0/")

    async def scenario():
        h = Harness({"max_jobs": "5", "interval": "20", "max_churn": "20"}, crashing, backoff_base_s=0.3)
        h.scheduler.add_job(make_rep(0))
        await asyncio.sleep(0.01)
        job = h.scheduler.jobs[make_rep(0).rep_id]
        summary = h.scheduler.job_summary(job)
        assert summary["state"] == "crashing"
        assert summary["error_count"] == 1
        assert summary["info"] == {"error": "db_not_found: could not open http://h:5984/src0/"}
        h.scheduler.start()
        await asyncio.sleep(0.15)
        assert len(attempts) == 1  # still inside the 0.3 s backoff
        await asyncio.sleep(0.4)
        assert len(attempts) == 2
        assert h.scheduler.job_summary(job)["error_count"] == 2  # and now waits 0.6 s
        await h.scheduler.stop()

    run_alone(scenario)


def test_a_one_shot_job_that_finishes_leaves_the_scheduler_and_reports_completion():
    async def finishes(job):
        return Stats(docs_written=3)

    async def scenario():
        h = Harness({"max_jobs": "5", "interval": "100000"}, finishes)
        h.scheduler.add_job(make_rep(0, continuous=False))
        await asyncio.sleep(0.01)
        assert h.scheduler.jobs == {}
        assert [j.stats.docs_written for j in h.completed] == [3]

    run_alone(scenario)


@pytest.mark.parametrize("events, expected", [
    ([("added", 0)], 0),
    ([("crashed", 1), ("started", 0.5), ("added", 0)], 1),
    ([("crashed", 3), ("started", 2), ("crashed", 1), ("started", 0.5), ("added", 0)], 2),
    # A run that lasted longer than health_threshold (120 s) ends the streak.
    ([("crashed", 500), ("started", 300), ("crashed", 1), ("started", 0.5)], 0),
    ([("stopped", 9), ("started", 8), ("crashed", 1), ("started", 0.5)], 0),
])
def test_consecutive_crashes_count_like_couchdb(events, expected):
    history = [Event(t, when) for t, when in events]
    assert consecutive_crashes(history, 120) == expected
