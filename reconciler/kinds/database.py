"""Database: a CouchDB database and its `_security` object."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from ..expand import Desired
from ..load import Manifest
from ..validate import Diagnostic, database_name_problem, role_diagnostics


class DatabaseManifest:
    kind = "Database"
    schema = "database.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        for manifest in manifests:
            problem = database_name_problem(manifest.name)
            if problem:
                yield Diagnostic.at(manifest, ("metadata", "name"), problem, "rename it")
            security = manifest.spec.get("security")
            if security is None:
                continue
            for group in ("members", "admins"):
                roles = security.get(group, {}).get("roles", [])
                yield from role_diagnostics(manifest, ("spec", "security", group, "roles"), roles, every)
            if manifest.name == "_users" and not _users_security_editable(every):
                # CouchDB answers 403 to any _users/_security write unless this is on (default false).
                yield Diagnostic.at(manifest, ("spec", "security"),
                                    "CouchDB refuses changes to _users/_security",
                                    "remove `security`, or also declare a NodeConfig setting "
                                    "[couchdb] users_db_security_editable to true")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        spec = manifest.spec
        options = {key: spec[key] for key in ("q", "n", "prune") if key in spec}
        yield Desired("database", manifest.name, body={"partitioned": spec.get("partitioned", False)},
                      source=manifest.where("metadata", "name"), options=options)
        security = spec.get("security")
        if security is not None:
            body = {group: {"names": list(security.get(group, {}).get("names", [])),
                            "roles": list(security.get(group, {}).get("roles", []))}
                    for group in ("members", "admins")}
            yield Desired("security", manifest.name, body=body, source=manifest.where("spec", "security"),
                          options={"mode": security.get("mode", "exact")})


def _users_security_editable(every: Sequence[Manifest]) -> bool:
    return any(m.kind == "NodeConfig" and m.spec["section"] == "couchdb"
               and str(m.spec["values"].get("users_db_security_editable")).lower() == "true" for m in every)


MANIFEST = DatabaseManifest()
