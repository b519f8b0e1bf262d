"""HTTP to one replication endpoint, with CouchDB's session auth plugin and retries
(couch_replicator_auth_session.erl, couch_replicator_httpc.erl)."""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from .erlang import Atom, pretty
from .rep import Endpoint, ReplicationCrash

# CouchDB's session plugin only treats a cookie failure as stale after this many seconds.
MIN_SESSION_REFRESH_SECONDS = 5


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
                raise ReplicationCrash(pretty((Atom("replication_auth_error"), (
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
            raise ReplicationCrash(pretty((Atom("replication_auth_error"), term)))

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
                    raise ReplicationCrash(pretty((Atom("http_request_failed"), method, self.url(path),
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
