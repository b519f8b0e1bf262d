"""What design documents do on a write and a read: validate_doc_update (CouchDB's built-in `_users`
validator as Python, every other one in JavaScript), view indexes and `_info` (couch_reconciler/couchsim/views.py), and
`_changes` filters, all in QuickJS (couch_reconciler/couchsim/js.py) as CouchDB 3.4 can run them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .database import Database, Validator, format_seq
from .revisions import DESIGN_PREFIX, DocEntry, RevNode
from .errors import CouchError
from .js import DesignSandboxes, DesignSandbox, view_definitions
from .security import UserCtx
from .users import AUTH_VALIDATE_SOURCE, validate_user_doc
from .views import DatabaseViews, parse_view_query

BUILTIN_VALIDATORS: dict[str, Validator] = {AUTH_VALIDATE_SOURCE: validate_user_doc}


def _is_javascript(ddoc: dict) -> bool:
    # couch_mrview:validate lets design docs in other languages (Mango's "query") through untouched.
    return ddoc.get("language", "javascript") == "javascript"


class DesignFunctions:
    def __init__(self) -> None:
        # db name -> validators compiled from its design docs; dropped whenever one of them is written
        self._validators: dict[str, list[Validator]] = {}
        self._sandboxes = DesignSandboxes()
        # db name -> (the Database object, its indexes): a deleted and recreated database starts over
        self._views: dict[str, tuple[Database, DatabaseViews]] = {}

    def invalidate(self, db_name: str) -> None:
        # Called when a design doc is written or the database deleted: views rebuild on next query.
        self._validators.pop(db_name, None)
        self._views.pop(db_name, None)

    def validators(self, db: Database) -> list[Validator]:
        """Every validate_doc_update of the database, in design doc id order (as couch_db collects them)."""
        found = self._validators.get(db.name)
        if found is None:
            found = []
            for ddoc_id in sorted(d for d in (db.docs or {}) if d.startswith(DESIGN_PREFIX)):
                ddoc = db.get_design_doc(ddoc_id)
                source = ddoc.get("validate_doc_update") if ddoc else None
                if isinstance(source, str):
                    found.append(self.compile_validator(db, ddoc, source))
            self._validators[db.name] = found
        return found

    def compile_validator(self, db: Database, ddoc: dict, source: str) -> Validator:
        builtin = BUILTIN_VALIDATORS.get(source)
        if builtin is not None:
            return builtin
        sandbox = self._sandboxes.get(ddoc)

        def validate(doc: dict, old: dict | None, user_ctx: UserCtx, sec_obj: dict) -> None:
            # couch_db passes the userCtx with the database's name (couch_db:get_user_ctx/1 as JSON)
            ctx = {"db": db.name, **user_ctx.json()}
            sandbox.validate(doc, old, ctx, sec_obj)

        return validate

    def check_design_doc(self, db: Database, ddoc: dict) -> None:
        if not _is_javascript(ddoc):
            return
        DesignSandbox(ddoc).check_views()

    def _indexes(self, db: Database) -> DatabaseViews:
        known = self._views.get(db.name)
        if known is None or known[0] is not db:
            known = self._views[db.name] = (db, DatabaseViews())
        return known[1]

    async def query_view(self, db: Database, ddoc: dict, view: str, params: dict[str, Any],
                         keys: list | None, ctx: UserCtx) -> dict:
        index = self._indexes(db).index(ddoc)
        query = parse_view_query(params, {"keys": keys} if keys is not None else None)
        local_seq = bool((ddoc.get("options") or {}).get("local_seq"))
        body = index.query(view, query, lambda since: _changes(db, since, local_seq),
                           lambda doc_id: _load(db, doc_id))
        if "update_seq" in body:
            body["update_seq"] = format_seq(body["update_seq"] or 0)
        return body

    async def design_info(self, db: Database, ddoc: dict) -> dict:
        return self._indexes(db).index(ddoc).info()

    def view_filter(self, db: Database, view_path: str) -> Callable[[DocEntry, RevNode], bool]:
        """``_changes?filter=_view&view=ddoc/view``: a change passes when the view's map emits for its doc
        (couch_changes:configure_filter("_view", ...) and couch_query_servers:filter_view)."""
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

        def accept(entry: DocEntry, node: RevNode) -> bool:
            return bool(sandbox.map_docs([parts[1]], [db.doc_json(entry, node)])[0][0])

        return accept

    def change_filter(self, db: Database, ddoc: dict, name: str, req_json: dict
                      ) -> Callable[[DocEntry, RevNode], bool]:
        """``_changes?filter=ddoc/name``: a change passes when ``filters[name](doc, req)`` is truthy;
        `req_json` is the request as couch_httpd_external:json_req_obj/2 gives it to the filter."""
        sandbox = self._sandboxes.get(ddoc)

        def accept(entry: DocEntry, node: RevNode) -> bool:
            return sandbox.filter_docs(name, [db.doc_json(entry, node, revs=True)], req_json)[0]

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
