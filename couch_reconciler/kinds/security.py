"""Resource kind `security`: a database's `_security` object (members and admins, names and roles).

Security objects have other writers: couch_peruser adds a user's name, login
services such as superlogin add session keys as names at run time. So a
manifest says how much it owns:

- `mode: exact`: `members` and `admins` are exactly what the manifest lists.
- `mode: merge`: the manifest's names and roles must be there; others stay.

Either way, other top-level keys are left alone: CouchDB keeps them
(couch_db.erl `validate_security_object` checks only `admins` and `members`,
`set_security` stores the whole object), and this tool's ownership marker lives
in one of them.

The `_admin` role, in exact mode: a CouchDB 3.x database starts admin-only,
`{"members":{"roles":["_admin"]},"admins":{"roles":["_admin"]}}`, and a
security object whose members list no name and no role makes the database
public. Server admins pass every check anyway, so `_admin` matters in one
place only: as the sole member it keeps a database private. Hence `_admin` is
never drift where the server has it (a manifest granting `app-user` to a fresh
database adds `app-user` beside it, and the next plan is empty), and a manifest
listing no member at all means admin-only, as on a fresh database: a public
(`{}`) object is drift, brought back to `members.roles: ["_admin"]`.

A database public on purpose (a read-only catalog PouchDB clients sync from) says
so with `public: true` (option `public`): members are then exactly empty, which
validate refuses beside `members` or `mode: merge`, and the plan names it
`members: "public"` with a note, so that no reviewer misses it.

`_security` has no `_rev` and no bulk read: one GET per database over the
session's pool, a digest of the object as its version, and a re-read just
before each write (exact mode refuses when the object changed since the plan;
merge mode merges into what it re-read, so a session key added meanwhile stays).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

from ..client import CouchSession, db_path, decode
from ..databases import existing_databases
from ..errors import ReconcileError
from ..model import DATABASE, SECURITY, Change, Create, Desired, FieldChange, Observed, Update
from ..ownership import MARKER
from ..reads import DATABASES, shared
from ..secrets import SecretRef
from .base import ResourceKind
from .fields import field_changes

GROUPS = ("members", "admins")
SET_PATHS = tuple(f"{group}.{part}" for group in GROUPS for part in ("names", "roles"))
# What CouchDB 3.x gives a new database (docs/couchdb.md; `[couchdb] default_security = admin_only`).
ADMIN_ONLY = {"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}}


def read_security(session: CouchSession, database: str) -> dict | None:
    """The database's security object as stored, or None when the database does not exist."""
    response = session.request("GET", db_path(database, "_security"), ok=(404,), what=f"reading {database}/_security")
    return None if response.status_code == 404 else decode(response, f"reading {database}/_security")


def read_securities(session: CouchSession, databases: Sequence[str]) -> dict[str, dict]:
    """Security objects of existing databases among `databases`: one GET each (CouchDB has no bulk read),
    spread over the session's bounded pool."""
    found = session.map(lambda name: read_security(session, name), databases)
    return {name: security for name, security in zip(databases, found) if security is not None}


def read_observed(session: CouchSession, databases: Sequence[str]) -> dict[str, Observed]:
    """The security objects of the existing databases among `databases`, as the security kind observes them."""
    return {name: _observed(name, security) for name, security in read_securities(session, databases).items()}


def read_with_databases(session: CouchSession) -> dict[str, Observed | None]:
    """Security objects the database kind read in this plan as it opened their databases (None: the database
    was gone by then); empty outside an observation."""
    return shared(session, "security: objects read with their databases", dict)


def digest(security: Mapping[str, Any]) -> str:
    """The version of an object that has no `_rev`: equal objects give equal digests. The ownership marker is
    left out: it is the database kind's, which may restore it earlier in the same apply."""
    kept = {key: value for key, value in security.items() if key != MARKER}
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def groups(security: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """members/admins with both lists present, the shape plans show and compare."""
    return {group: {part: list((security.get(group) or {}).get(part) or []) for part in ("names", "roles")}
            for group in GROUPS}


def compose(base: Mapping[str, Any], desired: Desired) -> dict[str, Any]:
    """The object to write: `base` (what the server holds) changed as the manifest's mode says. Each list is
    read where it is used, not through `groups`: a plan composes once per database (10,000 at a time)."""
    merge = desired.options.get("mode", "exact") == "merge"
    result = dict(base)
    for group in GROUPS:
        have, want = base.get(group) or {}, desired.body.get(group) or {}
        if group == "members" and desired.options.get("public"):
            names, roles = [], []  # no member at all is what makes CouchDB let anyone in
        elif merge:
            names, roles = list(have.get("names") or []), list(have.get("roles") or [])
            names += [n for n in want.get("names") or [] if n not in names]
            roles += [r for r in want.get("roles") or [] if r not in roles]
        else:
            names, roles = list(want.get("names") or []), list(want.get("roles") or [])
            if "_admin" in (have.get("roles") or []) and "_admin" not in roles:
                roles.insert(0, "_admin")
            if group == "members" and not names and not roles:
                roles = ["_admin"]
        result[group] = {"names": names, "roles": roles}
    return result


class SecurityResource(ResourceKind):
    name = SECURITY
    order = 20  # after the database it lives in
    reads = frozenset({DATABASES})  # which exist, and the objects the database kind read as it opened them
    # A `_security` write bumps the database's `update_seq` (docs/couchdb.md, Bulk reads): while that
    # stays the same string, the object read at it is still the server's (see reads.remembering).
    follows_parent_version = True

    def parent(self, key: str) -> tuple[str, str]:
        return (DATABASE, key)

    def observe(self, session: CouchSession, wanted: Sequence[Desired], prune: bool = False
                ) -> Mapping[str, Observed]:
        # Never pruned on its own: a security object goes with its database. Read only where the database
        # exists (the database kind has just listed them), so a first apply of N databases skips N 404s;
        # not again where the database kind read it as it opened the database.
        ahead = read_with_databases(session)
        keys = [desired.key for desired in wanted]
        live = {key: observed for key in keys if (observed := ahead.get(key)) is not None}
        unread = [key for key in keys if key not in ahead]
        existing = existing_databases(session, unread)
        return {**live, **read_observed(session, [key for key in unread if key in existing])}

    def reread(self, session: CouchSession, changes: Sequence[Change]) -> Mapping[str, Observed]:
        return read_observed(session, [change.key for change in changes])

    def diff(self, wanted: Desired | None, live: Observed | None) -> Change | None:
        if wanted is None:
            return None
        if live is None:  # the database is created by this plan: it starts admin-only
            after = groups(compose(ADMIN_ONLY, wanted))
            fields, notes = _public_shown(field_changes({}, after), None, after)
            return Create(self.name, wanted.key, wanted.source, after=after, fields=fields, notes=notes)
        after = groups(compose(live.facts["raw"], wanted))
        if after == live.body:
            return None  # the common case on a converged server: equal lists need no comparison as sets
        fields = field_changes(live.body, after, sets=SET_PATHS)
        if not fields:
            return None
        fields, notes = _public_shown(fields, live.body, after)
        return Update(self.name, wanted.key, wanted.source, before=dict(live.body), after=after, fields=fields,
                      version=live.version, notes=notes)

    def founding(self, change: Change) -> tuple[str, dict] | None:
        """The object a database created by the same apply starts with, written by its creation: no re-read
        and no second write. Safe in both modes: a new database holds only what its creation wrote (merging
        into that gives the same object). couch_peruser may write a user database's security between its
        creation and this write: a template's object for such a database names the user as couch_peruser does
        (kinds/user_databases.py), so nothing of couch_peruser's is lost. A database a plan accepts as it
        finds it (`exists_ok`) and that someone created first gets this object merged into what it holds."""
        if not isinstance(change, Create) or change.desired is None:
            return None
        return ("security", compose(ADMIN_ONLY, change.desired))

    def apply(self, session: CouchSession, changes: Sequence[Change],
              secrets: Mapping[str, Mapping[str, SecretRef]]) -> None:
        list(session.map(lambda change: self._write(session, change), changes))

    def _write(self, session: CouchSession, change: Change) -> None:
        subject = f"security/{change.key}"
        desired = change.desired
        if desired is None:
            raise ReconcileError(f"{subject}: the plan holds no security object to write; make the plan again")
        current = read_security(session, change.key)
        if current is None:
            raise ReconcileError(f"{subject}: database {change.key} does not exist (deleted since the plan?); "
                                 "run plan again")
        exact = desired.options.get("mode", "exact") != "merge"
        if exact and isinstance(change, Update) and digest(current) != change.version:
            raise ReconcileError(f"{subject}: changed on the server since the plan was made; run plan again")
        wanted = compose(current, desired)
        if not field_changes(groups(current), groups(wanted), sets=SET_PATHS):
            return  # someone (or a previous, interrupted apply) already made it so
        # A PUT of the same whole object is idempotent, so the transport may repeat it after a failure.
        session.request("PUT", db_path(change.key, "_security"), body=wanted, retry=True, what=subject)


PUBLIC = "public"
PUBLIC_NOTE = ("members: public: anyone, even without logging in, may read and write its documents "
               "(`public: true` in the manifest)")


def is_public(security: Mapping[str, Any]) -> bool:
    """No member name and no member role: CouchDB lets anyone read and write the documents."""
    members = groups(security)["members"]
    return not members["names"] and not members["roles"]


def _public_shown(fields: tuple[FieldChange, ...], before: Mapping[str, Any] | None, after: Mapping[str, Any]
                  ) -> tuple[tuple[FieldChange, ...], tuple[str, ...]]:
    """A change that makes a database public, or private again, shows its members as one field
    `members: ... -> "public"` (and a note), never as lists quietly becoming empty."""
    was = before is not None and is_public(before)
    if was == is_public(after):
        return fields, ()
    def shown(body: Mapping[str, Any]) -> Any:
        return PUBLIC if is_public(body) else groups(body)["members"]
    members = FieldChange("members", None if before is None else shown(before), shown(after))
    others = tuple(item for item in fields if not item.path.startswith("members."))
    return (members, *others), (PUBLIC_NOTE,) if is_public(after) else ()


def _observed(name: str, security: Mapping[str, Any]) -> Observed:
    return Observed(SECURITY, name, groups(security), digest(security), facts={"raw": dict(security)})


RESOURCE = SecurityResource()
