"""The plugin contract. A kind module may play two roles:

- ManifestKind: one `kind:` of YAML. It names its JSON Schema, adds semantic
  checks, and expands a manifest into Desired objects.
- ResourceKind: one kind of live object. It reads the live state in bulk,
  compares one wanted object with its live counterpart, and applies changes.

A module exposes module-level `MANIFEST` and/or `RESOURCE` instances; the
registry in `reconciler.kinds` discovers them, so adding a kind is adding one
module (and its schema file).

How the engine drives a ResourceKind (reconciler/plan.py, reconciler/apply.py):

1. expand: Desired objects with the same (kind, key) are folded with
   `merge(first, second)` when the kind has it; a kind without `merge`, or a
   `merge` raising ReconcileError, makes the second one a conflict diagnostic.
2. observe(session, wanted, prune=...): once per plan, for kinds that have
   wanted objects or may prune. Return live objects by key: every wanted one
   that exists and, when `prune` is true, every managed one (carrying this
   tool's ownership marker) that could be deleted. Read in bulk; share reads
   with other kinds through caches keyed by the session (see nodes.py).
3. diff(wanted, live) for every key in wanted | live. `wanted is None` means
   the manifests no longer list it: return Delete only when `live.managed`.
   The engine fills `Change.desired` itself; a Delete or Replace that destroys
   data sets `Change.destroys` ("12 documents"), which needs
   --allow-delete-data. `warnings(wanted, live)` (optional) yields plan notes;
   `summary_warnings(changes, live)` (optional) yields notes about all of the
   kind's changes at once (a view rebuild across thousands of databases).
4. apply(session, changes, secrets): changes of this kind only, in plan order,
   in chunks (the engine reports progress between chunks); `secrets` maps a
   change's key to its {field: SecretRef}, resolved only here. Raise
   ReconcileError/ServerError with one line naming the object on failure.
   Writes must be safe to repeat: a rerun after a failure converges.
5. reread(session, keys) (optional): the current Observed of exactly these
   keys, for `apply PLANFILE` to refuse a stale plan before writing anything
   (a Change whose `version` differs from the reread one, or a Create whose key
   now exists). Without it the engine calls observe() with the changes' wanted
   objects.
6. parent(key) (optional): (kind, key) of the object this one lives in (the
   security object of database `db` lives in ("database", "db")). When the
   parent is created or replaced, the engine diffs this object against
   `live=None`, since the replaced parent loses it.
7. founding(change) (optional, with `parent`): for a change to an object whose
   parent an earlier change of the same apply creates (or replaces), `(name,
   body)` when the parent's creation can make this change itself, else None.
   The engine puts `body` in the parent change's `after` under `name` (the
   parent kind must know that name: the database kind writes `after["security"]`
   as its new `_security`) and reports this change done without calling
   `apply` for it. Return None whenever the object could differ from `body` by
   the time this change would run (another writer at creation, a merge that
   must see what is there).
8. follows_parent_version (optional attribute, with `parent`): True when the
   object cannot change without its parent's Observed.version changing (a
   `_security` write bumps its database's `update_seq`). Kinds are observed in
   `order`, parents first; inside `observe.remembering` (`reconcile watch`) the
   engine then skips re-reading objects whose parent's version is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from ..client import CouchSession
    from ..diff import Change
    from ..expand import Desired
    from ..load import Manifest
    from ..observe import Observed
    from ..secrets import SecretRef
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
    order: int  # apply order, lower first: database 10, security 20, design docs 30, user 40...

    def observe(self, session: "CouchSession", wanted: Sequence["Desired"], prune: bool = False
                ) -> Mapping[str, "Observed"]:
        """Read, in bulk, the live objects wanted, plus (when `prune`) the managed ones that could be pruned."""
        ...

    def diff(self, wanted: "Desired | None", live: "Observed | None") -> "Change | None":
        ...

    def apply(self, session: "CouchSession", changes: Sequence["Change"],
              secrets: Mapping[str, Mapping[str, "SecretRef"]]) -> None:
        ...

    # Optional members (looked up with getattr): see the module docstring.
    # def merge(self, first: Desired, second: Desired) -> Desired
    # def warnings(self, wanted: Desired | None, live: Observed | None) -> Iterable[str]
    # def summary_warnings(self, changes: Sequence[Change], live: Mapping[str, Observed]) -> Iterable[str]
    # def reread(self, session: CouchSession, keys: Sequence[str]) -> Mapping[str, Observed]
    # def parent(self, key: str) -> tuple[str, str] | None
    # def founding(self, change: Change) -> tuple[str, Any] | None
    # follows_parent_version: bool

