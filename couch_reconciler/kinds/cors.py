"""Cors: CORS for browser clients (PouchDB), as node config keys.

CouchDB 3.x reads the switch with chttpd_util:get_chttpd_config_boolean("enable_cors"),
i.e. [chttpd] first and [httpd] only as a fallback, so the switch is written to [chttpd];
the allowed origins, methods and headers live in [cors], comma-separated (chttpd_cors.erl).
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Sequence

from ..model import CORS_MANIFEST, Desired, Diagnostic, Manifest
from ..nodes import config_desired
from .base import ManifestKind

ENABLE_SECTION = "chttpd"
# What a browser sends in the Origin header: scheme://host[:port], never a path (chttpd_cors compares exactly).
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s]+")


class CorsManifest(ManifestKind):
    kind = CORS_MANIFEST
    schema = "cors.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        for manifest in manifests:
            origins = manifest.spec["origins"]
            for index, origin in enumerate(origins):
                if origin != "*" and not _ORIGIN.fullmatch(origin):
                    yield Diagnostic.at(manifest, ("spec", "origins", index),
                                        f"origin `{origin}` can never match what a browser sends",
                                        "write scheme://host[:port] without a path or trailing slash, "
                                        "e.g. https://app.example.com, or * for any origin")
            if "*" in origins and manifest.spec.get("credentials"):
                yield Diagnostic.at(manifest, ("spec", "credentials"),
                                    "origins `*` with credentials lets any web site send requests "
                                    "with a logged-in user's cookie",
                                    "list your application's origins instead of *", severity="warning")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        spec = manifest.spec
        yield config_desired(manifest, ENABLE_SECTION, "enable_cors", spec.get("enabled", True), "spec", "enabled")
        yield config_desired(manifest, "cors", "origins", ", ".join(spec["origins"]), "spec", "origins")
        for key in ("credentials", "max_age"):
            if key in spec:
                yield config_desired(manifest, "cors", key, spec[key], "spec", key)
        for key in ("methods", "headers"):
            if key in spec:
                yield config_desired(manifest, "cors", key, ", ".join(spec[key]), "spec", key)


MANIFEST = CorsManifest()
