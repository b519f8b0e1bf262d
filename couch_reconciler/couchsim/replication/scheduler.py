"""The replication scheduler, as couch_replicator_scheduler.erl runs jobs.

At most `[replicator] max_jobs` jobs run; every `interval` ms it stops excess jobs, then swaps up to
`max_churn` of the longest-running continuous jobs for the longest-waiting pending ones; a crashed job waits
30 s * 2^(consecutive crashes - 1) before it may start again (consecutive within `health_threshold`,
default 120 s).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from .rep import Rep, ReplicationCrash, iso8601
from .worker import Stats

log = logging.getLogger(__name__)

MAX_BACKOFF_EXPONENT = 10
# couch_replicator_scheduler.erl ?DEFAULT_* (health_threshold in seconds).
DEFAULTS = {"max_jobs": 500, "interval": 60000, "max_churn": 20, "max_history": 20, "health_threshold": 120}


@dataclass
class Event:
    type: str  # added | started | stopped | crashed
    when: float
    reason: str | None = None


@dataclass
class Job:
    rep: Rep
    history: list[Event]  # newest first, like the scheduler's ets record
    task: asyncio.Task | None = None
    stats: Stats | None = None

    @property
    def id(self) -> str:
        return self.rep.rep_id

    def last_started(self) -> float:
        return next((e.when for e in self.history if e.type == "started"), 0.0)


def consecutive_crashes(history: list[Event], threshold_s: float) -> int:
    """couch_replicator_scheduler:consecutive_crashes/2."""
    count = 0
    for i, event in enumerate(history):
        if event.type == "crashed":
            if i + 1 >= len(history):
                return count + 1
            if event.when - history[i + 1].when > threshold_s:
                return count
            count += 1
        elif event.type == "stopped" and i + 1 < len(history) and history[i + 1].type == "started":
            return count
    return count


class Scheduler:
    def __init__(self, config_get: Callable[[str, str], str | None],
                 runner: Callable[[Job], Awaitable[Stats]],
                 on_completed: Callable[[Job], None],
                 backoff_base_s: float = 30.0):
        self.config_get = config_get
        self.runner = runner
        self.on_completed = on_completed
        self.backoff_base_s = backoff_base_s
        self.jobs: dict[str, Job] = {}
        self.loop_task: asyncio.Task | None = None

    def setting(self, key: str) -> int:
        try:
            return int(self.config_get("replicator", key) or DEFAULTS[key])
        except ValueError:
            return DEFAULTS[key]

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.loop_task = asyncio.create_task(self._reschedule_loop())

    async def stop(self) -> None:
        tasks = [t for t in [self.loop_task] + [j.task for j in self.jobs.values()] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.jobs.clear()

    async def _reschedule_loop(self) -> None:
        while True:
            await asyncio.sleep(self.setting("interval") / 1000)
            self.reschedule()

    # ---------------------------------------------------------------- queries
    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.task is not None]

    def pending(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.task is None]

    def find_by_doc(self, db_name: str, doc_id: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.rep.db_name == db_name and j.rep.doc_id == doc_id]

    # ---------------------------------------------------------------- changes
    def add_job(self, rep: Rep) -> None:
        self.remove_job(rep.rep_id)
        job = Job(rep=rep, history=[Event("added", time.time())])
        self.jobs[job.id] = job
        # maybe_start_newly_added_job/2 counts the new job too: the max_jobs-th job waits for a reschedule.
        max_jobs = self.setting("max_jobs")
        if len(self.jobs) < max_jobs and len(self.running()) < max_jobs:
            self._start(job)

    def remove_job(self, job_id: str) -> None:
        job = self.jobs.pop(job_id, None)
        if job is not None:
            self._stop(job, record=False)

    def reschedule(self) -> None:
        """couch_replicator_scheduler:reschedule/1: stop excess jobs, then rotate."""
        max_jobs = self.setting("max_jobs")
        excess = max(0, len(self.running()) - max_jobs)
        stopped = self._stop_jobs(excess, continuous=True)
        self._stop_jobs(excess - stopped, continuous=False)
        churn = max(0, self.setting("max_churn") - excess)
        running, pending = len(self.running()), len(self.pending())
        slots = max_jobs - running
        if slots >= 0:
            self._stop_jobs(min(pending - slots, running, churn), continuous=True)
            self._start_pending(max(0, max_jobs - len(self.running())))

    # ---------------------------------------------------------------- internals
    def _history(self, job: Job, event: Event) -> None:
        job.history = ([event] + job.history)[: self.setting("max_history")]

    def _backoff_s(self, crashes: int) -> float:
        return (1 << min(crashes - 1, MAX_BACKOFF_EXPONENT)) * self.backoff_base_s

    def _not_recently_crashed(self, job: Job, now: float) -> bool:
        head = job.history[0]
        if head.type in ("added", "stopped") and (head.type == "stopped" or len(job.history) == 1):
            return True
        last_crash = next((e.when for e in job.history if e.type == "crashed"), 0.0)
        crashes = consecutive_crashes(job.history, self.setting("health_threshold"))
        return crashes == 0 or now - last_crash >= self._backoff_s(crashes)

    def _start_pending(self, count: int) -> None:
        now = time.time()
        ready = [j for j in self.pending() if self._not_recently_crashed(j, now)]
        ready.sort(key=lambda j: (j.last_started(), j.id))
        for job in ready[:max(0, count)]:
            self._start(job)

    def _stop_jobs(self, count: int, continuous: bool) -> int:
        if count <= 0:
            return 0
        candidates = [j for j in self.running() if j.rep.continuous == continuous]
        candidates.sort(key=lambda j: j.last_started())
        for job in candidates[:count]:
            self._stop(job, record=True)
        return len(candidates[:count])

    def _start(self, job: Job) -> None:
        if job.task is not None:
            return
        self._history(job, Event("started", time.time()))
        job.task = asyncio.create_task(self._run(job))

    def _stop(self, job: Job, record: bool) -> None:
        if job.task is None:
            return
        job.task.cancel()
        job.task = None
        if record:
            self._history(job, Event("stopped", time.time()))

    async def _run(self, job: Job) -> None:
        try:
            job.stats = await self.runner(job)
        except asyncio.CancelledError:
            raise
        except ReplicationCrash as crash:
            self._crashed(job, crash.reason)
        except Exception as exc:  # a bug or an unexpected answer must crash the job, not the scheduler
            log.exception("replication job %s failed", job.id)
            self._crashed(job, f"{type(exc).__name__}: {exc}")
        else:
            job.task = None
            if self.jobs.get(job.id) is job:
                del self.jobs[job.id]
                self.on_completed(job)

    def _crashed(self, job: Job, reason: str) -> None:
        job.task = None
        self._history(job, Event("crashed", time.time(), reason))
        if self.jobs.get(job.id) is not job:
            return
        max_jobs = self.setting("max_jobs")
        if len(self.jobs) < max_jobs:
            self._start_pending(max_jobs - len(self.running()))

    # ---------------------------------------------------------------- rendering
    def job_summary(self, job: Job) -> dict:
        """couch_replicator_scheduler:job_summary/2: state, info and error_count of a scheduled doc."""
        crashes = consecutive_crashes(job.history, self.setting("health_threshold"))
        if job.task is not None:
            state, info = "running", job.stats.as_info() if job.stats else None
        elif crashes > 0 or job.history[0].type == "crashed":
            state, info = "crashing", {"error": next(e.reason for e in job.history if e.type == "crashed")}
        else:
            state, info = "pending", job.stats.as_info() if job.stats else None
        return {"state": state, "info": info, "error_count": crashes,
                "last_updated": iso8601(job.history[0].when), "start_time": iso8601(job.rep.start_time)}

    def job_ejson(self, job: Job, node: str) -> dict:
        """couch_replicator_scheduler:job_ejson/1 (`id` first: `_scheduler/jobs` sorts on it)."""
        history = []
        for event in job.history:
            entry = {"timestamp": iso8601(event.when), "type": event.type}
            if event.type == "crashed":
                entry["reason"] = event.reason
            history.append(entry)
        return {
            "id": job.id,
            "pid": f"<0.{abs(hash(job.task)) % 100000}.0>" if job.task is not None else None,
            "source": job.rep.source.url,
            "target": job.rep.target.url,
            "database": job.rep.db_name,
            "user": job.rep.user,
            "doc_id": job.rep.doc_id,
            "info": job.stats.as_info() if job.stats else None,
            "history": history,
            "node": node,
            "start_time": iso8601(job.rep.start_time),
        }
