"""Stage 3, expand: manifests -> the objects they want on the server (Desired), one per live object.

A manifest kind may expand to objects of other resource kinds (a Cors manifest
to node-config keys, a Role to user-role memberships, a ServerAdmin to one
config key per node). Expansion is pure: it reads no server state. A manifest whose
objects depend on live state (UserDatabases) becomes a Template, which the resolve
stage expands once the server has been read.
"""

from __future__ import annotations

from typing import Sequence

from .kinds import MANIFESTS, RESOURCES
from .model import DesiredState, Manifest


def expand(manifests: Sequence[Manifest]) -> DesiredState:
    """Every Desired object the manifests produce, one per (kind, key), and their templates.

    Two manifests may want the same live object (a User's roles and a Role's
    members): the resource kind's `merge` folds them; a kind that refuses is a
    conflict reported at the second manifest's line.
    """
    state = DesiredState()
    for manifest in manifests:
        kind = MANIFESTS[manifest.kind]
        template = kind.template(manifest, manifests)
        if template is not None:
            state.templates.append(template)
        for desired in kind.expand(manifest):
            state.add(desired, manifest.subject, RESOURCES)
    return state
