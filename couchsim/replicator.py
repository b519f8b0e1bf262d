"""couchsim's replicator: replication documents and the jobs that carry them out, as CouchDB 3.x does.

A job speaks the replication protocol over HTTP to the endpoint URLs, like CouchDB's replicator
(src/docs/src/replication/protocol.rst): it opens both databases (creating the target when asked),
reads the checkpoints in `_local/<replication id>` on both sides, follows the source's `_changes`
(normal feed for a one-shot job, continuous for a continuous one), asks the target `_revs_diff`,
fetches the missing revisions with `_bulk_get` (or `open_revs` where that is missing) and writes them
with `_bulk_docs` `new_edits: false`, then records checkpoints on both sides.

Document parsing and validation follow couch_replicator_parse.erl and couch_replicator_docs.erl;
replication ids follow couch_replicator_ids.erl (version 4: server uuid, endpoints without passwords,
filter); error texts follow couch_replicator_scheduler_job.erl (replication_start_error/1) and
couch_replicator_auth_session.erl.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp

from .replicator_db import replication_doc_error

REP_ID_VERSION = 4
# CouchDB's session plugin only treats a cookie failure as stale after this many seconds.
MIN_SESSION_REFRESH_SECONDS = 5
# A stopping job's last checkpoint must not hold up a shutdown when an endpoint is gone (requests retry).
LAST_CHECKPOINT_TIMEOUT_S = 2


class BadRepDoc(Exception):
    """A replication document CouchDB refuses (403 at write time, `failed` when found in the db)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ReplicationCrash(Exception):
    """A job stopped by an error; `reason` is the text CouchDB shows in `info.error` / history."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def erlang_term(value: Any) -> str:
    """Render an error term as Erlang's `~p` does: CouchDB shows crash reasons that way
    (couch_util:to_binary/1 of e.g. `{replication_auth_error,{session_request_unauthorized,Url,User}}`)."""
    if isinstance(value, Atom):
        return value.name
    if isinstance(value, tuple):
        return "{" + ",".join(erlang_term(v) for v in value) + "}"
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Atom:
    name: str


@dataclass
class Endpoint:
    """One side of a replication: a URL without credentials, plus the credentials and extra headers."""

    url: str
    username: str | None = None
    password: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def id_term(self) -> list:
        """couch_replicator_ids:get_v4_endpoint: the user but never the password, so a new password keeps the id."""
        parts = urlsplit(self.url)
        default_ports = {("http", 80), ("http", 5984), ("https", 443)}
        port = parts.port
        non_default = "default" if port is None or (parts.scheme, port) in default_ports else port
        return ["remote", self.username, parts.hostname, non_default, parts.path or "/", sorted(self.headers.items())]


@dataclass
class Rep:
    """A parsed replication document (couch_replicator.hrl #rep{})."""

    source: Endpoint
    target: Endpoint
    doc_id: str | None = None
    db_name: str | None = None
    user: str | None = None
    continuous: bool = False
    create_target: bool = False
    create_target_params: dict = field(default_factory=dict)
    doc_ids: list[str] | None = None
    selector: dict | None = None
    filter: str | None = None
    query_params: dict = field(default_factory=dict)
    since_seq: Any = None
    use_checkpoints: bool = True
    checkpoint_interval_ms: int = 30000
    worker_batch_size: int = 500
    use_bulk_get: bool = True
    retries: int = 5
    connection_timeout_ms: int = 30000
    id: tuple[str, str] | None = None
    start_time: float = field(default_factory=time.time)

    @property
    def rep_id(self) -> str | None:
        return None if self.id is None else self.id[0] + self.id[1]

    @property
    def is_builtin_filter(self) -> bool:
        """`_view`, `_doc_ids`...: run by the source as named; only a ddoc filter's code is fetched."""
        return self.filter is not None and self.filter.startswith("_")


def parse_endpoint(value: str | dict) -> Endpoint:
    """couch_replicator_parse:parse_rep_db/3 with couch_replicator_utils:normalize_basic_auth/1, for an
    endpoint replicator_db.endpoint_error/1 already accepted."""
    if isinstance(value, str):
        value = {"url": value}
    parts = urlsplit(value["url"])
    headers = value.get("headers") if isinstance(value.get("headers"), dict) else {}
    headers = {str(k): str(v) for k, v in headers.items()}
    # Credentials: auth.basic first, then URL userinfo, then an Authorization header (replicator.rst,
    # "Specifying Usernames and Passwords").
    username = password = None
    header_auth = next((k for k in headers if k.lower() == "authorization"), None)
    if header_auth and headers[header_auth].startswith("Basic "):
        try:
            username, _, password = base64.b64decode(headers.pop(header_auth)[6:]).decode().partition(":")
        except ValueError:
            username = password = None
    if parts.username is not None:
        username, password = unquote(parts.username), unquote(parts.password or "")
    auth = value.get("auth") if isinstance(value.get("auth"), dict) else {}
    basic = auth.get("basic") if isinstance(auth.get("basic"), dict) else {}
    if basic.get("username") is not None:
        username, password = str(basic["username"]), str(basic.get("password", ""))
    netloc = parts.netloc.rpartition("@")[2]
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    if "?" not in clean and not clean.endswith("/"):
        clean += "/"
    return Endpoint(url=clean, username=username, password=password, headers=headers)


def parse_rep_doc(body: dict, config_get: Callable[[str, str], str | None] = lambda s, k: None) -> Rep:
    """couch_replicator_parse:parse_rep_doc_without_id/1: replicator_db's write-time checks, then the
    options with their `[replicator]` defaults. Raises BadRepDoc with the reason."""
    error = replication_doc_error(body)
    if error:
        raise BadRepDoc(error)

    def option(key: str, config_key: str, default: Any, kind: type) -> Any:
        value = body.get(key)
        if value is None:
            value = config_get("replicator", config_key)
            if value is None:
                return default
            value = value == "true" if kind is bool else value
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise BadRepDoc(f"parameter `{key}` must be an integer") from None

    doc_ids = body.get("doc_ids")
    user_ctx = body.get("user_ctx")
    return Rep(
        source=parse_endpoint(body["source"]),
        target=parse_endpoint(body["target"]),
        doc_id=body.get("_id"),
        user=user_ctx.get("name") if isinstance(user_ctx, dict) else None,
        continuous=body.get("continuous", False),
        create_target=body.get("create_target", False),
        create_target_params=body.get("create_target_params") or {},
        # convert_options/1: percent-encoded ids are accepted, and the list is a set.
        doc_ids=None if doc_ids is None else sorted({unquote(str(i)) for i in doc_ids}),
        selector=body.get("selector"),
        filter=body.get("filter"),
        query_params=body.get("query_params") or {},
        since_seq=body.get("since_seq"),
        use_checkpoints=option("use_checkpoints", "use_checkpoints", True, bool),
        checkpoint_interval_ms=option("checkpoint_interval", "checkpoint_interval", 30000, int),
        worker_batch_size=option("worker_batch_size", "worker_batch_size", 500, int),
        use_bulk_get=option("use_bulk_get", "use_bulk_get", True, bool),
        retries=option("retries_per_request", "retries_per_request", 5, int),
        connection_timeout_ms=option("connection_timeout", "connection_timeout", 30000, int),
    )


def replication_id(rep: Rep, server_uuid: str, filter_code: str | None = None) -> tuple[str, str]:
    """couch_replicator_ids:replication_id/1 (version 4): md5 over uuid, endpoints and filter; options as suffix.

    CouchDB hashes the Erlang term; we hash the same parts as canonical JSON, so ids are stable per
    server and change exactly when CouchDB's would, but are not byte-identical to a real server's.
    """
    parts: list = [server_uuid, rep.source.id_term(), rep.target.id_term()]
    if rep.is_builtin_filter:
        parts += [rep.filter, rep.query_params]
    elif rep.filter is not None:
        parts += [filter_code, rep.query_params]
    elif rep.doc_ids is not None:
        parts.append(rep.doc_ids)
    elif rep.selector is not None:
        parts.append(rep.selector)
    digest = hashlib.md5(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    ext = ("+continuous" if rep.continuous else "") + ("+create_target" if rep.create_target else "")
    return digest, ext


def iso8601(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class EndpointClient:
    """HTTP to one endpoint with CouchDB's session auth plugin (couch_replicator_auth_session.erl).

    Cookies are kept per endpoint, never in a shared jar: source and target often live on the same
    host with different accounts.
    """

    def __init__(self, http: aiohttp.ClientSession, endpoint: Endpoint, retries: int, timeout_s: float):
        self.http = http
        self.endpoint = endpoint
        self.retries = retries
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout_s, sock_read=None)
        self.cookie: str | None = None
        self.cookie_time = 0.0
        self.use_basic = False

    def _basic_header(self) -> str:
        creds = f"{self.endpoint.username}:{self.endpoint.password}".encode()
        return "Basic " + base64.b64encode(creds).decode()

    async def initialize(self) -> None:
        if self.endpoint.username is None:
            return
        session_url = self.endpoint.origin + "/_session"
        user = self.endpoint.username
        for require_valid_user in (False, True):
            headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
            if require_valid_user:
                headers["Authorization"] = self._basic_header()
            form = f"name={quote(user, safe='')}&password={quote(self.endpoint.password or '', safe='')}"
            try:
                async with self.http.post(session_url, data=form, headers=headers, timeout=self.timeout) as resp:
                    await resp.read()
                    status, resp_headers = resp.status, resp.headers
                    cookie = resp.cookies.get("AuthSession")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise ReplicationCrash(erlang_term((Atom("replication_auth_error"), (
                    Atom("session_request_failed"), session_url, user, Atom(type(exc).__name__))))) from None
            if status == 200 and cookie is not None:
                self.cookie, self.cookie_time = cookie.value, time.monotonic()
                return
            if status == 404:
                self.use_basic = True  # not a CouchDB with sessions: plain basic auth, as CouchDB falls back
                return
            if status == 401 and "WWW-Authenticate" in resp_headers and not require_valid_user:
                continue
            kind = {401: "session_request_unauthorized", 403: "session_request_forbidden"}.get(status)
            term = (Atom(kind), session_url, user) if kind else (
                Atom("session_unexpected_result"), str(status), session_url, user)
            if status == 401 and require_valid_user:
                term = (Atom("session_requires_valid_user"), session_url, user)
            raise ReplicationCrash(erlang_term((Atom("replication_auth_error"), term)))

    def _headers(self, extra: dict | None) -> dict:
        headers = {"Accept": "application/json", **self.endpoint.headers, **(extra or {})}
        if self.cookie is not None:
            headers["Cookie"] = f"AuthSession={self.cookie}"
        elif self.use_basic and self.endpoint.username is not None:
            headers["Authorization"] = self._basic_header()
        return headers

    def url(self, path: str) -> str:
        base = self.endpoint.url
        return base + path if base.endswith("/") else base + "/" + path

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      headers: dict | None = None) -> tuple[int, Any]:
        """One JSON request with CouchDB-like retries on connection errors and 5xx answers."""
        data = None if body is None else json.dumps(body)
        extra = dict(headers or {})
        if data is not None:
            extra.setdefault("Content-Type", "application/json")
        refreshed = False
        for attempt in itertools.count():
            try:
                async with self.http.request(method, self.url(path), params=params, data=data,
                                             headers=self._headers(extra), timeout=self.timeout) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                if attempt == self.retries:
                    raise ReplicationCrash(erlang_term((Atom("http_request_failed"), method, self.url(path),
                                                        Atom(type(exc).__name__)))) from None
                await asyncio.sleep(min(0.25 * 2 ** attempt, 5))
                continue
            if status in (401, 403) and self.cookie is not None and not refreshed and (
                    time.monotonic() - self.cookie_time >= MIN_SESSION_REFRESH_SECONDS):
                refreshed = True
                await self.initialize()
                continue
            if status >= 500 and attempt < self.retries:
                await asyncio.sleep(min(0.25 * 2 ** attempt, 5))
                continue
            try:
                return status, json.loads(raw) if raw else None
            except ValueError:
                return status, raw.decode(errors="replace")

    def stream(self, method: str, path: str, *, params: dict, body: Any = None):
        data = None if body is None else json.dumps(body)
        extra = {"Content-Type": "application/json"} if data is not None else None
        return self.http.request(method, self.url(path), params=params, data=data,
                                 headers=self._headers(extra), timeout=self.timeout)


@dataclass
class Stats:
    revisions_checked: int = 0
    missing_revisions_found: int = 0
    docs_read: int = 0
    docs_written: int = 0
    doc_write_failures: int = 0
    changes_pending: int | None = 0
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
        """Find the start sequence from `_local/<id>` on both sides (compare_replication_logs/2)."""
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
            return
        target_sessions = {h.get("session_id"): h for h in tgt.get("history", [])}
        for entry in src.get("history", []):
            if entry.get("session_id") in target_sessions:
                self.start_seq, self.history = entry.get("recorded_seq", 0), src.get("history", [])
                return

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
        await self.start()
        on_progress(self.stats)
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
            on_progress(self.stats)
        self.stats.through_seq = self.stats.source_seq
        self.stats.changes_pending = 0
        await self.checkpoint()
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
                self.stats.changes_pending = queue.qsize()
                await self._replicate_batch(batch)
                on_progress(self.stats)
        finally:
            reader.cancel()
            checkpointer.cancel()

    async def _checkpoint_periodically(self, queue: asyncio.Queue, on_progress) -> None:
        try:
            while True:
                await asyncio.sleep(self.rep.checkpoint_interval_ms / 1000)
                await self.checkpoint()
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
