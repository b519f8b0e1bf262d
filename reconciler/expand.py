"""Stage 3, expand: manifests -> the objects they want on the server (Desired), one per live object.

A manifest kind may expand to objects of other resource kinds (a Cors manifest
to node-config keys, a Role to user-role memberships, a ServerAdmin to one
config key per node). Expansion is pure: it reads no server state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .load import Source
from .secrets import SecretRef


@dataclass(frozen=True)
class Desired:
    """One object the manifests want, in the shape CouchDB stores it."""

    kind: str  # the resource kind that observes, diffs and applies it (a key of kinds.RESOURCES)
    key: str  # identity within the kind: a database name, a user name, "node/section/key"...
    body: Mapping[str, Any]  # the wanted content; never holds a secret value
    source: Source  # the manifest line it comes from, for the plan and for errors
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)  # fields whose value is a secret
    options: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"mode": "merge"}, {"prune": True}
