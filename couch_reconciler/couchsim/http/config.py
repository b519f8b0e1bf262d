"""`/_node/{node}/_config/...` (chttpd_node.erl): each node's own config store."""

from __future__ import annotations

from aiohttp import web

from ..config import BLACKLISTED_SECTIONS
from ..errors import CouchError, bad_request, not_found
from .base import Request, allow, json_response


async def node(req: Request) -> web.Response:
    """chttpd_node:handle_node_req/1 for `_config`; `/_node/{node}` alone names the node."""
    parts = req.parts
    if len(parts) == 1:
        raise bad_request("Incomplete path to _node request")
    if len(parts) == 2:
        if parts[1] != "_local":
            raise not_found("missing")
        return json_response({"name": req.cluster.local_node})
    config = req.cluster.node_config(parts[1])
    if parts[2] != "_config":
        if parts[2] in ("_stats", "_system", "_versions", "_prometheus"):
            raise CouchError(501, "not_implemented", f"couchsim keeps no {parts[2]}")
        raise not_found("missing")
    if len(parts) == 3:
        allow(req, "GET")
        return json_response({section: dict(values) for section, values in config.sections.items()})
    section = parts[3]
    if len(parts) == 4:
        if section == "_reload":
            allow(req, "POST")
            return json_response({"ok": True})
        allow(req, "GET")
        return json_response(config.section(section))
    if len(parts) > 5:
        raise not_found("missing")
    key = parts[4]
    allow(req, "GET", "PUT", "DELETE")
    if req.method == "GET":
        value = config.get_set(section, key)
        if value is None:
            raise not_found("unknown_config_value")
        return json_response(value)
    if section in BLACKLISTED_SECTIONS:
        raise CouchError(403, "forbidden", "Config section blacklisted for modification over HTTP API.")
    if req.method == "PUT":
        value = await req.json()
        if not isinstance(value, str):
            raise bad_request("config values must be JSON strings")
        old = config.set(section, key, value.strip())
        return json_response(old if old is not None else "")
    old = config.get_set(section, key)
    if old is None:
        raise not_found("unknown_config_value")
    config.delete(section, key)
    return json_response(old)
