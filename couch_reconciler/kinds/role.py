"""Role: declares a role name (so security objects may name it) and grants it to users."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from ..model import ROLE_MANIFEST, USER, Desired, Diagnostic, Manifest
from .base import ManifestKind
from .checks import user_name_problem


class RoleManifest(ManifestKind):
    kind = ROLE_MANIFEST
    schema = "role.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        for manifest in manifests:
            if manifest.name.startswith("_"):
                yield Diagnostic.at(manifest, ("metadata", "name"),
                                    f"`{manifest.name}` is a system role: CouchDB owns it and `_users` refuses it",
                                    "choose a name that does not start with `_`")
            for index, member in enumerate(manifest.spec.get("members", [])):
                problem = user_name_problem(member)
                if problem:
                    yield Diagnostic.at(manifest, ("spec", "members", index), problem, "fix the member's name")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        """A membership is a merge into the user's roles: users signed up at run time keep their other roles."""
        for index, member in enumerate(manifest.spec.get("members", [])):
            yield Desired(USER, member, body={"roles": [manifest.name]},
                          source=manifest.where("spec", "members", index), options={"mode": "merge"})


MANIFEST = RoleManifest()
