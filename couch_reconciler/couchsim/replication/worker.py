"""One replication job at work, as couch_replicator_scheduler_job.erl runs it.

A job speaks the replication protocol over HTTP to the endpoint URLs (src/docs/src/replication/protocol.rst):
it opens both databases (creating the target when asked), reads the checkpoints in `_local/<replication id>`
on both sides, follows the source's `_changes` (normal feed for a one-shot job, continuous for a continuous
one), asks the target `_revs_diff`, fetches the missing revisions with `_bulk_get` (or `open_revs` where
that is missing) and writes them with `_bulk_docs` `new_edits: false`, then records checkpoints on both
sides. Start errors follow replication_start_error/1.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote

import aiohttp

from .client import EndpointClient
from .rep import REP_ID_VERSION, Rep, ReplicationCrash, iso8601

# A stopping job's last checkpoint must not hold up a shutdown when an endpoint is gone (requests retry).
LAST_CHECKPOINT_TIMEOUT_S = 2


def compare_rep_history(source: list[dict], target: list[dict]) -> tuple[Any, list[dict]]:
    """couch_replicator_scheduler_job:compare_rep_history/2: walking both histories from the newest entry, the
    first session either side shares gives the start seq (its `recorded_seq`), and the history after that entry
    of the side it was found on; no common session: from the start, no history."""
    for i in range(min(len(source), len(target))):
        if any(entry.get("session_id") == source[i].get("session_id") for entry in target[i:]):
            return source[i].get("recorded_seq", 0), source[i + 1:]
        if any(entry.get("session_id") == target[i].get("session_id") for entry in source[i + 1:]):
            return target[i].get("recorded_seq", 0), target[i + 1:]
    return 0, []


# The counters a checkpoint history entry records (do_checkpoint/1), by their names in Stats.
HISTORY_STATS = (("revisions_checked", "missing_checked"), ("missing_revisions_found", "missing_found"),
                 ("docs_read", "docs_read"), ("docs_written", "docs_written"),
                 ("doc_write_failures", "doc_write_failures"))


@dataclass
class Stats:
    revisions_checked: int = 0
    missing_revisions_found: int = 0
    docs_read: int = 0
    docs_written: int = 0
    doc_write_failures: int = 0
    changes_pending: int | None = None  # see Replication.report_pending
    checkpointed_source_seq: Any = 0
    source_seq: Any = 0
    through_seq: Any = 0

    def as_info(self) -> dict:
        # Field set of `_scheduler/docs` info for a running job (replicator.rst, "Basics").
        return {
            "revisions_checked": self.revisions_checked,
            "missing_revisions_found": self.missing_revisions_found,
            "docs_read": self.docs_read,
            "docs_written": self.docs_written,
            "changes_pending": self.changes_pending,
            "doc_write_failures": self.doc_write_failures,
            "checkpointed_source_seq": self.checkpointed_source_seq,
            "source_seq": self.source_seq,
            "through_seq": self.through_seq,
        }

    def as_doc_stats(self, start_time: float) -> dict:
        # `_replication_stats` written on completion: start_time plus rep_stats/1 of the scheduler job.
        stats = {"start_time": iso8601(start_time), **self.as_info()}
        del stats["source_seq"], stats["through_seq"]  # positions of a running job: a finished one has none
        return stats


class Replication:
    """One run of a replication job; `run()` returns for a finished one-shot job, raises ReplicationCrash."""

    def __init__(self, rep: Rep, http: aiohttp.ClientSession):
        self.rep = rep
        self.stats = Stats()
        timeout = rep.connection_timeout_ms / 1000
        self.source = EndpointClient(http, rep.source, rep.retries, timeout)
        self.target = EndpointClient(http, rep.target, rep.retries, timeout)
        self.session_id = uuid.uuid4().hex
        self.history: list[dict] = []
        self.start_seq: Any = 0
        self.checkpoint_revs: dict[str, str | None] = {"source": None, "target": None}
        self.processed = False  # has the job replicated a change yet
        self.pending_asked: float | None = None

    @staticmethod
    async def _open_db(client: EndpointClient, create: bool, params: dict) -> None:
        """couch_replicator_api_wrap:db_open/3 and the start errors of replication_start_error/1."""
        uri = client.endpoint.url
        refused = {401: f"unauthorized: unauthorized to access or create database {uri}", 403: f"forbidden: {uri}"}
        if create:
            query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
            status, _ = await client.request("PUT", "", params=query)
            if status in refused:
                raise ReplicationCrash(refused[status])
        status, _ = await client.request("GET", "")
        if status in refused:
            raise ReplicationCrash(refused[status])
        if status != 200:
            raise ReplicationCrash(f"db_not_found: could not open {uri}")

    async def _read_checkpoints(self) -> None:
        """Find the start sequence from `_local/<id>` on both sides (compare_replication_logs/2), and seed the
        job's counters from the latest history entry it resumes from (init_state/1: couch_replicator_stats
        max_stats/2 of the job's own and that entry's), so the figures add up across runs."""
        base = self.rep.id[0]
        if not self.rep.use_checkpoints:
            return
        logs = {}
        for side, client in (("source", self.source), ("target", self.target)):
            status, doc = await client.request("GET", f"_local/{base}")
            logs[side] = doc if status == 200 and isinstance(doc, dict) else None
            self.checkpoint_revs[side] = logs[side].get("_rev") if logs[side] else None
        src, tgt = logs["source"], logs["target"]
        if not src or not tgt:
            return
        if src.get("session_id") == tgt.get("session_id"):
            self.start_seq, self.history = src.get("source_last_seq", 0), src.get("history", [])
        else:
            self.start_seq, self.history = compare_rep_history(src.get("history", []), tgt.get("history", []))
        if self.history:
            latest = self.history[0]
            for field, key in HISTORY_STATS:
                setattr(self.stats, field, max(getattr(self.stats, field), latest.get(key, 0)))

    async def checkpoint(self) -> None:
        """Record the through sequence in `_local/<id>` on both sides, as do_checkpoint/1 does."""
        if not self.rep.use_checkpoints or self.stats.through_seq == self.stats.checkpointed_source_seq:
            return
        seq = self.stats.through_seq
        now = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
        entry = {
            "session_id": self.session_id, "start_time": self._start_rfc1123, "end_time": now,
            "start_last_seq": self.start_seq, "end_last_seq": seq, "recorded_seq": seq,
            "missing_checked": self.stats.revisions_checked, "missing_found": self.stats.missing_revisions_found,
            "docs_read": self.stats.docs_read, "docs_written": self.stats.docs_written,
            "doc_write_failures": self.stats.doc_write_failures,
        }
        history = [entry] + [h for h in self.history if h.get("session_id") != self.session_id][:49]
        base = self.rep.id[0]
        for side, client in (("source", self.source), ("target", self.target)):
            doc = {"_id": f"_local/{base}", "session_id": self.session_id, "source_last_seq": seq,
                   "replication_id_version": REP_ID_VERSION, "history": history}
            if self.checkpoint_revs[side]:
                doc["_rev"] = self.checkpoint_revs[side]
            status, answer = await client.request("PUT", f"_local/{base}", body=doc)
            if status not in (200, 201):
                reason = answer.get("reason", status) if isinstance(answer, dict) else status
                raise ReplicationCrash(f"checkpoint_commit_failure: Error updating the {side} checkpoint "
                                       f"document: {reason}")
            self.checkpoint_revs[side] = answer.get("rev")
        self.stats.checkpointed_source_seq = seq

    def _changes_request(self, feed: str, since: Any) -> tuple[str, dict, Any]:
        params = {"feed": feed, "style": "all_docs", "since": json.dumps(since) if not isinstance(since, str)
                  else since}
        if feed == "continuous":
            params["heartbeat"] = "10000"
        body = None
        method = "GET"
        if self.rep.doc_ids is not None:
            method, params["filter"], body = "POST", "_doc_ids", {"doc_ids": self.rep.doc_ids}
        elif self.rep.selector is not None:
            method, params["filter"], body = "POST", "_selector", {"selector": self.rep.selector}
        elif self.rep.filter is not None:
            params["filter"] = self.rep.filter
            params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in self.rep.query_params.items()})
        return method, params, body

    async def _replicate_batch(self, changes: list[dict]) -> None:
        """revs_diff, fetch what is missing, write it with new_edits=false."""
        revs = {}
        for change in changes:
            revs.setdefault(change["id"], [])
            revs[change["id"]] += [c["rev"] for c in change.get("changes", [])]
        self.stats.revisions_checked += sum(len(v) for v in revs.values())
        status, diff = await self.target.request("POST", "_revs_diff", body=revs)
        if status != 200:
            raise ReplicationCrash(f"revs_diff_failed: {status}")
        missing = {doc_id: entry.get("missing", []) for doc_id, entry in diff.items() if entry.get("missing")}
        self.stats.missing_revisions_found += sum(len(v) for v in missing.values())
        if missing:
            docs = await self._fetch(missing)
            self.stats.docs_read += len(docs)
            await self._write(docs)
        self.stats.through_seq = changes[-1]["seq"]

    async def _fetch(self, missing: dict[str, list[str]]) -> list[dict]:
        if self.rep.use_bulk_get:
            request = {"docs": [{"id": i, "rev": r} for i, revs in missing.items() for r in revs]}
            status, answer = await self.source.request(
                "POST", "_bulk_get", params={"revs": "true", "attachments": "true", "latest": "true"}, body=request)
            if status == 200:
                return [d["ok"] for result in answer.get("results", []) for d in result.get("docs", []) if "ok" in d]
            if status not in (400, 404, 405, 501):
                raise ReplicationCrash(f"bulk_get_failed: {status}")
            self.rep.use_bulk_get = False
        docs = []
        for doc_id, revs in missing.items():
            status, answer = await self.source.request(
                "GET", quote(doc_id, safe="/") if doc_id.startswith("_design/") else quote(doc_id, safe=""),
                params={"revs": "true", "open_revs": json.dumps(revs), "latest": "true", "attachments": "true"})
            if status != 200:
                raise ReplicationCrash(f"open_revs_failed: {doc_id}: {status}")
            docs += [r["ok"] for r in answer if "ok" in r]
        return docs

    async def _write(self, docs: list[dict]) -> None:
        status, answer = await self.target.request("POST", "_bulk_docs", body={"docs": docs, "new_edits": False})
        if status == 201 or status == 200:
            failures = [r for r in answer if isinstance(r, dict) and "error" in r]
            self.stats.doc_write_failures += len(failures)
            self.stats.docs_written += len(docs) - len(failures)
        elif status in (401, 403, 417):
            self.stats.doc_write_failures += len(docs)
        else:
            raise ReplicationCrash(f"bulk_docs_failed: {status}")

    async def start(self) -> None:
        """Sign in, open both endpoints and settle the start sequence (rep.id is already known)."""
        self._start_rfc1123 = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
        await self.source.initialize()
        await self.target.initialize()
        await self._open_db(self.source, False, {})
        await self._open_db(self.target, self.rep.create_target, self.rep.create_target_params)
        await self._read_checkpoints()
        if self.rep.since_seq is not None:
            self.start_seq = self.rep.since_seq
        self.stats.through_seq = self.stats.checkpointed_source_seq = self.stats.source_seq = self.start_seq

    async def run(self, on_progress: Callable[[Stats], None]) -> Stats:
        """`on_progress` hears the figures when couch_replicator_scheduler_job:update_task/1 reports them: after
        each batch written and at each checkpoint, not before; until then a job shows `info: null`."""
        await self.start()
        try:
            if self.rep.continuous:
                await self._run_continuous(on_progress)
            else:
                await self._run_once(on_progress)
        except asyncio.CancelledError:
            # Stopped by the scheduler: record how far it got (do_last_checkpoint/1), so the job's next
            # turn resumes there instead of re-reading the whole feed.
            with contextlib.suppress(ReplicationCrash, asyncio.TimeoutError):
                await asyncio.wait_for(self.checkpoint(), LAST_CHECKPOINT_TIMEOUT_S)
            raise
        return self.stats

    def report_pending(self, pending: int) -> None:
        """couch_replicator_scheduler_job:get_pending_count/1, as update_task/1 reports it. The job asks the
        source again only once `connection_timeout` has passed since it last asked, and reports the count it
        got then in between. It asks from the highest seq it has done, the number 0 until it has replicated a
        change: the fallback for a numeric seq compares it with the source's `update_seq`, a string on any
        clustered database, and gives null."""
        now = time.monotonic()
        if self.pending_asked is None or now - self.pending_asked > self.rep.connection_timeout_ms / 1000:
            self.pending_asked = now
            self.stats.changes_pending = pending if self.processed else None

    async def _run_once(self, on_progress) -> None:
        method, params, body = self._changes_request("normal", self.start_seq)
        status, answer = await self.source.request(method, "_changes", params=params, body=body)
        if status != 200:
            raise ReplicationCrash(f"changes_req_failed: {status}")
        results = answer.get("results", [])
        self.stats.source_seq = answer.get("last_seq", self.start_seq)
        size = max(1, self.rep.worker_batch_size)
        for i in range(0, len(results), size):
            await self._replicate_batch(results[i:i + size])
            self.processed = True
            self.report_pending(max(0, len(results) - i - size))
            on_progress(self.stats)
        self.stats.through_seq = self.stats.source_seq
        await self.checkpoint()
        self.report_pending(0)
        on_progress(self.stats)

    async def _run_continuous(self, on_progress) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        reader = asyncio.create_task(self._read_continuous(queue))
        checkpointer = asyncio.create_task(self._checkpoint_periodically(queue, on_progress))
        try:
            while True:
                first = await queue.get()
                if isinstance(first, BaseException):
                    raise first
                batch = [first]
                while not queue.empty() and len(batch) < self.rep.worker_batch_size:
                    item = queue.get_nowait()
                    if isinstance(item, BaseException):
                        queue.put_nowait(item)
                        break
                    batch.append(item)
                await self._replicate_batch(batch)
                self.processed = True
                self.report_pending(queue.qsize())
                on_progress(self.stats)
        finally:
            reader.cancel()
            checkpointer.cancel()

    async def _checkpoint_periodically(self, queue: asyncio.Queue, on_progress) -> None:
        try:
            while True:
                await asyncio.sleep(self.rep.checkpoint_interval_ms / 1000)
                await self.checkpoint()
                self.report_pending(queue.qsize())
                on_progress(self.stats)
        except ReplicationCrash as crash:
            queue.put_nowait(crash)

    async def _read_continuous(self, queue: asyncio.Queue) -> None:
        """Follow the source's continuous feed, reconnecting from the last seen seq when it ends or breaks
        (a broken feed is retried like any request, retries_per_request times in a row, then the job crashes)."""
        since = self.start_seq
        failures = 0
        try:
            while True:
                method, params, body = self._changes_request("continuous", since)
                try:
                    async with self.source.stream(method, "_changes", params=params, body=body) as resp:
                        if resp.status >= 500 and failures < self.rep.retries:
                            raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                        if resp.status != 200:
                            raise ReplicationCrash(f"changes_req_failed: {resp.status}")
                        failures = 0
                        async for line in resp.content:
                            line = line.strip()
                            if not line:
                                continue
                            row = json.loads(line)
                            if "last_seq" in row:
                                since = row["last_seq"]
                                break
                            if "seq" in row and "id" in row:
                                since = row["seq"]
                                self.stats.source_seq = since
                                queue.put_nowait(row)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
                    if failures >= self.rep.retries:
                        raise ReplicationCrash(f"changes_reader_died: {type(exc).__name__}") from None
                    await asyncio.sleep(min(0.25 * 2 ** failures, 5))
                    failures += 1
        except ReplicationCrash as crash:
            queue.put_nowait(crash)
