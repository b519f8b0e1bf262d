"""NodeConfig: keys of one section of every node's configuration (/_node/{node}/_config)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Sequence

from .. import nodes
from ..client import CouchSession
from ..diff import Change, Create, FieldChange, Update
from ..errors import ReconcileError
from ..expand import Desired
from ..load import Manifest
from ..observe import Observed
from ..secrets import SecretRef
from ..validate import Diagnostic
from .server_admin import MARKER_SECTION

# Manifest kinds whose expansion writes node config: a key may be set by only one of them.
CONFIG_KINDS = ("NodeConfig", "Cors")


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
    return Desired("config", f"{section}/{key}", body={"value": config_value(value)}, source=manifest.where(*path),
                   options={"nodes": manifest.spec.get("nodes", "all")})


class NodeConfigManifest:
    kind = "NodeConfig"
    schema = "node_config.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        for manifest in manifests:
            if manifest.spec["section"] == "admins":
                yield Diagnostic.at(manifest, ("spec", "section"), "server admins are not config values here",
                                    "declare them with `kind: ServerAdmin`, whose password comes from a secret reference")
            if manifest.spec["section"] == MARKER_SECTION:  # a forged record would let --allow-delete prune an admin
                yield Diagnostic.at(manifest, ("spec", "section"),
                                    f"[{MARKER_SECTION}] is where reconcile records the server admins it created",
                                    "leave it to reconcile; declare admins with `kind: ServerAdmin`")
        yield from _conflicts(every)

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        section = manifest.spec["section"]
        for key, value in manifest.spec["values"].items():
            yield config_desired(manifest, section, key, value, "spec", "values", key)


def _conflicts(every: Sequence[Manifest]) -> Iterator[Diagnostic]:
    """The same config key set by two manifests on overlapping nodes: whichever applied last would win."""
    from . import MANIFESTS  # the registry imports this module

    seen: dict[str, list[tuple[Manifest, Desired]]] = {}
    for manifest in every:
        if manifest.kind not in CONFIG_KINDS:
            continue
        for desired in MANIFESTS[manifest.kind].expand(manifest):
            earlier = next((d for _, d in seen.get(desired.key, []) if _overlap(d, desired)), None)
            if earlier is not None:
                yield Diagnostic(desired.source, manifest.subject,
                                 f"config key {desired.key} is also set at {earlier.source}",
                                 "set each key in one manifest only")
            seen.setdefault(desired.key, []).append((manifest, desired))


def _overlap(a: Desired, b: Desired) -> bool:
    nodes_a, nodes_b = a.options["nodes"], b.options["nodes"]
    return nodes_a == "all" or nodes_b == "all" or bool(set(nodes_a) & set(nodes_b))


MANIFEST = NodeConfigManifest()


class ConfigResource:
    """One `section/key` of the node config on every node it targets; keys no manifest names are never read
    into the plan, so they are left alone. A wanted value of None unsets the key."""

    name = "config"
    order = 3  # node settings (couch_peruser, default_security) shape what later objects get

    def observe(self, session: CouchSession, wanted: Sequence[Desired], prune: bool = False
                ) -> Mapping[str, Observed]:
        cluster = nodes.cluster(session)
        observed = {}
        for desired in wanted:
            section, key = split_key(desired.key)
            targets = cluster.targets(desired.options.get("nodes"), f"config/{desired.key}")
            values = {node: cluster.value(node, section, key) for node in targets}
            if any(value is not None for value in values.values()):
                observed[desired.key] = Observed(self.name, desired.key, {"nodes": values}, nodes.digest(values))
        return observed

    def diff(self, wanted: Desired | None, live: Observed | None) -> Change | None:
        if wanted is None:
            return None  # never pruned: other config belongs to the operators
        value = wanted.body["value"]
        if live is None:
            if value is None:
                return None
            return Create(self.name, wanted.key, wanted.source,
                          after={"value": value, "nodes": wanted.options.get("nodes", "all")},
                          fields=(FieldChange("value", None, value),))
        values = live.body["nodes"]
        # One field per drifting node, named by the node: the plan shows which nodes differ and how.
        fields = tuple(FieldChange(node, before, value) for node, before in values.items() if before != value)
        if not fields:
            return None
        return Update(self.name, wanted.key, wanted.source, before=dict(live.body),
                      after={"nodes": {node: value for node in values}}, fields=fields, version=live.version)

    def apply(self, session: CouchSession, changes: Sequence[Change],
              secrets: Mapping[str, Mapping[str, SecretRef]]) -> None:
        # The nodes `all` stands for are read when creating, once per call; updates name their nodes.
        cluster = nodes.cluster(session) if any(isinstance(change, Create) for change in changes) else None
        writes = []
        for change in changes:
            if cluster is not None and isinstance(change, Create):
                targets = cluster.targets(change.after["nodes"], f"config/{change.key}")
                writes += [(change.key, node, change.after["value"]) for node in targets]
            else:  # one field per drifting node
                writes += [(change.key, field.path, field.after) for field in change.fields]
        list(session.map(lambda write: _write(session, *write), writes))


def split_key(key: str) -> tuple[str, str]:
    """"section/key" -> (section, key); a section may hold `/` (`cors:https://a.example`), a key may not."""
    section, _, name = key.rpartition("/")
    if not section or not name:
        raise ReconcileError(f"config/{key}: expected SECTION/KEY")
    return section, name


def _write(session: CouchSession, key: str, node: str, value: str | None) -> None:
    section, name = split_key(key)
    path = nodes.config_path(node, section, name)
    what = f"config/{key} on {node}"
    if value is None:
        session.request("DELETE", path, ok=(404,), what=what, retry=True)
    else:
        # A JSON string: CouchDB refuses a bare true or 3600. Writing one value again is harmless: retried.
        session.request("PUT", path, body=value, what=what, retry=True)


RESOURCE = ConfigResource()
