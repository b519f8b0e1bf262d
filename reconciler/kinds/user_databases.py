"""UserDatabases: the database-per-user template (a database, security, design documents and replications per user).

Which users it covers is known only from the server, so it expands to no object here: it is a template
(`UserTemplate`), which reconciler/templates.py resolves once `_users` has been read (docs/architecture.md).
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Sequence

from ..model import DESIGN_DOCUMENT_MANIFEST, USER_DATABASES_MANIFEST, Desired, Diagnostic, Manifest, Template
from .base import ManifestKind
from .checks import USER_DATABASE_PREFIX as DEFAULT_PREFIX
from .checks import role_diagnostics, undeclared_database


def user_database(prefix: str, user: str) -> str:
    """The database couch_peruser gives `user`: couch_peruser.erl `user_db_name` writes each byte of the
    UTF-8 name as `string:to_lower(integer_to_list(Byte, 16))`, lowercase hex with no zero padding (a
    byte below 0x10, only in control characters, is one digit)."""
    return prefix + "".join(format(byte, "x") for byte in user.encode("utf-8"))


class UserTemplate(Template):
    """A UserDatabases manifest and the DesignDocument manifests that name it as their `userDatabases`."""

    @property
    def design_documents(self) -> tuple[Manifest, ...]:
        return self.parts

    @property
    def prefix(self) -> str:
        prefix: str = self.manifest.spec.get("prefix", DEFAULT_PREFIX)
        return prefix

    def selects(self, name: str, roles: Iterable[str]) -> bool:
        select = self.manifest.spec.get("select", {})
        if "roles" in select and not set(select["roles"]) & set(roles):
            return False
        pattern = select.get("namePattern")
        return pattern is None or re.fullmatch(pattern, name) is not None
class UserDatabasesManifest(ManifestKind):
    kind = USER_DATABASES_MANIFEST
    schema = "user_databases.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        for index, manifest in enumerate(manifests):
            spec = manifest.spec
            prefix = spec.get("prefix", DEFAULT_PREFIX)
            for earlier in manifests[:index]:
                other = earlier.spec.get("prefix", DEFAULT_PREFIX)
                if prefix.startswith(other) or other.startswith(prefix):
                    # Both would claim (and keep, or delete) the same databases.
                    yield Diagnostic.at(manifest, ("spec", "prefix"),
                                        f"prefix `{prefix}` overlaps `{other}` of {earlier.subject} "
                                        f"({earlier.where('spec', 'prefix')})",
                                        "give each template a prefix that does not start with another's, "
                                        "or select users in one template")
            select = spec.get("select", {})
            pattern = select.get("namePattern")
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as error:
                    yield Diagnostic.at(manifest, ("spec", "select", "namePattern"),
                                        f"namePattern is not a valid regular expression ({error})", "fix the expression")
            yield from role_diagnostics(manifest, ("spec", "select", "roles"), select.get("roles", []), every)
            yield from role_diagnostics(manifest, ("spec", "grantRoles"), spec.get("grantRoles", []), every)
            for index, role in enumerate(spec.get("grantRoles", [])):
                if role.startswith("_"):
                    yield Diagnostic.at(manifest, ("spec", "grantRoles", index),
                                        f"role `{role}` is a system role, which `_users` refuses in user documents",
                                        "grant a role declared by a Role manifest")
            for group in ("members", "admins"):
                roles = spec.get("security", {}).get(group, {}).get("roles", [])
                yield from role_diagnostics(manifest, ("spec", "security", group, "roles"), roles, every)
            for index, replication in enumerate(spec.get("replicateTo", [])):
                yield from undeclared_database(manifest, ("spec", "replicateTo", index, "target"),
                                               replication["target"], every)

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        """No object of its own: reconciler/templates.py turns the template into per-user objects."""
        return ()

    def template(self, manifest: Manifest, every: Sequence[Manifest]) -> UserTemplate:
        return UserTemplate(manifest, tuple(m for m in every if m.kind == DESIGN_DOCUMENT_MANIFEST
                                            and m.spec.get("userDatabases") == manifest.name))


MANIFEST = UserDatabasesManifest()
