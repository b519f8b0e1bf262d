"""Replication documents as the replicator reads them: endpoints, options, replication ids, and the
errors a job reports.

Parsing and validation follow couch_replicator_parse.erl and couch_replicator_docs.erl; replication ids
follow couch_replicator_ids.erl (version 4: server uuid, endpoints without passwords, filter).
"""
from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import unquote, urlsplit, urlunsplit

from .documents import replication_doc_error

REP_ID_VERSION = 4


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
