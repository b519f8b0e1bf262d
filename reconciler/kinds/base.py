"""The plugin contract. A kind module may play two roles:

- ManifestKind: one `kind:` of YAML. It names its JSON Schema, adds semantic
  checks, and expands a manifest into Desired objects.
- ResourceKind: one kind of live object. It reads the live state in bulk,
  compares one wanted object with its live counterpart, and applies changes.

A module exposes module-level `MANIFEST` and/or `RESOURCE` instances; the
registry in `reconciler.kinds` discovers them, so adding a kind is adding one
module (and its schema file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from ..diff import Change
    from ..expand import Desired
    from ..load import Manifest
    from ..observe import Observed
    from ..validate import Diagnostic


class ManifestKind(Protocol):
    kind: str  # as written in YAML: "Database"
    schema: str  # file name under reconciler/schemas/: "database.schema.json"

    def check(self, manifests: Sequence["Manifest"], every: Sequence["Manifest"]) -> Iterable["Diagnostic"]:
        """Semantic checks beyond the schema, over this kind's manifests (`every` is all manifests, for cross-references)."""
        ...

    def expand(self, manifest: "Manifest") -> Iterable["Desired"]:
        ...


class ResourceKind(Protocol):
    name: str  # as in Desired.kind: "database"
    order: int  # apply order, lower first: databases before security before design docs; users before roles

    def observe(self, session: Any, wanted: Sequence["Desired"]) -> Mapping[str, "Observed"]:
        """Read, in bulk, the live objects wanted plus the managed ones that could be pruned."""
        ...

    def diff(self, wanted: "Desired | None", live: "Observed | None") -> "Change | None":
        ...

    def apply(self, session: Any, changes: Sequence["Change"]) -> None:
        ...
