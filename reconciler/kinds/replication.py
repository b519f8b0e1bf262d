"""Replication: a document in `_replicator`."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence
from urllib.parse import urlsplit

from ..expand import Desired
from ..load import Manifest
from ..validate import Diagnostic, undeclared_database

# CouchDB refuses a replication that combines these (couch_replicator_docs / the 3.x replicator API).
EXCLUSIVE_FILTERS = ("doc_ids", "filter", "selector")


def is_url(endpoint: str) -> bool:
    return "://" in endpoint


class ReplicationManifest:
    kind = "Replication"
    schema = "replication.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        for manifest in manifests:
            spec = manifest.spec
            for end in ("source", "target"):
                endpoint = spec[end]
                if not is_url(endpoint):
                    yield from undeclared_database(manifest, ("spec", end), endpoint, every)
                elif urlsplit(endpoint).password is not None:
                    # Not repeating the URL: it holds a password.
                    yield Diagnostic.at(manifest, ("spec", end), f"the {end} URL holds a password",
                                        f"remove it from the URL and give `{end}Auth:` with a password reference")
            given = [key for key in EXCLUSIVE_FILTERS if key in spec]
            if len(given) > 1:
                yield Diagnostic.at(manifest, ("spec", given[1]), f"`{given[0]}` and `{given[1]}` cannot be combined",
                                    "keep one of doc_ids, filter and selector")
            if "auth" in spec:
                for specific in ("sourceAuth", "targetAuth"):
                    if specific in spec:
                        yield Diagnostic.at(manifest, ("spec", specific), f"`auth` and `{specific}` are both given",
                                            "use `auth` for both endpoints, or sourceAuth/targetAuth for each")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        """Not expanded yet: replication behaviour (observe, diff, apply) comes with its own issue."""
        return ()


MANIFEST = ReplicationManifest()
