"""The `_replicator` document processor (couch_replicator_doc_processor.erl): it turns `_replicator`
documents into scheduler jobs, writes `_replication_state` back on completion (`completed`) and on a
document it cannot run (`failed`), as couch_replicator_docs.erl does, and renders `/_scheduler/jobs` and
`/_scheduler/docs` (couch_replicator.erl info_from_doc/2).

The server plugs in through `ReplicatorHost` and tells the processor about every replicator-database
write through `DocProcessor.doc_changed`.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from .rep import BadRepDoc, Rep, ReplicationCrash, iso8601, parse_rep_doc, replication_id
from .scheduler import Job, Scheduler
from .worker import Replication, Stats

STATE_FIELDS = ("_replication_state", "_replication_state_time", "_replication_state_reason",
                "_replication_id", "_replication_stats")


class ReplicatorHost(Protocol):
    """What the replicator needs from the server it runs inside."""

    uuid: str  # the server's uuid: part of every replication id
    node: str  # this node's name, shown as `node`

    def config_get(self, section: str, key: str) -> str | None: ...

    def replicator_db_names(self) -> list[str]: ...

    def rep_docs(self, db_name: str) -> list[dict]:
        """Every live, non-design document of a replicator database, sorted by id, with `_id`/`_rev`."""

    def rep_doc(self, db_name: str, doc_id: str) -> dict | None: ...

    def doc_count(self, db_name: str) -> int:
        """The replicator database's `doc_count` (design documents included), 0 when it does not exist."""

    async def save_rep_doc(self, db_name: str, body: dict) -> bool:
        """Write as the replicator itself (role `_replicator`: no owner stamping, no validation).
        False on a conflict."""


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


class DocProcessor:
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
    def scheduler_jobs(self, limit: int = 100, skip: int = 0) -> dict:
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

    def scheduler_docs(self, db_name: str = "_replicator", states: list[str] | None = None,
                       limit: int | None = None, skip: int = 0) -> dict:
        """couch_replicator_fabric:docs/5 over the database's `_all_docs`: the rows are filtered by state (and
        design documents left out) before `skip` and `limit`, but `total_rows` and `offset` come from
        `_all_docs` itself: every document counts, whatever its state (handle_message({meta, ...}))."""
        docs = []
        for body in self.host.rep_docs(db_name):
            info = self.scheduler_doc(db_name, body["_id"])
            if info is not None and (not states or info["state"] in states):
                docs.append(info)
        total = self.host.doc_count(db_name)
        end = None if limit is None else skip + limit
        return {"total_rows": total, "offset": min(total, skip), "docs": docs[skip:end]}

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
