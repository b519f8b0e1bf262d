"""CouchDB 3.x authorisation: who may read, write, write design documents and `_security` in a database.

couch_db:check_is_member/1 and check_is_admin/1 (src/couch/src/couch_db.erl): a server admin (role
`_admin`) passes everything; db admins (names/roles in `admins`) may write design docs and `_security`;
members (names/roles in `members`) read and write documents; a `members` with no names and no roles
makes the database public. Anonymous users get 401, named users 403, with different reasons.
"""

from __future__ import annotations

from .errors import CouchError

ADMIN_ONLY_SECURITY = {"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}}


class UserCtx:
    __slots__ = ("name", "roles", "handler")

    def __init__(self, name: str | None = None, roles: list[str] | None = None, handler: str | None = None):
        self.name = name
        self.roles = roles or []
        self.handler = handler  # "default" (basic), "cookie", or None for anonymous

    @property
    def is_server_admin(self) -> bool:
        return "_admin" in self.roles

    def json(self) -> dict:
        return {"name": self.name, "roles": list(self.roles)}


ANONYMOUS = UserCtx()


def _listed(ctx: UserCtx, group: dict | None) -> bool:
    if not isinstance(group, dict):
        return False
    if ctx.name is not None and ctx.name in (group.get("names") or []):
        return True
    roles = group.get("roles") or []
    return any(role in roles for role in ctx.roles)


def is_db_admin(ctx: UserCtx, security: dict) -> bool:
    return ctx.is_server_admin or _listed(ctx, security.get("admins"))


def is_member(ctx: UserCtx, security: dict) -> bool:
    if is_db_admin(ctx, security):
        return True
    members = security.get("members", security.get("readers"))
    if not isinstance(members, dict) or (not members.get("names") and not members.get("roles")):
        return True  # no members: a public database
    return _listed(ctx, members)


def _security_error(ctx: UserCtx, reason: str) -> CouchError:
    if ctx.name is None:
        return CouchError(401, "unauthorized", reason)
    return CouchError(403, "forbidden", reason)


def check_member(ctx: UserCtx, security: dict) -> None:
    if not is_member(ctx, security):
        reason = ("You are not authorized to access this db." if ctx.name is None
                  else "You are not allowed to access this db.")
        raise _security_error(ctx, reason)


def check_db_admin(ctx: UserCtx, security: dict) -> None:
    if not is_db_admin(ctx, security):
        raise _security_error(ctx, "You are not a db or server admin.")


def check_server_admin(ctx: UserCtx) -> None:
    """chttpd:verify_is_server_admin/1: always 401, even for a signed-in non-admin."""
    if not ctx.is_server_admin:
        raise CouchError(401, "unauthorized", "You are not a server admin.")


def validate_security_object(security) -> bool:
    """couch_db:validate_security_object/1; the caller turns False into the clustered 500 no_majority."""
    if not isinstance(security, dict):
        return False
    for field in ("admins", "members"):
        group = security.get(field, security.get("readers", {}) if field == "members" else {})
        if not isinstance(group, dict):
            return False
        for key in ("names", "roles"):
            values = group.get(key, [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                return False
    return True
