"""Database endpoints (chttpd_db.erl): create and delete, `_security`, `_revs_limit`, `_ensure_full_commit`,
`_compact` and `_view_cleanup`; `_shards` (mem3_httpd.erl)."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from ..database import Database, shard_ranges
from ..errors import CouchError, bad_request, forbidden, method_not_allowed
from ..security import check_db_admin, is_db_admin, validate_security_object
from .base import Request, allow, json_response


async def create_db(req: Request, name: str) -> web.Response:
    """chttpd_db:create_db_req/2."""
    q = shard_param(req, "q")
    n = shard_param(req, "n")
    partitioned = req.query.get("partitioned", "false")
    if partitioned not in ("true", "false"):
        raise bad_request("Invalid `partitioned` parameter")
    if partitioned == "true" and name.startswith("_"):
        raise bad_request("Cannot partition a system database")
    req.cluster.check_new_db(name)
    await req.cluster.open_dbs.create(req.cluster.shards_of_new_db(q))
    req.cluster.create_db(name, q=q, n=n, partitioned=partitioned == "true")  # 412 when another creation won meanwhile
    return json_response({"ok": True}, 201, {"Location": req.absolute("/" + quote(name, safe=""))})


def shard_param(req: Request, param: str) -> int | None:
    value = req.query.get(param)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise bad_request(f"The `{param}` value should be a positive integer.")
    return int(value)


async def delete_db(req: Request, name: str) -> web.Response:
    if "rev" in req.query:
        raise bad_request("You tried to DELETE a database with a ?=rev parameter. "
                          "Did you mean to DELETE a document instead?")
    req.cluster.delete_db(name)
    return json_response({"ok": True})


async def security(req: Request, db: Database) -> web.Response:
    allow(req, "GET", "HEAD", "PUT")
    if req.method != "PUT":
        return json_response(db.security)
    if (db.name == req.cluster.config.get("chttpd_auth", "authentication_db")
            and not req.cluster.config.get_bool("couchdb", "users_db_security_editable")):
        raise forbidden("You can't edit the security object of the user database.")
    body = await req.json()
    # fabric_db_meta:set_security/3: every shard refuses (not a db admin, or an invalid object), so the
    # coordinator reports that no majority of shards took it.
    if not is_db_admin(req.ctx, db.security) or not validate_security_object(body):
        raise CouchError(500, "error", "no_majority")
    db.set_security(body)
    return json_response({"ok": True})


async def revs_limit(req: Request, db: Database) -> web.Response:
    allow(req, "GET", "PUT")
    if req.method == "GET":
        return json_response(db.revs_limit)
    check_db_admin(req.ctx, db.security)
    value = await req.json()
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise bad_request("Rev limit has to be an integer")
    db.revs_limit = value
    return json_response({"ok": True})


async def ensure_full_commit(req: Request, db: Database) -> web.Response:
    allow(req, "POST")
    if not req.http.content_type.startswith("application/json"):  # chttpd:validate_ctype/2
        raise CouchError(415, "bad_content_type", "Content-Type must be application/json")
    # mem3:shard_creation_time/1: the suffix of the database's shard files, its creation time in seconds.
    return json_response({"ok": True, "instance_start_time": str(db.created)}, 201)


async def shards(req: Request, db: Database) -> web.Response:
    """mem3_httpd:handle_shards_req/2: `/{db}/_shards` maps each range to the nodes holding a copy, and
    `/{db}/_shards/{docid}` names the range (and nodes) of the shard that holds that document. Every copy is
    on the first `n` nodes (all of them when n is the node count, couchsim's default, as mem3 places them)."""
    if req.method not in ("GET", "HEAD"):  # chttpd answers HEAD as GET; the 405 names GET alone
        raise method_not_allowed("GET")
    nodes = req.cluster.node_names[:db.n]
    ranges = [f"{begin:08x}-{end:08x}" for begin, end in shard_ranges(db.q)]
    if len(req.parts) == 2:
        return json_response({"shards": {name: nodes for name in ranges}})
    if len(req.parts) == 3:
        return json_response({"range": ranges[db.shard_index(req.parts[2])], "nodes": nodes})
    raise CouchError(404, "not_found", "missing")
