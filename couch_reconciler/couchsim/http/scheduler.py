"""`/_scheduler/jobs` and `/_scheduler/docs` (couch_replicator_httpd.erl)."""

from __future__ import annotations

from aiohttp import web

from ..errors import CouchError, not_found
from ..query import ranged_int, states
from ..replication.documents import REPLICATION_STATES, is_replicator_db
from .base import Request, allow, json_response


def split_docs_path(parts: list[str]) -> tuple[str, str | None]:
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


async def scheduler(req: Request) -> web.Response:
    allow(req, "GET", "HEAD")
    replicator = req.cluster.replicator
    parts = req.parts
    if len(parts) >= 2 and parts[1] == "jobs":
        if len(parts) == 3:
            return json_response(replicator.scheduler_job(parts[2]))
        return json_response(replicator.scheduler_jobs(ranged_int(req.query, "limit", 100),
                                                       ranged_int(req.query, "skip", 0)))
    if len(parts) >= 2 and parts[1] == "docs":
        db_name, doc_id = split_docs_path(parts[2:])
        if doc_id is None:
            return json_response(replicator.scheduler_docs(
                db_name, states(req.query, REPLICATION_STATES), ranged_int(req.query, "limit", None),
                ranged_int(req.query, "skip", 0)))
        return json_response(replicator.scheduler_doc(db_name, doc_id))
    raise not_found("missing")
