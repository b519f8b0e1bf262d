"""NodeConfig: keys of one section of every node's configuration (/_node/{node}/_config)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Sequence

from .. import nodes
from ..client import CouchSession
from ..errors import ReconcileError
from ..model import (
    CONFIG,
    NODE_CONFIG_MANIFEST,
    Change,
    Create,
    Desired,
    Diagnostic,
    FieldChange,
    Manifest,
    Observed,
    Update,
)
from ..nodes import config_desired
from ..ownership import MARKER_SECTION
from ..reads import CLUSTER_CONFIG
from ..secrets import SecretRef
from .base import ManifestKind, ResourceKind
from .cors import MANIFEST as CORS


class NodeConfigManifest(ManifestKind):
    kind = NODE_CONFIG_MANIFEST
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
            yield from _ini_breaks(manifest)
        yield from _conflicts(self, every)

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        section = manifest.spec["section"]
        for key, value in manifest.spec["values"].items():
            yield config_desired(manifest, section, key, value, "spec", "values", key)


def _ini_breaks(manifest: Manifest) -> Iterator[Diagnostic]:
    """CouchDB saves a config change into its .ini file as the line `KEY = VALUE` under `[SECTION]`, unescaped
    (src/config/src/config_writer.erl), so a line break in any of them writes further lines: another section,
    another key (`[admins]` and a password of the writer's choosing), read back at the next restart."""
    spec = manifest.spec
    parts: list[tuple[tuple[str, ...], str, Any]] = [(("spec", "section"), "the section", spec["section"])]
    for key, value in spec["values"].items():
        parts += [(("spec", "values", key), f"the key `{key.splitlines()[0] if key else key}`", key),
                  (("spec", "values", key), f"the value of `{key.splitlines()[0] if key else key}`", value)]
    for path, what, text in parts:
        if isinstance(text, str) and any(char in text for char in "\n\r\0"):
            yield Diagnostic.at(manifest, path, f"{what} holds a line break: CouchDB writes config into its .ini "
                                "file unescaped, so it would add lines (another section or key) read at restart",
                                "write it on one line")
    if "[" in spec["section"] or "]" in spec["section"]:
        yield Diagnostic.at(manifest, ("spec", "section"), "the section name holds `[` or `]`, which end a section "
                            "header in CouchDB's .ini files", "use a section name without brackets")


def _conflicts(node_config: ManifestKind, every: Sequence[Manifest]) -> Iterator[Diagnostic]:
    """The same config key set by two manifests on overlapping nodes, by the manifest kinds whose expansion
    writes node config: whichever applied last would win."""
    config_kinds = {kind.kind: kind for kind in (node_config, CORS)}
    seen: dict[str, list[tuple[Manifest, Desired]]] = {}
    for manifest in every:
        if manifest.kind not in config_kinds:
            continue
        for desired in config_kinds[manifest.kind].expand(manifest):
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


class ConfigResource(ResourceKind):
    """One `section/key` of the node config on every node it targets; keys no manifest names are never read
    into the plan, so they are left alone. A wanted value of None unsets the key."""

    name = CONFIG
    order = 3  # node settings (couch_peruser, default_security) shape what later objects get
    reads = frozenset({CLUSTER_CONFIG})

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
                after = change.after or {}
                targets = cluster.targets(after["nodes"], f"config/{change.key}")
                writes += [(change.key, node, after["value"]) for node in targets]
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
