"""Registry of kinds: every module of this package that exposes MANIFEST and/or RESOURCE, and the kinds
registered from elsewhere through `register`.

`MANIFESTS` (by YAML `kind`) and `RESOURCES` (by `Desired.kind`) are what the stages and commands use.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from .base import ManifestKind, ResourceKind

MANIFESTS: dict[str, ManifestKind] = {}
RESOURCES: dict[str, ResourceKind] = {}


def register(module: ModuleType) -> None:
    """Add the kinds `module` exposes: a `MANIFEST` (a ManifestKind) and/or a `RESOURCE` (a ResourceKind).
    The built-in kinds are registered this way; a kind living in another package is too."""
    manifest = getattr(module, "MANIFEST", None)
    resource = getattr(module, "RESOURCE", None)
    if manifest is None and resource is None:
        raise TypeError(f"{module.__name__} exposes neither MANIFEST nor RESOURCE")
    if manifest is not None:
        if not isinstance(manifest, ManifestKind):
            raise TypeError(f"{module.__name__}.MANIFEST is not a ManifestKind (kinds/base.py)")
        MANIFESTS[manifest.kind] = manifest
    if resource is not None:
        if not isinstance(resource, ResourceKind):
            raise TypeError(f"{module.__name__}.RESOURCE is not a ResourceKind (kinds/base.py)")
        RESOURCES[resource.name] = resource


def _register_built_in() -> None:
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "MANIFEST") or hasattr(module, "RESOURCE"):
            register(module)


_register_built_in()
