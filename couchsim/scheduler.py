"""couchsim's replication scheduler and `_replicator` document processor, as CouchDB 3.x runs them.

- `Scheduler` follows couch_replicator_scheduler.erl: at most `[replicator] max_jobs` jobs run; every
  `interval` ms it stops excess jobs, then swaps up to `max_churn` of the longest-running continuous jobs
  for the longest-waiting pending ones; a crashed job waits 30 s * 2^(consecutive crashes - 1) before it
  may start again (consecutive within `health_threshold`, default 120 s).
- `Replicator` is the document processor (couch_replicator_doc_processor.erl): it turns `_replicator`
  documents into jobs, writes `_replication_state` back on completion (`completed`) and on a document it
  cannot run (`failed`), as couch_replicator_docs.erl does, and renders `/_scheduler/jobs` and
  `/_scheduler/docs` (couch_replicator_httpd.erl, couch_replicator.erl info_from_doc/2).

The server plugs in through `ReplicatorHost` and tells the replicator about every replicator-database
write through `Replicator.doc_changed`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol
from urllib.parse import quote

import aiohttp

from .errors import CouchError, not_found
from .replicator import (BadRepDoc, Rep, Replication, ReplicationCrash, Stats, iso8601, parse_rep_doc,
                         replication_id)
from .security import UserCtx

log = logging.getLogger(__name__)

MAX_BACKOFF_EXPONENT = 10
# couch_replicator_scheduler.erl ?DEFAULT_* (health_threshold in seconds).
DEFAULTS = {"max_jobs": 500, "interval": 60000, "max_churn": 20, "max_history": 20, "health_threshold": 120}
STATE_FIELDS = ("_replication_state", "_replication_state_time", "_replication_state_reason",
                "_replication_id", "_replication_stats")
REPLICATION_STATES = ("initializing", "error", "running", "pending", "crashing", "completed", "failed")


def is_replicator_db(name: str) -> bool:
    return name == "_replicator" or name.endswith("/_replicator")


def split_scheduler_docs_path(parts: list[str]) -> tuple[str, str | None]:
    """couch_replicator_httpd:handle_scheduler_req/1 for `/_scheduler/docs/...`: `_replicator` may come
    unescaped (`/_scheduler/docs/other/_replicator/doc`), since it cannot be a document id."""
    if not parts:
        return "_replicator", None
    if len(parts) == 1 or (len(parts) == 2 and is_replicator_db(parts[0])):
        return parts[0], parts[1] if len(parts) == 2 else None
    if "_replicator" not in parts:
        raise CouchError(400, "bad_request", "Bad request")
    at = parts.index("_replicator")
    rest = parts[at + 1:]
    if len(rest) > 1:
        raise CouchError(400, "bad_request", "Bad request")
    return "/".join(parts[: at + 1]), rest[0] if rest else None


def query_int(query, name: str, default: int | None) -> int | None:
    """couch_replicator_httpd_util:parse_int_param/5 (min 0, no max)."""
    raw = (query or {}).get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise CouchError(400, "query_parse_error", f'Invalid value for {name}: "{raw}"') from None
    if value < 0:
        raise CouchError(400, "query_parse_error", f"{name} not in range of [0,infinity]")
    return value


def query_states(query) -> list[str]:
    """couch_replicator_httpd_util:parse_replication_state_filter/1."""
    raw = (query or {}).get("states")
    if not raw:
        return []
    states = [s.lower() for s in raw.split(",") if s]
    unknown = [s for s in states if s not in REPLICATION_STATES]
    if unknown:
        raise CouchError(400, "query_parse_error",
                         f"Unknown states {unknown}. Choose from: [{','.join(REPLICATION_STATES)}]")
    return states


class ReplicatorHost(Protocol):
    """What the replicator needs from the server it runs inside."""

    uuid: str  # the server's uuid: part of every replication id
    node: str  # this node's name, shown as `node`

    def config_get(self, section: str, key: str) -> str | None: ...

    def replicator_db_names(self) -> list[str]: ...

    def rep_docs(self, db_name: str) -> list[dict]:
        """Every live, non-design document of a replicator database, sorted by id, with `_id`/`_rev`."""

    def rep_doc(self, db_name: str, doc_id: str) -> dict | None: ...

    async def save_rep_doc(self, db_name: str, body: dict) -> bool:
        """Write as the replicator itself (role `_replicator`: no owner stamping, no validation).
        False on a conflict."""


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


@dataclass
class RepDocState:
    """A replication document the processor knows (couch_replicator_doc_processor #rdoc{})."""

    db_name: str
    doc_id: str
    rep: Rep
    fingerprint: str
    state: str = "initializing"  # initializing | error | scheduled | failed
    info: Any = None
    error_count: int = 0
    last_updated: float = field(default_factory=time.time)
    worker: asyncio.Task | None = None


def fingerprint(body: dict) -> str:
    """What makes two versions of a document the same replication (normalize_rep/1): state fields,
    `owner` and unknown members do not count, passwords do (a fixed password restarts the job)."""
    relevant = {k: v for k, v in body.items() if not k.startswith("_") and k != "owner"}
    return json.dumps(relevant, sort_keys=True)


class Replicator:
    """The `_replicator` document processor plus the scheduler, bound to one server."""

    def __init__(self, host: ReplicatorHost, backoff_base_s: float = 30.0):
        self.host = host
        self.http: aiohttp.ClientSession | None = None
        self.docs: dict[tuple[str, str], RepDocState] = {}
        self.scheduler = Scheduler(host.config_get, self._run_job, self._job_completed,
                                   backoff_base_s=backoff_base_s)
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        # One pool for all jobs, unbounded: every running continuous job holds a feed open, as CouchDB
        # does (facts: 500 running jobs held ~1,000 connections). No shared cookie jar: each endpoint
        # keeps its own session cookie.
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                          connector=aiohttp.TCPConnector(limit=0))
        self.scheduler.start()
        for db_name in self.host.replicator_db_names():
            for body in self.host.rep_docs(db_name):
                self.doc_changed(db_name, body["_id"], body)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.scheduler.stop()
        if self.http is not None:
            await self.http.close()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ---------------------------------------------------------------- document changes
    def doc_changed(self, db_name: str, doc_id: str, body: dict | None) -> None:
        """Called by the server after every write to a replicator database (None or `_deleted`: removed)."""
        if doc_id.startswith(("_design/", "_local/")):
            return
        if body is None or body.get("_deleted"):
            self._forget(db_name, doc_id)
            return
        state = body.get("_replication_state")
        if state in ("completed", "failed"):
            # Terminal: nothing to run. A failed doc keeps its entry when the processor put it there.
            known = self.docs.get((db_name, doc_id))
            if state == "completed" or (known is not None and known.state != "failed"):
                self._forget(db_name, doc_id)
            return
        if state in ("triggered", "error"):
            # Written by replicators before 2.1: drop the legacy fields, then run it (process_change/2).
            self._spawn(self._update_doc(db_name, doc_id, {k: None for k in STATE_FIELDS}))
        self._process_updated(db_name, doc_id, body)

    def db_deleted(self, db_name: str) -> None:
        for db, doc_id in [k for k in self.docs if k[0] == db_name]:
            self._forget(db, doc_id)

    def _forget(self, db_name: str, doc_id: str) -> None:
        known = self.docs.pop((db_name, doc_id), None)
        if known is not None and known.worker is not None:
            known.worker.cancel()
        for job in self.scheduler.find_by_doc(db_name, doc_id):
            self.scheduler.remove_job(job.id)

    def _process_updated(self, db_name: str, doc_id: str, body: dict) -> None:
        current = fingerprint(body)
        known = self.docs.get((db_name, doc_id))
        if known is not None and known.fingerprint == current:
            return
        self._forget(db_name, doc_id)
        try:
            rep = parse_rep_doc(body, self.host.config_get)
        except BadRepDoc as bad:
            self._spawn(self._mark_failed(db_name, doc_id, bad.reason, None))
            return
        rep.db_name, rep.doc_id = db_name, doc_id
        known = RepDocState(db_name, doc_id, rep, current)
        self.docs[(db_name, doc_id)] = known
        known.worker = self._spawn(self._schedule(known))

    async def _schedule(self, known: RepDocState) -> None:
        """couch_replicator_doc_processor_worker: compute the id (may fetch a filter), then add the job."""
        while True:
            try:
                known.rep.id = await self._replication_id(known.rep)
                break
            except ReplicationCrash as crash:
                # `error`: temporary, retried with exponential backoff (replicator.rst, "States descriptions").
                known.state, known.info = "error", {"error": crash.reason}
                known.error_count += 1
                known.last_updated = time.time()
                await asyncio.sleep(min(self.scheduler.backoff_base_s * 2 ** (known.error_count - 1), 600))
        known.worker = None
        rep = known.rep
        existing = self.scheduler.jobs.get(rep.rep_id)
        if existing is not None and (existing.rep.db_name, existing.rep.doc_id) != (known.db_name, known.doc_id):
            reason = (f"Replication `{rep.rep_id}` specified by document `{known.doc_id}` already started, "
                      f"triggered by document `{existing.rep.doc_id}` from db `{existing.rep.db_name}`")
            await self._mark_failed(known.db_name, known.doc_id, reason, known)
            return
        known.state, known.last_updated = "scheduled", time.time()
        self.scheduler.add_job(rep)

    async def _replication_id(self, rep: Rep) -> tuple[str, str]:
        filter_code = None
        if rep.filter is not None and not rep.is_builtin_filter:
            filter_code = await self._fetch_filter_code(rep)
        return replication_id(rep, self.host.uuid, filter_code)

    async def _fetch_filter_code(self, rep: Rep) -> str:
        """couch_replicator_filters:fetch/3: the filter's source text (trimmed) is part of the replication id.
        Failures are temporary: the doc shows `error` and is retried (fetch_internal/3 words the reasons)."""
        ddoc_name, filter_name = rep.filter.split("/", 1)
        client = Replication(rep, self.http).source
        uri = rep.source.url
        try:
            await client.initialize()
            status, ddoc = await client.request("GET", f"_design/{quote(ddoc_name, safe='')}")
        except ReplicationCrash as crash:
            raise ReplicationCrash(f"Could not open source database `{uri}`: {crash.reason}") from None
        if status != 200 or not isinstance(ddoc, dict):
            reason = ddoc.get("reason", status) if isinstance(ddoc, dict) else status
            raise ReplicationCrash(f"Couldn't open document `_design/{ddoc_name}` from source database `{uri}`: "
                                   f"{reason}")
        code = (ddoc.get("filters") or {}).get(filter_name)
        if not isinstance(code, str):
            raise ReplicationCrash(f"Couldn't parse filter code from document {ddoc_name} on `{uri}` "
                                   f"Error: {filter_name} not found")
        return code.strip()

    async def _mark_failed(self, db_name: str, doc_id: str, reason: str, known: RepDocState | None) -> None:
        if known is not None:
            known.state, known.info, known.error_count = "failed", {"error": reason}, 1
            known.last_updated = time.time()
        await self._update_doc(db_name, doc_id, {"_replication_state": "failed", "_replication_stats": None,
                                                  "_replication_state_reason": reason})

    # ---------------------------------------------------------------- jobs
    async def _run_job(self, job: Job) -> Stats:
        def progress(stats: Stats) -> None:
            job.stats = stats

        return await Replication(job.rep, self.http).run(progress)

    def _job_completed(self, job: Job) -> None:
        stats = job.stats.as_doc_stats(job.rep.start_time) if job.stats else {}
        self._spawn(self._update_doc(job.rep.db_name, job.rep.doc_id, {
            "_replication_state": "completed", "_replication_state_reason": None, "_replication_stats": stats}))

    async def _update_doc(self, db_name: str, doc_id: str, fields: dict) -> None:
        """couch_replicator_docs:update_rep_doc/4: re-read, merge, retry on conflict; a state change
        also stamps `_replication_state_time`."""
        for attempt in range(20):
            body = self.host.rep_doc(db_name, doc_id)
            if body is None:
                return
            new = dict(body)
            for key, value in fields.items():
                if value is None:
                    new.pop(key, None)
                elif key == "_replication_state":
                    if new.get(key) != value:
                        new[key] = value
                        new["_replication_state_time"] = iso8601(time.time())
                else:
                    new[key] = value
            if new == body or await self.host.save_rep_doc(db_name, new):
                return
            await asyncio.sleep(0.01 * (attempt + 1))

    # ---------------------------------------------------------------- HTTP views
    def scheduler_jobs(self, query=None) -> dict:
        limit, skip = query_int(query, "limit", 100), query_int(query, "skip", 0)
        jobs = sorted((self.scheduler.job_ejson(j, self.host.node) for j in self.scheduler.jobs.values()),
                      key=lambda j: j["id"])
        offset = min(skip, len(jobs))
        return {"total_rows": len(jobs), "offset": offset, "jobs": jobs[offset:offset + limit]}

    def scheduler_job(self, job_id: str) -> dict | None:
        job = self.scheduler.jobs.get(job_id.replace(" ", "+"))
        return None if job is None else self.scheduler.job_ejson(job, self.host.node)

    def scheduler_doc(self, db_name: str, doc_id: str) -> dict | None:
        """couch_replicator:doc/3: the processor's view of an active doc, else what the doc itself says."""
        known = self.docs.get((db_name, doc_id))
        if known is not None:
            active = self._active_doc(known)
            if active is not None:
                return active
        body = self.host.rep_doc(db_name, doc_id)
        return None if body is None else self._info_from_doc(db_name, body)

    def scheduler_docs(self, db_name: str = "_replicator", query=None) -> dict:
        states, limit, skip = query_states(query), query_int(query, "limit", None), query_int(query, "skip", 0)
        docs = []
        for body in self.host.rep_docs(db_name):
            info = self.scheduler_doc(db_name, body["_id"])
            if info is not None and (not states or info["state"] in states):
                docs.append(info)
        offset = min(skip, len(docs))
        end = None if limit is None else offset + limit
        return {"total_rows": len(docs), "offset": offset, "docs": docs[offset:end]}

    def _endpoints(self, rep: Rep) -> dict:
        return {"source": rep.source.url, "target": rep.target.url, "source_proxy": None, "target_proxy": None}

    def _active_doc(self, known: RepDocState) -> dict | None:
        base = {"database": known.db_name, "doc_id": known.doc_id, "id": known.rep.rep_id, "node": self.host.node,
                **self._endpoints(known.rep)}
        if known.state == "scheduled":
            job = self.scheduler.jobs.get(known.rep.rep_id)
            if job is None:
                return None  # a one-shot job that just completed: its doc tells the rest
            return {**base, **self.scheduler.job_summary(job)}
        if known.state == "failed":
            base["id"] = None
        return {**base, "state": known.state, "info": known.info, "error_count": known.error_count,
                "last_updated": iso8601(known.last_updated), "start_time": iso8601(known.rep.start_time)}

    def _info_from_doc(self, db_name: str, body: dict) -> dict:
        """couch_replicator:info_from_doc/2."""
        state = body.get("_replication_state")
        state_time = body.get("_replication_state_time")
        if state == "completed":
            stats = dict(body.get("_replication_stats") or {})
            start_time = stats.pop("start_time", None)
            info, error_count = stats, 0
        elif state == "failed":
            info, error_count, start_time = {"error": body.get("_replication_state_reason")}, 1, state_time
        else:
            state, info, error_count, start_time, state_time = None, None, 0, None, None
        try:
            rep = parse_rep_doc(body)
            endpoints = {"source": rep.source.url, "target": rep.target.url}
        except BadRepDoc:
            endpoints = {"source": None, "target": None}
        return {"doc_id": body["_id"], "database": db_name, "id": None, **endpoints, "state": state,
                "error_count": error_count, "info": info, "start_time": start_time, "last_updated": state_time}


class ClusterHost:
    """ReplicatorHost over couchsim's Cluster: reads its databases directly, as CouchDB's replicator
    opens its own `_replicator` shards, and writes as the `_replicator` role."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.uuid = cluster.uuid
        self.node = cluster.local_node

    def config_get(self, section: str, key: str) -> str | None:
        return self.cluster.config.get(section, key)

    def replicator_db_names(self) -> list[str]:
        return sorted(name for name in self.cluster.dbs if is_replicator_db(name))

    def rep_docs(self, db_name: str) -> list[dict]:
        db = self.cluster.dbs.get(db_name)
        if db is None or not db.docs:
            return []
        return [db.doc_json(entry, entry.winner) for entry in db.iter_entries()
                if not entry.deleted and not entry.id.startswith("_design/")]

    def rep_doc(self, db_name: str, doc_id: str) -> dict | None:
        db = self.cluster.dbs.get(db_name)
        entry = db.entry(doc_id) if db is not None else None
        return None if entry is None or entry.deleted else db.doc_json(entry, entry.winner)

    async def save_rep_doc(self, db_name: str, body: dict) -> bool:
        db = self.cluster.dbs.get(db_name)
        if db is None:
            return True
        [result] = await db.update_docs([body], UserCtx(None, ["_admin", "_replicator"]))
        return not isinstance(result, Exception)


class ClusterReplicator(Replicator):
    """The replicator of a couchsim Cluster: follows its replicator databases' writes and answers the
    `/_scheduler/*` calls the server makes on `cluster.replicator`."""

    def __init__(self, cluster, backoff_base_s: float = 30.0):
        super().__init__(ClusterHost(cluster), backoff_base_s)
        self.cluster = cluster
        cluster.doc_listeners.append(self._on_doc)

    def _on_doc(self, db, entry) -> None:
        if is_replicator_db(db.name):
            self.doc_changed(db.name, entry.id, None if entry.deleted else db.doc_json(entry, entry.winner))

    def scheduler_doc(self, db_name: str, doc_id: str) -> dict:
        found = super().scheduler_doc(db_name, doc_id)
        if found is None:
            raise not_found()
        return found

    def scheduler_job(self, job_id: str) -> dict:
        found = super().scheduler_job(job_id)
        if found is None:
            raise not_found()
        return found

    def active_tasks(self) -> list:
        """couch_replicator_scheduler_job's `_active_tasks` entry for each running job."""
        tasks = []
        for job in self.scheduler.running():
            stats = job.stats or Stats()
            tasks.append({
                "type": "replication", "node": self.host.node, "pid": self.scheduler.job_ejson(job, "")["pid"],
                "replication_id": job.id, "doc_id": job.rep.doc_id, "database": job.rep.db_name,
                "user": job.rep.user, "continuous": job.rep.continuous,
                "source": job.rep.source.url, "target": job.rep.target.url,
                "started_on": int(job.last_started()), "updated_on": int(time.time()),
                "revisions_checked": stats.revisions_checked,
                "missing_revisions_found": stats.missing_revisions_found, "docs_read": stats.docs_read,
                "docs_written": stats.docs_written, "doc_write_failures": stats.doc_write_failures,
                "changes_pending": stats.changes_pending, "checkpointed_source_seq": stats.checkpointed_source_seq,
                "source_seq": stats.source_seq, "through_seq": stats.through_seq,
                "checkpoint_interval": job.rep.checkpoint_interval_ms,
            })
        return tasks
