"""Between expand and observe, resolve: templates whose objects depend on live state become Desired objects.

`expand` is offline, so a manifest whose objects depend on the server (UserDatabases: one database per user
in `_users`) is kept as a `Template`. This stage, the first step of a plan inside its observation scope,
hands each manifest kind its templates (`ManifestKind.resolve`), which reads what it needs and adds ordinary
objects of the resource kinds to a copy of the state.
"""

from __future__ import annotations

from typing import Mapping

from .client import CouchSession
from .kinds import MANIFESTS, RESOURCES
from .kinds.base import ManifestKind, ResourceKind
from .model import DesiredState


def resolve(session: CouchSession, state: DesiredState, prune: bool = False,
            kinds: Mapping[str, ResourceKind] = RESOURCES, manifests: Mapping[str, ManifestKind] = MANIFESTS
            ) -> tuple[DesiredState, list[str]]:
    """`state` with every object its templates want, and the templates' plan warnings. A state without
    templates comes back as it is, with no request sent."""
    if not state.templates:
        return state, []
    resolved = DesiredState(dict(state.objects), list(state.diagnostics), prune_kinds=set(state.prune_kinds),
                            prune_prefixes={kind: set(prefixes) for kind, prefixes in state.prune_prefixes.items()},
                            origins=dict(state.origins))
    warnings: list[str] = []
    for name in dict.fromkeys(template.manifest.kind for template in state.templates):
        templates = [template for template in state.templates if template.manifest.kind == name]
        warnings += manifests[name].resolve(session, templates, resolved, kinds, prune)
    return resolved, warnings
