"""The `_replicator` database's document rules (couch_replicator_docs:before_doc_update/3 and
after_doc_read/2, couch_replicator_parse): CouchDB 3.x adds an `owner`, refuses documents it could not
run (403 with the parser's reason, e.g. `local_endpoints_not_supported` for a bare database name), and hides
credentials from non-owners. The document processor that runs them is couch_reconciler/couchsim/replication/doc_processor.py."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import forbidden
from ..security import UserCtx, is_db_admin

if TYPE_CHECKING:
    from ..database import Database

REPLICATION_STATES = ("initializing", "error", "running", "pending", "crashing", "completed", "failed")


def is_replicator_db(name: str) -> bool:
    return name == "_replicator" or name.endswith("/_replicator")


BOOLEAN_OPTIONS = ("cancel", "create_target", "winning_revs_only", "continuous", "use_bulk_get")


def endpoint_error(endpoint) -> str | None:
    """couch_replicator_parse:parse_rep_db/3 and check_url/2."""
    if endpoint is None:
        return "Missing replicator database"
    if isinstance(endpoint, dict):
        url = endpoint.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            return "endpoint has an invalid url"
        return None
    if isinstance(endpoint, str):
        if endpoint.startswith(("http://", "https://")):
            return None if urlsplit(endpoint).netloc else "endpoint has an invalid url"
        return "local_endpoints_not_supported"
    return "endpoint has an invalid url"


def replication_doc_error(doc: dict) -> str | None:
    for option in BOOLEAN_OPTIONS:
        if option in doc and not isinstance(doc[option], bool):
            return f"parameter `{option}` must be a boolean"
    if doc.get("cancel") is True and doc.get("id"):
        return None
    for side in ("source", "target"):
        error = endpoint_error(doc.get(side))
        if error:
            return error
    for key, kind, expected in (("create_target_params", dict, "a JSON object"), ("query_params", dict, "an object"),
                                ("doc_ids", list, "an array"), ("selector", dict, "a JSON object")):
        if doc.get(key) is not None and not isinstance(doc[key], kind):
            return f"parameter `{key}` must be {expected}"
    exclusive = [k for k in ("doc_ids", "filter", "selector") if doc.get(k) is not None]
    if len(exclusive) > 1:
        return "`doc_ids`,`filter`,`selector` are mutually exclusive"
    # couch_replicator_filters:parse/1: `_`-prefixed filters are the server's own, others name ddoc/filter.
    name = doc.get("filter")
    if name is not None and not (isinstance(name, str) and (name.startswith("_") or "/" in name)):
        return "Invalid filter. Must match `ddocname/filtername`."
    return None


def strip_credentials(endpoint):
    if isinstance(endpoint, str):
        parts = urlsplit(endpoint)
        if parts.username is None:
            return endpoint
        return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
    if isinstance(endpoint, dict):
        stripped = {k: v for k, v in endpoint.items() if k not in ("headers", "auth")}
        if "url" in stripped:
            stripped["url"] = strip_credentials(stripped["url"])
        return stripped
    return endpoint


class ReplicatorDbBehaviour:
    async def before_doc_update(self, db: Database, doc: dict, ctx: UserCtx) -> dict:
        if doc["_id"].startswith("_design/"):
            return doc
        if "_replicator" not in ctx.roles:
            owner = doc.get("owner")
            if "owner" not in doc or (owner is None and is_db_admin(ctx, db.security)):
                doc = {**doc, "owner": ctx.name}
            elif owner != ctx.name and not is_db_admin(ctx, db.security):
                raise forbidden("Can't update replication documents from other users.")
        if doc.get("_deleted") is True or doc.get("_replication_state") == "failed" or "_replicator" in ctx.roles:
            return doc
        error = replication_doc_error(doc)
        if error:
            raise forbidden(error)
        return doc

    def after_doc_read(self, db: Database, doc: dict, ctx: UserCtx) -> dict:
        if doc["_id"].startswith("_design/") or is_db_admin(ctx, db.security) or doc.get("owner") == ctx.name:
            return doc
        return {**doc, "source": strip_credentials(doc.get("source")), "target": strip_credentials(doc.get("target"))}
