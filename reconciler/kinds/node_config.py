"""NodeConfig: keys of one section of every node's configuration (/_node/{node}/_config)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from ..expand import Desired
from ..load import Manifest
from ..validate import Diagnostic

# Manifest kinds whose expansion writes node config: a key may be set by only one of them.
CONFIG_KINDS = ("NodeConfig", "Cors")


def config_value(value: Any) -> str:
    """As CouchDB stores it: /_config takes only JSON strings, so `true` is "true" and 3600 is "3600"."""
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
