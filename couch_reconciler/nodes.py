"""The cluster's nodes and each node's whole config, read once per plan and shared.

The config and server_admin kinds both live in `/_node/{node}/_config`; reading
`/_membership` and then each node's config once per observation serves both
(once per node). Outside an observation (apply) it is read afresh.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .client import CouchSession, db_path
from .errors import ReconcileError
from .model import CONFIG, Desired, Manifest
from .reads import shared

NodeConfig = Mapping[str, Mapping[str, str]]  # section -> key -> value, as CouchDB stores it (strings)


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[str, ...]  # `/_membership` cluster_nodes: every one is read and written
    config: Mapping[str, NodeConfig]  # node -> its config

    def value(self, node: str, section: str, key: str) -> str | None:
        return self.config[node].get(section, {}).get(key)

    def targets(self, nodes: Any, subject: str) -> tuple[str, ...]:
        """The nodes a manifest's `nodes:` option names: "all" (the default) or a list, each a cluster node."""
        if nodes in (None, "all"):
            return self.nodes
        unknown = [node for node in nodes if node not in self.nodes]
        if unknown:
            raise ReconcileError(f"{subject}: node {unknown[0]} is not in the cluster (cluster_nodes: "
                                 f"{', '.join(self.nodes)}); fix `nodes:` in the manifest")
        return tuple(nodes)


def cluster(session: CouchSession) -> Cluster:
    return shared(session, "cluster", lambda: _read(session))


def config_path(node: str, section: str, key: str) -> str:
    return db_path("_node", node, "_config", section, key)


def _read(session: CouchSession) -> Cluster:
    membership = session.get("_membership")
    nodes: Sequence[str] = tuple(membership.get("cluster_nodes") or ())
    configs = session.map(lambda node: session.get(db_path("_node", node, "_config"),
                                                   what=f"reading the config of node {node}"), nodes)
    return Cluster(tuple(nodes), dict(zip(nodes, configs)))


def digest(values: Mapping[str, str | None]) -> str:
    """A version of per-node values that proves them unchanged without putting a value (or a hash) in a plan file."""
    return hashlib.sha256(repr(sorted(values.items(), key=lambda item: item[0])).encode()).hexdigest()[:16]


def config_value(value: Any) -> str | None:
    """As CouchDB stores it: /_config takes only JSON strings, so `true` is "true" and 3600 is "3600".

    `null` stays None: the key is to be unset (deleted on the nodes that hold it).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def config_desired(manifest: Manifest, section: str, key: str, value: Any, *path: str | int) -> Desired:
    return Desired(CONFIG, f"{section}/{key}", body={"value": config_value(value)}, source=manifest.where(*path),
                   options={"nodes": manifest.spec.get("nodes", "all")})
