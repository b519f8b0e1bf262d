"""Registry of kinds: every module of this package that exposes MANIFEST and/or RESOURCE."""

from __future__ import annotations

import importlib
import pkgutil

from .base import ManifestKind, ResourceKind


def _discover() -> tuple[dict[str, ManifestKind], dict[str, ResourceKind]]:
    manifests: dict[str, ManifestKind] = {}
    resources: dict[str, ResourceKind] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if (manifest := getattr(module, "MANIFEST", None)) is not None:
            manifests[manifest.kind] = manifest
        if (resource := getattr(module, "RESOURCE", None)) is not None:
            resources[resource.name] = resource
    return manifests, resources


MANIFESTS, RESOURCES = _discover()
