"""The plugin contract: the one statement of what a kind is and which hooks the engine calls.

A kind module may play two roles:

- ManifestKind: one `kind:` of YAML. It names its JSON Schema, adds semantic
  checks, and expands a manifest into Desired objects.
- ResourceKind: one kind of live object. It reads the live state in bulk,
  compares one wanted object with its live counterpart, and applies changes.

A module exposes module-level `MANIFEST` and/or `RESOURCE` instances of subclasses of these; the
registry in `couch_reconciler.kinds` discovers them, so adding a kind is adding one module (and its schema
file). The abstract methods are required; every other hook has a default that does nothing special,
and the engine calls it for every kind.

How the engine drives a ResourceKind (couch_reconciler/plan.py, couch_reconciler/apply.py):

1. expand: Desired objects with the same (kind, key) are folded with `merge(first, second)`;
   the default refuses, and a refusal (ReconcileError) makes the second one a conflict diagnostic.
2. observe(session, wanted, prune=...): once per plan, for kinds that have wanted objects or may
   prune. Return live objects by key: every wanted one that exists and, when `prune` is true,
   every managed one (carrying this tool's ownership marker, couch_reconciler/ownership.py) that could
   be deleted. Read in bulk; share reads with other kinds through `reads.shared`. `reads` names what
   observe reads (couch_reconciler/reads.py: CLUSTER_CONFIG, DATABASES, USER_DOCUMENTS,
   REPLICATION_DOCUMENTS): kinds whose reads
   are disjoint are observed at once, each on its own thread, and kinds sharing a read in `order`, so the
   later one reuses what the earlier read. A kind that declares no reads (None) is observed alone.
3. diff(wanted, live) for every key in wanted | live. `wanted is None` means the manifests no
   longer list it: return `self.prune(live)` (a Delete only when `live.managed`). The engine
   fills `Change.desired` itself; a Delete or Replace that destroys data sets `Change.destroys`
   ("12 documents"), which needs --allow-delete-data. `warnings(wanted, live)` yields plan notes;
   `summary_warnings(changes, live, wanted)` yields notes about all of the kind's objects at once (a
   view rebuild across thousands of databases).
4. apply(session, changes, secrets): changes of this kind only, in plan order, in chunks (the
   engine reports progress between chunks); `secrets` maps a change's key to its {field: SecretRef},
   resolved only here. Raise ReconcileError/ServerError with one line naming the object on failure.
   Writes must be safe to repeat: a rerun after a failure converges.
5. reread(session, changes): the current Observed of exactly the objects these changes touch, for
   `apply PLANFILE` to refuse a stale plan before writing anything (a Change whose `version`
   differs from the reread one, or a Create whose key now exists). The default observes the
   changes' wanted objects.
6. parent(key): (kind, key) of the object this one lives in (the security object of database `db`
   lives in ("database", "db")), or None. When the parent is created or replaced, the engine diffs
   this object against `live=None`, since the replaced parent loses it.
7. founding(change): for a change to an object whose parent an earlier change of the same apply
   creates (or replaces), `(name, body)` when the parent's creation can make this change itself,
   else None. The engine puts `body` in the parent change's `after` under `name` (the parent kind
   must know that name: the database kind writes `after["security"]` as its new `_security`) and
   reports this change done without calling `apply` for it. Return None whenever the object could
   differ from `body` by the time this change would run (another writer at creation, a merge that
   must see what is there).
8. follows_parent_version (with `parent`): True when the object cannot change without its parent's
   Observed.version changing (a `_security` write bumps its database's `update_seq`). Such a kind shares
   a read with its parent kind, so it is observed after it; inside `reads.remembering` (`reconcile watch`)
   the engine then skips re-reading objects whose parent's version is unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

from ..client import CouchSession
from ..errors import ReconcileError
from ..model import Change, Delete, Desired, DesiredState, Diagnostic, Manifest, Observed, Template
from ..secrets import SecretRef


class ManifestKind(ABC):
    kind: ClassVar[str]  # as written in YAML: "Database"
    schema: ClassVar[str]  # file name under couch_reconciler/schemas/: "database.schema.json"
    # False when names need not be unique across the kind (the kind's check then says what must be unique).
    unique_names: ClassVar[bool] = True

    @abstractmethod
    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterable[Diagnostic]:
        """Semantic checks beyond the schema, over this kind's manifests (`every` is all manifests, for
        cross-references). Only manifests whose shape the schema accepted reach it."""

    @abstractmethod
    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        """The objects the manifest wants, in the shape CouchDB stores them; reads no server state."""

    def template(self, manifest: Manifest, every: Sequence[Manifest]) -> Template | None:
        """A Template when what the manifest wants depends on live state (the resolve stage expands it once
        the server has been read), with the manifests of `every` that name it; None for most kinds."""
        return None

    def resolve(self, session: CouchSession, templates: Sequence[Template], state: DesiredState,
                kinds: Mapping[str, ResourceKind], prune: bool) -> list[str]:
        """Add to `state` (with `state.add(desired, subject, kinds)`) the objects this kind's templates want,
        reading the server as needed, inside the plan's observation scope; return plan warnings. `prune`: the
        plan may delete managed objects nothing wants (--allow-delete)."""
        return []


class ResourceKind(ABC):
    name: ClassVar[str]  # as in Desired.kind: "database"
    order: ClassVar[int]  # apply order, lower first: database 10, security 20, design docs 30, user 40...
    follows_parent_version: ClassVar[bool] = False
    # What observe reads (names in couch_reconciler/reads.py); None: unknown, so observed alone, in `order`.
    reads: ClassVar[frozenset[str] | None] = None

    @abstractmethod
    def observe(self, session: CouchSession, wanted: Sequence[Desired], prune: bool = False
                ) -> Mapping[str, Observed]:
        """Read, in bulk, the live objects wanted, plus (when `prune`) the managed ones that could be pruned."""

    @abstractmethod
    def diff(self, wanted: Desired | None, live: Observed | None) -> Change | None:
        """The change that makes `live` what `wanted` says, or None."""

    @abstractmethod
    def apply(self, session: CouchSession, changes: Sequence[Change],
              secrets: Mapping[str, Mapping[str, SecretRef]]) -> None:
        """Make these changes of this kind, in order; safe to repeat."""

    def merge(self, first: Desired, second: Desired) -> Desired:
        raise ReconcileError(f"{second.kind}/{second.key} is already wanted by {first.source}")

    def warnings(self, wanted: Desired | None, live: Observed | None) -> Iterable[str]:
        return ()

    def summary_warnings(self, changes: Sequence[Change], live: Mapping[str, Observed],
                         wanted: Mapping[str, Desired]) -> Iterable[str]:
        return ()

    def reread(self, session: CouchSession, changes: Sequence[Change]) -> Mapping[str, Observed]:
        return self.observe(session, [change.desired for change in changes if change.desired],
                            prune=any(isinstance(change, Delete) for change in changes))

    def parent(self, key: str) -> tuple[str, str] | None:
        return None

    def founding(self, change: Change) -> tuple[str, Any] | None:
        return None

    def prune(self, live: Observed | None, destroys: Callable[[Observed], str | None] = lambda live: None
              ) -> Delete | None:
        """The change for a live object no manifest lists: a Delete only when this tool created it (its
        ownership marker), never for one made by hand, by an application, by sign-up or by couch_peruser.
        `destroys` says what data deleting it loses (such a Delete needs --allow-delete-data)."""
        if live is None or not live.managed:
            return None
        return Delete(self.name, live.key, None, before=dict(live.body), version=live.version,
                      destroys=destroys(live), notes=("no manifest lists it; couch-reconciler created it",))
