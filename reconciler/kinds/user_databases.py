"""UserDatabases: the database-per-user template (a database, security, design documents and replications per user)."""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Sequence

from ..expand import Desired
from ..load import Manifest
from ..validate import Diagnostic, closest, role_diagnostics, undeclared_database


class UserDatabasesManifest:
    kind = "UserDatabases"
    schema = "user_databases.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        design_documents = sorted({m.name for m in every if m.kind == "DesignDocument"})
        for manifest in manifests:
            spec = manifest.spec
            pattern = spec.get("select", {}).get("namePattern")
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as error:
                    yield Diagnostic.at(manifest, ("spec", "select", "namePattern"),
                                        f"namePattern is not a valid regular expression ({error})", "fix the expression")
            yield from role_diagnostics(manifest, ("spec", "select", "roles"), spec.get("select", {}).get("roles", []),
                                        every)
            for group in ("members", "admins"):
                roles = spec.get("security", {}).get(group, {}).get("roles", [])
                yield from role_diagnostics(manifest, ("spec", "security", group, "roles"), roles, every)
            for index, name in enumerate(spec.get("designDocuments", [])):
                if name not in design_documents:
                    yield Diagnostic.at(manifest, ("spec", "designDocuments", index),
                                        f"no DesignDocument manifest is named `{name}`",
                                        closest(name, design_documents, "declared design documents are")
                                        if design_documents else "declare it with `kind: DesignDocument`")
            for index, replication in enumerate(spec.get("replicateTo", [])):
                yield from undeclared_database(manifest, ("spec", "replicateTo", index, "target"),
                                               replication["target"], every)

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        """Not expanded yet: the template needs the live list of users, which comes with its own issue."""
        return ()


MANIFEST = UserDatabasesManifest()
