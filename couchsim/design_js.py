"""couchsim part 2: design documents run their JavaScript (couchsim/js.py) and views are indexed
(couchsim/views.py), plugged into the server through ``couchsim.design.DesignFunctions``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .database import format_seq
from .design import BUILTIN_VALIDATORS, DesignFunctions
from .errors import CouchError
from .js import DesignSandbox, DesignSandboxes, QueryServerError, view_definitions
from .views import DatabaseViews, parse_view_query

if TYPE_CHECKING:
    from .app import Request
    from .database import Database, DocEntry, Validator
    from .security import UserCtx


def couch_error(error: QueryServerError) -> CouchError:
    return CouchError(error.status, error.error, error.reason)


def _is_javascript(ddoc: dict) -> bool:
    # couch_mrview:validate lets design docs in other languages (Mango's "query") through untouched.
    return ddoc.get("language", "javascript") == "javascript"


class JavaScriptDesignFunctions(DesignFunctions):
    def __init__(self) -> None:
        super().__init__()
        self._sandboxes = DesignSandboxes()
        # db name -> (the Database object, its indexes): a deleted and recreated database starts over
        self._views: dict[str, tuple[Database, DatabaseViews]] = {}

    def invalidate(self, db_name: str) -> None:
        # Called when a design doc is written or the database deleted: views rebuild on next query.
        super().invalidate(db_name)
        self._views.pop(db_name, None)

    def compile_validator(self, db: Database, ddoc: dict, source: str) -> Validator | None:
        builtin = BUILTIN_VALIDATORS.get(source)
        if builtin is not None:
            return builtin
        sandbox = self._sandboxes.get(ddoc)

        def validate(doc: dict, old: dict | None, user_ctx: UserCtx, sec_obj: dict) -> None:
            # couch_db passes the userCtx with the database's name (couch_db:get_user_ctx/1 as JSON)
            ctx = {"db": db.name, **user_ctx.json()}
            try:
                sandbox.validate(doc, old, ctx, sec_obj)
            except QueryServerError as error:
                raise couch_error(error) from None

        return validate

    def check_design_doc(self, db: Database, ddoc: dict) -> None:
        if not _is_javascript(ddoc):
            return
        try:
            DesignSandbox(ddoc).check_views()
        except QueryServerError as error:
            raise couch_error(error) from None

    def _indexes(self, db: Database) -> DatabaseViews:
        known = self._views.get(db.name)
        if known is None or known[0] is not db:
            known = self._views[db.name] = (db, DatabaseViews())
        return known[1]

    async def query_view(self, db: Database, ddoc: dict, view: str, params: dict[str, Any],
                         keys: list | None, ctx: UserCtx) -> dict:
        try:
            index = self._indexes(db).index(ddoc)
            query = parse_view_query(params, {"keys": keys} if keys is not None else None)
            local_seq = bool((ddoc.get("options") or {}).get("local_seq"))
            body = index.query(view, query, lambda since: _changes(db, since, local_seq),
                               lambda doc_id: _load(db, doc_id))
        except QueryServerError as error:
            raise couch_error(error) from None
        if "update_seq" in body:
            body["update_seq"] = format_seq(body["update_seq"] or 0)
        return body

    async def design_info(self, db: Database, ddoc: dict) -> dict:
        return self._indexes(db).index(ddoc).info()

    def view_filter(self, db: Database, req: Request) -> Callable[[DocEntry], bool]:
        """``_changes?filter=_view&view=ddoc/view``: a change passes when the view's map emits for its doc
        (couch_changes:configure_filter("_view", ...) and couch_query_servers:filter_view)."""
        view_path = req.query.get("view", "")
        if not view_path:
            raise CouchError(400, "bad_request", "`view` filter parameter is not provided.")
        parts = [part for part in view_path.split("/") if part]
        if len(parts) != 2:
            raise CouchError(400, "bad_request", "`view` must be of the form `designname/viewname`")
        ddoc = db.get_design_doc("_design/" + parts[0])
        if ddoc is None:
            raise CouchError(404, "not_found", "missing")
        if parts[1] not in view_definitions(ddoc):
            raise CouchError(404, "not_found", f"missing json key: {parts[1]}")
        sandbox = self._sandboxes.get(ddoc)

        def accept(entry: DocEntry) -> bool:
            try:
                return bool(sandbox.map_docs([parts[1]], [db.doc_json(entry, entry.winner)])[0][0])
            except QueryServerError as error:
                raise couch_error(error) from None

        return accept

    def change_filter(self, db: Database, ddoc: dict, name: str, req: Request) -> Callable[[DocEntry], bool]:
        """``_changes?filter=ddoc/name``: a change passes when ``filters[name](doc, req)`` is truthy."""
        sandbox = self._sandboxes.get(ddoc)
        # couch_httpd_external:json_req_obj, the fields a filter reads
        req_json = {
            "method": req.method,
            "path": list(req.parts),
            "query": dict(req.query),
            "headers": dict(req.http.headers),
            "peer": req.http.remote,
            "userCtx": {"db": db.name, **req.ctx.json()},
            "secObj": db.security,
        }

        def accept(entry: DocEntry) -> bool:
            try:
                return sandbox.filter_docs(name, [db.doc_json(entry, entry.winner, revs=True)], req_json)[0]
            except QueryServerError as error:
                raise couch_error(error) from None

        return accept


def _changes(db: Database, since: int | None, local_seq: bool) -> Iterator[tuple[str, dict | None, bool, int]]:
    # couch_index_updater opens each doc with [conflicts, deleted_conflicts] (+ local_seq when the design
    # doc's options ask for it): the classic "conflicts" view depends on it.
    for entry in db.changes_since(since or 0):
        if entry.deleted:
            yield entry.id, None, True, entry.seq
        else:
            doc = db.doc_json(entry, entry.winner, conflicts=True, deleted_conflicts=True, local_seq=local_seq)
            yield entry.id, doc, False, entry.seq


def _load(db: Database, doc_id: str) -> dict | None:
    entry = db.entry(doc_id)
    if entry is None or entry.deleted:
        return None
    return db.doc_json(entry, entry.winner)
