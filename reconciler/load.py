"""Stage 1, load: YAML files on disk -> Manifest objects that remember where every key came from.

PyYAML builds Python values without positions and silently keeps the last of
duplicate keys, so this module composes the node graph and builds the values
itself: every key path gets its line, duplicates are refused, and aliases are
expanded under a budget (a "billion laughs" document is refused, not expanded).

Problems never stop the load of other files: `load()` returns every manifest it
could read together with one ManifestError per problem, so `validate` reports
all of them at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import ReconcileError
from .model import KeyPath, Manifest, Source, describe_value

API_VERSION = "reconciler/v1"
SUFFIXES = (".yaml", ".yml")
# Manifests are small: a larger file is a mistake (a data dump, a log) that would only slow every run.
MAX_FILE_BYTES = 10 * 1024 * 1024
# Values one document may expand to through aliases; far above any real manifest, far below an alias bomb.
MAX_VALUES_PER_DOCUMENT = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
# libyaml (PyYAML's C extension, in its wheels) composes the node graph about 15x faster than PyYAML's
# pure-Python scanner, with the same line marks and the same Python resolver for tags.
_FAST_LOADER = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class ManifestError(ReconcileError):
    """A file or document that cannot become a Manifest: what is wrong, where, and how to fix it."""

    def __init__(self, source: Source, message: str, hint: str, subject: str | None = None):
        super().__init__(f"{source}: {subject + ': ' if subject else ''}{message}; {hint}")
        self.source = source
        self.subject = subject  # "Kind/name" (or just "Kind") once the document got that far
        self.message = message
        self.hint = hint


@dataclass
class Loaded:
    manifests: list[Manifest]
    errors: list[ManifestError]


def load(path: str) -> Loaded:
    """Every document of every *.yaml/*.yml file under `path` (a folder, recursively, or one file)."""
    if not os.path.exists(path):
        raise ReconcileError(f"{path}: no such file or folder; give the folder that holds the manifests")
    loaded = Loaded([], [])
    for file in manifest_files(path):
        try:
            loaded.manifests.extend(load_file(file))
        except ManifestError as error:
            loaded.errors.append(error)
    return loaded


def manifest_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    found: list[str] = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .git, editor folders
        found.extend(os.path.normpath(os.path.join(folder, f)) for f in sorted(files) if f.endswith(SUFFIXES))
    return found


def load_file(file: str) -> list[Manifest]:
    text = _read_text(file)
    try:
        manifests = _documents(file, _FAST_LOADER(text))
    except yaml.YAMLError:
        # libyaml words its errors its own way (and leaves out e.g. the undefined alias's name): the pure-Python
        # parser reads the file again, so a broken file gets the message `_syntax_error` knows how to explain.
        try:
            manifests = _documents(file, yaml.SafeLoader(text))
        except yaml.MarkedYAMLError as error:
            raise _syntax_error(file, error) from None
        except yaml.YAMLError as error:
            raise ManifestError(Source(file, 1), f"invalid YAML: {error}", "fix the syntax") from None
    if not manifests:
        # Safety over convenience: a file truncated by a bad merge or a failed template must not look like
        # "these objects are no longer wanted" to plan, which would then offer to delete them.
        raise ManifestError(Source(file, 1), "the file holds no manifest",
                            "add at least one document (apiVersion, kind, metadata, spec) or delete the file")
    return manifests


def _documents(file: str, loader: yaml.SafeLoader | yaml.CSafeLoader) -> list[Manifest]:
    manifests = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None and not _is_empty(node):  # a stray `---` (often at the end of a file) is harmless
                manifests.append(_manifest(file, node, loader))
    finally:
        loader.dispose()
    return manifests


def _read_text(file: str) -> str:
    size = os.path.getsize(file)
    if size > MAX_FILE_BYTES:
        raise ManifestError(Source(file, 1), f"the file is {size / 1024 / 1024:.1f} MiB, above the "
                            f"{MAX_FILE_BYTES // 1024 // 1024} MiB limit for a manifest file",
                            "split it into several files, or move design-document code into a folder (spec.path)")
    with open(file, "rb") as handle:
        data = handle.read()
    if b"\0" in data:
        raise ManifestError(Source(file, 1), "this is not a text file (it holds NUL bytes)",
                            "remove it from the manifest folder or give it another extension than .yaml/.yml")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ManifestError(Source(file, line), f"invalid UTF-8 (byte 0x{data[error.start]:02x})",
                            "save the file as UTF-8") from None


def _syntax_error(file: str, error: yaml.MarkedYAMLError) -> ManifestError:
    mark = error.problem_mark or error.context_mark
    source = Source(file, mark.line + 1 if mark else 1)
    problem = error.problem or "invalid YAML"
    if "'\\t'" in problem:
        return ManifestError(source, "a tab character where YAML expects spaces",
                             "indent with spaces only (YAML forbids tabs for indentation)")
    if problem.startswith("expected <block end>") or problem == "mapping values are not allowed here" \
            or problem.startswith("did not find expected"):
        return ManifestError(source, "bad indentation or a stray `:`",
                             "align this line with the keys of the same level above it, "
                             "or quote a value that contains `: `")
    if problem.startswith("found undefined alias"):
        return ManifestError(source, f"{problem} (no anchor of that name above)",
                             "define the anchor with &NAME before using *NAME")
    if "constructor" in problem:
        return ManifestError(source, f"unsupported YAML tag ({problem})", "remove the `!tag`")
    return ManifestError(source, f"invalid YAML: {problem}", "fix the syntax at this line")


def _is_empty(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~", "null")


def _manifest(file: str, node: yaml.Node, loader: yaml.SafeLoader | yaml.CSafeLoader) -> Manifest:
    start = Source(file, node.start_mark.line + 1)
    lines: dict[KeyPath, int] = {}
    document = _Builder(file, loader, lines).build(node, ())
    if not isinstance(document, dict):
        raise ManifestError(start, f"a document must be a mapping, not {describe_value(document)}",
                            "write apiVersion, kind, metadata and spec as keys at the top level")

    def at(*path: str) -> Source:
        """The line of the deepest key along `path` that was written (the document start at worst)."""
        found = (lines.get(path[:end]) for end in range(len(path), 0, -1))
        return Source(file, next((line for line in found if line is not None), start.line))

    api_version = document.get("apiVersion")
    if api_version != API_VERSION:
        problem = "apiVersion is missing" if api_version is None else f"apiVersion `{api_version}` is not supported"
        raise ManifestError(at("apiVersion"), problem, f"write `apiVersion: {API_VERSION}`")
    kind = document.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ManifestError(at("kind"), "kind is missing or not text",
                            "write e.g. `kind: Database` (see `reconcile schema`)")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise ManifestError(at("metadata", "name"), "metadata.name is missing or not text",
                            "write `metadata:` with an indented `name: ...` below it", subject=kind)
    if "spec" in document and document["spec"] is None:
        document["spec"] = {}  # `spec:` with nothing under it: a kind whose fields all have defaults
    spec = document.get("spec")
    if not isinstance(spec, dict):
        problem = "spec is missing" if spec is None else f"spec must be a mapping, not {describe_value(spec)}"
        raise ManifestError(at("spec"), problem, "write `spec:` with the kind's fields indented below it",
                            subject=f"{kind}/{name}")
    return Manifest(kind=kind, name=name, spec=spec, source=start, base_dir=os.path.dirname(file) or ".",
                    lines=lines, document=document)


class _Builder:
    """Python values from a composed node graph, recording the line of every key path."""

    def __init__(self, file: str, loader: yaml.SafeLoader | yaml.CSafeLoader, lines: dict[KeyPath, int]):
        self.file = file
        self.loader = loader
        self.lines = lines
        self.budget = MAX_VALUES_PER_DOCUMENT
        self.open: set[int] = set()  # nodes being built: an alias to one of them is a cycle

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise ManifestError(Source(self.file, node.start_mark.line + 1),
                                f"the document expands to more than {MAX_VALUES_PER_DOCUMENT} values through aliases",
                                "write it without nested aliases (this looks like an alias bomb)")
        if id(node) in self.open:
            raise ManifestError(Source(self.file, node.start_mark.line + 1), "an alias refers to a value that contains it",
                                "remove the recursive alias")
        if isinstance(node, yaml.ScalarNode):
            # Text, most of any manifest, is the scalar as written: no need for the constructor's bookkeeping.
            return node.value if node.tag == _STR_TAG else self.loader.construct_object(node)
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for index, item in enumerate(node.value):
                    self.lines.setdefault(path + (index,), item.start_mark.line + 1)
                    items.append(self.build(item, path + (index,)))
                return items
            assert isinstance(node, yaml.MappingNode)  # PyYAML composes no other kind of node
            return self._mapping(node, path)
        finally:
            self.open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                merged.update(self._merge_source(value_node, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise ManifestError(Source(self.file, line), "a key must be plain text, not a list or mapping",
                                    "write a simple `key: value`")
            # The key as written: `on:` or `1:` stay the text the user typed, as in JSON.
            key = key_node.value
            if key in first_line:
                raise ManifestError(Source(self.file, line), f"duplicate key `{key}` (first at line {first_line[key]})",
                                    "keep only one of them: YAML would silently drop the first")
            first_line[key] = line
            self.lines[path + (key,)] = line
            result[key] = self.build(value_node, path + (key,))
        # `<<: *defaults` fills only the keys the mapping does not set itself.
        return {**merged, **result}

    def _merge_source(self, node: yaml.Node, path: KeyPath) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):  # earlier sources win, as in YAML's merge-key rules
            value = self.build(source, path)
            if not isinstance(value, dict):
                raise ManifestError(Source(self.file, node.start_mark.line + 1), "`<<` merges only mappings",
                                    "point `<<:` at an alias of a mapping")
            merged.update(value)
        return merged
