"""UserDatabases: the database-per-user template (a database, security, design documents and replications per user).

Which users it covers is known only from the server, so it expands to no object here: `expand` keeps it as
a template and reconciler/templates.py resolves it once `_users` has been read (docs/architecture.md).
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Sequence

from ..expand import Desired
from ..load import Manifest
from ..templates import DEFAULT_PREFIX
from ..validate import Diagnostic, role_diagnostics, undeclared_database


class UserDatabasesManifest:
    kind = "UserDatabases"
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


MANIFEST = UserDatabasesManifest()
