"""DesignDocument: a design document in one or more databases, from a couchapp folder or inline."""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Sequence

from ..expand import Desired
from ..load import Manifest
from ..validate import Diagnostic, closest, undeclared_database

BUILTIN_REDUCERS = ("_count", "_sum", "_stats", "_approx_count_distinct")
INLINE_FIELDS = ("views", "validate_doc_update", "filters", "updates", "lib")


class DesignDocumentManifest:
    kind = "DesignDocument"
    schema = "design_document.schema.json"
    # The same design document name may live in different databases: duplicates are checked per database below.
    unique_names = False

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        templates = sorted(m.name for m in every if m.kind == "UserDatabases")
        first: dict[tuple[str, str], Manifest] = {}
        for manifest in manifests:
            spec = manifest.spec
            if manifest.name.startswith("_design/"):
                yield Diagnostic.at(manifest, ("metadata", "name"), "the name includes the `_design/` prefix",
                                    f"write `name: {manifest.name.removeprefix('_design/')}`")
            if "database" in spec:
                yield from undeclared_database(manifest, ("spec", "database"), spec["database"], every)
            for index, database in enumerate(spec.get("databases", [])):
                yield from undeclared_database(manifest, ("spec", "databases", index), database, every)
            template = spec.get("userDatabases")
            if template is not None and template not in templates:
                yield Diagnostic.at(manifest, ("spec", "userDatabases"),
                                    f"no UserDatabases manifest is named `{template}`",
                                    closest(template, templates, "declared UserDatabases are") if templates
                                    else "declare the template with `kind: UserDatabases`")
            yield from _content(manifest)
            for target in _targets(spec):
                earlier = first.setdefault((target, manifest.name), manifest)
                if earlier is not manifest:
                    yield Diagnostic.at(manifest, ("metadata", "name"),
                                        f"_design/{manifest.name} in {target} is also declared at "
                                        f"{earlier.where('metadata', 'name')}", "merge the two or rename one")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        """Not expanded yet: design-document behaviour (reading `path`, observe, diff, apply) comes with its own issue."""
        return ()


def _targets(spec: dict) -> list[str]:
    if "userDatabases" in spec:
        return [f"UserDatabases/{spec['userDatabases']}"]
    return [spec["database"]] if "database" in spec else list(spec["databases"])


def _content(manifest: Manifest) -> Iterator[Diagnostic]:
    spec = manifest.spec
    inline = [field for field in INLINE_FIELDS if field in spec]
    if "path" in spec:
        folder = os.path.join(manifest.base_dir, spec["path"])
        if not os.path.isdir(folder):
            yield Diagnostic.at(manifest, ("spec", "path"), f"folder {os.path.normpath(folder)} does not exist",
                                "give a folder relative to this file, in couchapp layout (views/NAME/map.js...)")
        if inline:
            yield Diagnostic.at(manifest, ("spec", inline[0]), f"`{inline[0]}` is written inline and `path` is given too",
                                "keep the functions either in the folder or inline, not both")
    elif not inline:
        yield Diagnostic.at(manifest, ("spec",), "the design document has no content",
                            "give `path:` (a couchapp folder) or inline `views:` / `validate_doc_update:`")
    for view, functions in spec.get("views", {}).items():
        reduce = functions.get("reduce", "")
        if reduce.startswith("_") and reduce not in BUILTIN_REDUCERS:
            yield Diagnostic.at(manifest, ("spec", "views", view, "reduce"), f"`{reduce}` is not a built-in reducer",
                                closest(reduce, BUILTIN_REDUCERS, "the built-in reducers are"))


MANIFEST = DesignDocumentManifest()
