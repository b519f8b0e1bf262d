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
from .paths import PathRefused, Roots, check

API_VERSION = "reconciler/v1"
SUFFIXES = (".yaml", ".yml")
# Manifests are small: a larger file is a mistake (a data dump, a log) that would only slow every run.
MAX_FILE_BYTES = 10 * 1024 * 1024
# Values one document may expand to through aliases; far above any real manifest, far below an alias bomb.
MAX_VALUES_PER_DOCUMENT = 100_000
# Levels of nesting a document may have. The node graph is built recursively (by PyYAML's Python composer
# and by _Builder), so an unbounded depth ends in RecursionError; real manifests nest about 10 deep.
MAX_DEPTH = 100

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


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
    if not os.path.lexists(path):
        raise ReconcileError(f"{path}: no such file or folder; give the folder that holds the manifests")
    root = Roots.of(path).manifests
    loaded = Loaded([], [])
    for file in manifest_files(path, root, loaded.errors):
        try:
            loaded.manifests.extend(load_file(file, root))
        except ManifestError as error:
            loaded.errors.append(error)
    return loaded


def manifest_files(path: str, root: str, errors: list[ManifestError]) -> list[str]:
    """The YAML files under `path`, each a regular file inside `root` (links followed only within it); an
    entry that is not (a FIFO named a.yaml, a link that loops or leads out) is one error in `errors`."""
    if not os.path.isdir(path):
        return [path] if _usable(path, root, errors) else []
    found: list[str] = []
    pending = [path]
    while pending:  # a stack, not recursion: a folder tree may be deep
        folder = pending.pop()
        entries = sorted(os.listdir(folder))
        files = [os.path.normpath(os.path.join(folder, e)) for e in entries if e.endswith(SUFFIXES)]
        found.extend(file for file in files if not os.path.isdir(file) and _usable(file, root, errors))
        subfolders = [os.path.join(folder, e) for e in entries if not e.startswith(".")  # .git, editor folders
                      and os.path.isdir(os.path.join(folder, e))]
        pending.extend(reversed([sub for sub in subfolders if _usable(sub, root, errors, folder=True)]))
    return found


def _usable(path: str, root: str, errors: list[ManifestError], folder: bool = False) -> bool:
    try:
        check(path, [root], folder=folder, in_checked_folder=True,
              outside_hint="copy what it points at into the folder instead of linking it")
    except PathRefused as refused:
        errors.append(ManifestError(Source(os.path.normpath(path), 1), refused.message, refused.hint))
        return False
    return True


def load_file(file: str, root: str | None = None) -> list[Manifest]:
    """The documents of one file; `root` (the manifest folder, resolved) defaults to the file's own folder."""
    root = root or Roots.of(file).manifests
    text = _read_text(file)
    try:
        manifests = _documents(file, _FAST_LOADER(text), root)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        if getattr(error, "problem", None) == "exceeded maximum nesting depth" and mark is not None:
            # libyaml's own bound (1,000 levels): the pure-Python scanner would take seconds to say the same.
            raise ManifestError(Source(file, mark.line + 1), f"the document is {_TOO_DEEP}", _FLATTEN) from None
        # libyaml words its errors its own way (and leaves out e.g. the undefined alias's name): the pure-Python
        # parser reads the file again, so a broken file gets the message `_syntax_error` knows how to explain.
        try:
            manifests = _documents(file, _BoundedLoader(text), root)
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


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's pure-Python loader, refusing to compose deeper than MAX_DEPTH (its composer recurses:
    a 3,000-deep block would end in RecursionError). libyaml stops at 1,000 levels by itself."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, _TOO_DEEP, self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# libyaml (PyYAML's C extension, in its wheels) composes the node graph about 15x faster than PyYAML's
# pure-Python scanner, with the same line marks and the same Python resolver for tags.
if yaml.__with_libyaml__:
    class _CachedTagsLoader(yaml.CSafeLoader):
        """The fastest SafeLoader at hand, resolving each plain scalar's tag once per file: libyaml asks
        PyYAML's Python resolver for every scalar (a regular expression per candidate tag), and a file of
        manifests repeats the same keys and values thousands of times. No path resolvers are registered on it
        (PyYAML's `add_path_resolver`), so the resolver's walk along the node path has nothing to do, and a
        mapping or list without a tag is what BaseResolver.resolve makes it then: a map or a seq."""

        def __init__(self, stream: str):
            super().__init__(stream)
            self._plain_tags: dict[str, str] = {}

        def resolve(self, kind: type, value: Any, implicit: Any) -> str:
            if kind is yaml.MappingNode:
                return self.DEFAULT_MAPPING_TAG
            if kind is yaml.SequenceNode:
                return self.DEFAULT_SEQUENCE_TAG
            if not implicit[0]:
                return super().resolve(kind, value, implicit)
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = self._plain_tags[value] = super().resolve(kind, value, implicit)
            return tag

        # libyaml's composer calls these two around every node (_yaml.pyx `_compose_node`), and with no path
        # resolvers they have nothing to do. Built-in callables that ignore what they get (a lookup in an empty
        # dict, an empty tuple; neither binds to the instance as a method would) make composing a fifth
        # cheaper than Python methods that do nothing: 0.46 s instead of 0.59 s for 10,000 documents here.
        descend_resolver = dict[Any, None]().get  # type: ignore[assignment]  # called as (node, index), as the base method is
        ascend_resolver = tuple  # type: ignore[assignment]  # called with no argument, as the base method is

    _FAST_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = _CachedTagsLoader
else:
    _FAST_LOADER = _BoundedLoader

_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
_FLATTEN = "flatten it (no manifest needs that many levels; this looks like a generated attack)"


def _documents(file: str, loader: yaml.SafeLoader | yaml.CSafeLoader, root: str) -> list[Manifest]:
    manifests = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None and not _is_empty(node):  # a stray `---` (often at the end of a file) is harmless
                manifests.append(_manifest(file, node, loader, root))
    finally:
        loader.dispose()
    return manifests


def _read_text(file: str) -> str:
    size = os.stat(file).st_size  # a regular file: manifest_files checked it without opening it
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
    if problem == _TOO_DEEP:
        return ManifestError(source, f"the document is {problem}", _FLATTEN)
    if "constructor" in problem:
        return ManifestError(source, f"unsupported YAML tag ({problem})", "remove the `!tag`")
    return ManifestError(source, f"invalid YAML: {problem}", "fix the syntax at this line")


def _is_empty(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~", "null")


def _manifest(file: str, node: yaml.Node, loader: yaml.SafeLoader | yaml.CSafeLoader, root: str) -> Manifest:
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
                    root=root, lines=lines, document=document)


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
        if len(path) >= MAX_DEPTH:  # aliases can nest what the composer saw as shallow
            raise ManifestError(Source(self.file, node.start_mark.line + 1), f"the document is {_TOO_DEEP}", _FLATTEN)
        if id(node) in self.open:
            raise ManifestError(Source(self.file, node.start_mark.line + 1), "an alias refers to a value that contains it",
                                "remove the recursive alias")
        if isinstance(node, yaml.ScalarNode):
            # Text, most of any manifest, is the scalar as written: no need for the constructor's bookkeeping.
            return self._text(node) if node.tag == _STR_TAG else self.loader.construct_object(node)
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for index, item in enumerate(node.value):
                    item_path = path + (index,)
                    self.lines.setdefault(item_path, item.start_mark.line + 1)
                    items.append(self._value(item, item_path))
                return items
            assert isinstance(node, yaml.MappingNode)  # PyYAML composes no other kind of node
            return self._mapping(node, path)
        finally:
            self.open.discard(id(node))

    def _value(self, node: yaml.Node, path: KeyPath) -> Any:
        """`build(node, path)`, taking the shortest way for the value most manifests are made of: text written
        without double quotes, within the budget and the depth (a scalar holds no alias, so no cycle)."""
        if node.__class__ is yaml.ScalarNode and node.tag == _STR_TAG and node.style != '"' \
                and self.budget > 0 and len(path) < MAX_DEPTH:
            self.budget -= 1
            return node.value
        return self.build(node, path)

    def _text(self, node: yaml.ScalarNode) -> str:
        """The scalar's text. Only a double-quoted escape (`"\\udc80"`) can make text that is not Unicode (a lone
        surrogate): no UTF-8 encoder, hence no request, could carry it."""
        if node.style == '"':
            try:
                node.value.encode("utf-8")
            except UnicodeEncodeError as error:
                raise ManifestError(Source(self.file, node.start_mark.line + 1),
                                    f"`\\u{ord(node.value[error.start]):04x}` is a UTF-16 surrogate, not a character",
                                    "write the character itself, or escape its whole code point (`\\U0001F600`)"
                                    ) from None
        return node.value

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
            key = self._text(key_node)
            if key in first_line:
                raise ManifestError(Source(self.file, line), f"duplicate key `{key}` (first at line {first_line[key]})",
                                    "keep only one of them: YAML would silently drop the first")
            first_line[key] = line
            key_path = path + (key,)
            self.lines[key_path] = line
            result[key] = self._value(value_node, key_path)
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
