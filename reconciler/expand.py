"""Stage 3, expand: manifests -> the objects they want on the server (Desired), one per live object.

A manifest kind may expand to objects of other resource kinds (a Cors manifest
to node-config keys, a Role to user-role memberships, a ServerAdmin to one
config key per node). Expansion is pure: it reads no server state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .errors import ReconcileError
from .load import Manifest, Source
from .secrets import SecretRef

if TYPE_CHECKING:
    from .templates import UserTemplate
    from .validate import Diagnostic


@dataclass(frozen=True)
class Desired:
    """One object the manifests want, in the shape CouchDB stores it."""

    kind: str  # the resource kind that observes, diffs and applies it (a key of kinds.RESOURCES)
    key: str  # identity within the kind: a database name, a user name, "node/section/key"...
    body: Mapping[str, Any]  # the wanted content; never holds a secret value
    source: Source  # the manifest line it comes from, for the plan and for errors
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)  # fields whose value is a secret
    options: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"mode": "merge"}, {"prune": True}


@dataclass
class DesiredState:
    objects: dict[tuple[str, str], Desired] = field(default_factory=dict)  # (kind, key) -> the one wanted object
    diagnostics: list["Diagnostic"] = field(default_factory=list)  # conflicts between manifests
    # Manifests whose objects depend on live state (UserDatabases): reconciler/templates.py resolves them
    # into objects of the kinds above once the server has been read, before those kinds observe.
    templates: list["UserTemplate"] = field(default_factory=list)
    # Kinds whose managed objects nothing wants are deleted even without --allow-delete: a manifest said
    # `prune: true` (common.schema.json), or a template prunes what it made for users who are gone.
    prune_kinds: set[str] = field(default_factory=set)

    def by_kind(self) -> dict[str, dict[str, Desired]]:
        grouped: dict[str, dict[str, Desired]] = {}
        for (kind, key), desired in self.objects.items():
            grouped.setdefault(kind, {})[key] = desired
        return grouped


def expand(manifests: Sequence[Manifest]) -> DesiredState:
    """Every Desired object the manifests produce, one per (kind, key).

    Two manifests may want the same live object (a User's roles and a Role's
    members): the resource kind's `merge` folds them; a kind without one, or a
    merge that refuses, is a conflict reported at the second manifest's line.
    """
    from .kinds import MANIFESTS  # kind modules import this one for Desired
    from .templates import user_templates

    state = DesiredState(templates=user_templates(manifests))
    for manifest in manifests:
        for desired in MANIFESTS[manifest.kind].expand(manifest):
            add(state, desired, manifest.subject)
    return state


def add(state: DesiredState, desired: Desired, subject: str) -> None:
    """Fold `desired` into `state`: a second object with the same (kind, key) merges or is a conflict."""
    from .kinds import RESOURCES
    from .validate import Diagnostic

    if desired.options.get("prune"):
        state.prune_kinds.add(desired.kind)
    identity = (desired.kind, desired.key)
    first = state.objects.get(identity)
    if first is None:
        state.objects[identity] = desired
        return
    merge = getattr(RESOURCES.get(desired.kind), "merge", None)
    try:
        if merge is None:
            raise ReconcileError(f"{desired.kind}/{desired.key} is already wanted by {first.source}")
        state.objects[identity] = merge(first, desired)
    except ReconcileError as conflict:
        state.diagnostics.append(Diagnostic(desired.source, subject, str(conflict),
                                            "keep one manifest for it, or make them agree"))
