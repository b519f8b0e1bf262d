"""User: a document in `_users` (its password from a secret reference)."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from ..expand import Desired
from ..load import Manifest
from ..secrets import SecretRef
from ..validate import Diagnostic, user_name_problem

# `_users` refuses roles starting with `_`, except this one (its _auth validate_doc_update).
_ALLOWED_SYSTEM_ROLES = ("_metrics",)


class UserManifest:
    kind = "User"
    schema = "user.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        for manifest in manifests:
            problem = user_name_problem(manifest.name)
            if problem:
                yield Diagnostic.at(manifest, ("metadata", "name"), problem, "choose another user name")
            for index, role in enumerate(manifest.spec.get("roles", [])):
                if role.startswith("_") and role not in _ALLOWED_SYSTEM_ROLES:
                    yield Diagnostic.at(manifest, ("spec", "roles", index),
                                        f"role `{role}` is a system role, which `_users` refuses in user documents",
                                        "grant server-admin rights with `kind: ServerAdmin` instead")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        spec = manifest.spec
        secrets = {"password": SecretRef.parse(spec["password"], manifest.base_dir)} if "password" in spec else {}
        options = {"prune": spec["prune"]} if "prune" in spec else {}
        yield Desired("user", manifest.name, body={"roles": sorted(spec.get("roles", [])), **spec.get("fields", {})},
                      source=manifest.where("metadata", "name"), secrets=secrets, options=options)


MANIFEST = UserManifest()
