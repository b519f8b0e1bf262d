"""What every handler shares: the request as a handler sees it, and CouchDB's JSON answers."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from .. import COUCHDB_VERSION
from ..cluster import Cluster
from ..errors import CouchError, bad_request, method_not_allowed
from ..security import UserCtx

SERVER_HEADER = f"CouchDB/{COUCHDB_VERSION} (Erlang OTP/25)"
JSON_HEADERS = {"Content-Type": "application/json", "Cache-Control": "must-revalidate", "Server": SERVER_HEADER}


class Request:
    """What a handler needs: the aiohttp request, CouchDB's path parts, the user and the cluster."""
    __slots__ = ("http", "parts", "ctx", "cluster", "query", "method")

    def __init__(self, http: web.Request, parts: list[str], ctx: UserCtx, cluster: Cluster):
        self.http = http
        self.parts = parts
        self.ctx = ctx
        self.cluster = cluster
        self.query = http.query
        self.method = http.method

    async def json(self, require_ctype: bool = False) -> Any:
        """chttpd:json_body/1 (and validate_ctype/2 where CouchDB checks it)."""
        if require_ctype and not self.http.content_type.startswith("application/json"):
            raise CouchError(415, "bad_content_type", "Content-Type must be application/json")
        raw = await self.http.read()
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise bad_request("invalid UTF-8 JSON")

    async def json_object(self, require_ctype: bool = False) -> dict:
        body = await self.json(require_ctype)
        if not isinstance(body, dict):
            raise bad_request("Request body must be a JSON object")
        return body

    def absolute(self, path: str) -> str:
        return f"{self.http.scheme}://{self.http.host}{path}"


def allow(req: Request, *methods: str) -> None:
    if req.method not in methods:
        raise method_not_allowed(",".join(methods))


def dumps(body: Any) -> bytes:
    return (json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=status,
                        headers={**JSON_HEADERS, **headers} if headers else JSON_HEADERS)


def etag(value: Any) -> str:
    """couch_httpd:make_etag/1: a quoted hash of the answer's term."""
    return '"' + hashlib.md5(dumps(value)).hexdigest() + '"'


def error_response(exc: CouchError) -> web.Response:
    return json_response(exc.body(), exc.status, exc.headers or None)


def not_modified(tag: str) -> web.Response:
    return web.Response(status=304, headers={"ETag": tag, "Server": SERVER_HEADER})
