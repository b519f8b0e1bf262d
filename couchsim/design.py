"""What design documents do: validation functions, views and `_info`.

Part 1 runs no JavaScript. It knows CouchDB's built-in validation functions (the `_users` one) as Python and
answers view and `_info` requests with 501 `not_implemented`. couchsim part 2 replaces `compile_validator`,
`query_view` and `design_info` (e.g. by subclassing and assigning `cluster.design`) with a JavaScript engine;
everything else calls through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .database import DESIGN_PREFIX, Validator
from .errors import CouchError
from .users import AUTH_VALIDATE_SOURCE, validate_user_doc

if TYPE_CHECKING:
    from .database import Database
    from .security import UserCtx

BUILTIN_VALIDATORS: dict[str, Validator] = {AUTH_VALIDATE_SOURCE: validate_user_doc}


def needs_javascript(what: str) -> CouchError:
    return CouchError(501, "not_implemented", f"couchsim part 1 runs no JavaScript: {what}")


class DesignFunctions:
    def __init__(self):
        # db name -> validators compiled from its design docs; dropped whenever one of them is written
        self._validators: dict[str, list[Validator]] = {}

    def invalidate(self, db_name: str) -> None:
        self._validators.pop(db_name, None)

    def validators(self, db: Database) -> list[Validator]:
        """Every validate_doc_update of the database, in design doc id order (as couch_db collects them)."""
        found = self._validators.get(db.name)
        if found is None:
            found = []
            for ddoc_id in sorted(d for d in (db.docs or {}) if d.startswith(DESIGN_PREFIX)):
                ddoc = db.get_design_doc(ddoc_id)
                source = ddoc.get("validate_doc_update") if ddoc else None
                if isinstance(source, str):
                    validator = self.compile_validator(db, ddoc, source)
                    if validator is not None:
                        found.append(validator)
            self._validators[db.name] = found
        return found

    def compile_validator(self, db: Database, ddoc: dict, source: str) -> Validator | None:
        """Part 1 runs only the built-in functions; other JavaScript validators are not enforced yet."""
        return BUILTIN_VALIDATORS.get(source)

    def check_design_doc(self, db: Database, ddoc: dict) -> None:
        """Called before a design doc is written; part 2 raises 400 compilation_error for bad JavaScript."""

    async def query_view(self, db: Database, ddoc: dict, view: str, params: dict[str, Any],
                         keys: list | None, ctx: UserCtx) -> dict:
        views = ddoc.get("views")
        if not isinstance(views, dict) or view not in views:
            raise CouchError(404, "not_found", "missing_named_view")
        raise needs_javascript("views")

    async def design_info(self, db: Database, ddoc: dict) -> dict:
        raise needs_javascript("design document _info")
