"""The shared types every stage and every kind speaks: where a value was written (`Source`), a manifest, a
problem with it (`Diagnostic`), what the manifests want (`Desired`, `DesiredState`), what the server holds
(`Observed`) and what would change (`Change`, `FieldChange`, `Action`).

This module imports nothing else of the tool, so any stage or kind may import it and none of them needs
another stage for its types (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, ClassVar, Mapping, Protocol, Sequence

from .errors import ReconcileError
from .secrets import SecretRef

# The names of the built-in kinds, for the modules that refer to another kind's objects or manifests.
# Resource kinds (Desired.kind, Observed.kind, Change.kind), in apply order.
CONFIG = "config"
SERVER_ADMIN = "server_admin"
DATABASE = "database"
SECURITY = "security"
DESIGN_DOCUMENT = "design_document"
USER = "user"
REPLICATION = "replication"

# Manifest kinds (`kind:` in YAML).
CORS_MANIFEST = "Cors"
DATABASE_MANIFEST = "Database"
DESIGN_DOCUMENT_MANIFEST = "DesignDocument"
NODE_CONFIG_MANIFEST = "NodeConfig"
REPLICATION_MANIFEST = "Replication"
ROLE_MANIFEST = "Role"
SERVER_ADMIN_MANIFEST = "ServerAdmin"
USER_MANIFEST = "User"
USER_DATABASES_MANIFEST = "UserDatabases"

# A path into a document: ("spec", "security", "members", "names", 0)
KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Source:
    """Where a manifest value was written, for `file:line:` messages."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Manifest:
    """One YAML document: apiVersion, kind, metadata.name, spec."""

    kind: str
    name: str
    spec: Mapping[str, Any]
    source: Source
    base_dir: str  # the folder of the YAML file, against which `file:` references and `path:` folders resolve
    root: str  # the manifest folder given to load, resolved: what the manifest names must resolve inside it
    lines: Mapping[KeyPath, int] = field(default_factory=dict, compare=False, repr=False)
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as written, for the schema

    @property
    def subject(self) -> str:
        return f"{self.kind}/{self.name}"

    def where(self, *path: str | int) -> Source:
        """The line of the deepest key along `path` that the document has (the document start at worst)."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return Source(self.source.file, line)
        return self.source


def describe_value(value: Any) -> str:
    """What a YAML value is, in the words an error message uses (`must be a mapping, not a list`)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "empty"
    return type(value).__name__  # dates and times YAML recognised on its own


SHOWN_SUBJECT = 300  # characters of a Kind/name shown in a message: a whole database name (238 bytes) fits


@dataclass(frozen=True)
class Diagnostic:
    source: Source
    subject: str | None  # "Database/orders"; None when the file itself is broken
    message: str  # what is wrong
    hint: str  # how to fix it
    severity: str = "error"  # "error" or "warning": warnings never fail a command

    def __str__(self) -> str:
        level = "warning: " if self.severity == "warning" else ""
        subject = self.subject or ""
        if len(subject) > SHOWN_SUBJECT:  # a megabyte-long name must not make a megabyte-long line
            subject = f"{subject[:SHOWN_SUBJECT]}... ({len(subject):,} characters)"
        return f"{self.source}: {level}{subject + ': ' if subject else ''}{self.message}; {self.hint}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    @property
    def position(self) -> tuple[str, int, str]:
        """The order diagnostics are reported in: by file, line, then message."""
        return self.source.file, self.source.line, self.message

    @classmethod
    def at(cls, manifest: Manifest, path: Sequence[str | int], message: str, hint: str,
           severity: str = "error") -> "Diagnostic":
        return cls(manifest.where(*path), manifest.subject, message, hint, severity)


@dataclass(frozen=True)
class Desired:
    """One object the manifests want, in the shape CouchDB stores it."""

    kind: str  # the resource kind that observes, diffs and applies it (a key of kinds.RESOURCES)
    key: str  # identity within the kind: a database name, a user name, "node/section/key"...
    body: Mapping[str, Any]  # the wanted content; never holds a secret value
    source: Source  # the manifest line it comes from, for the plan and for errors
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)  # fields whose value is a secret
    options: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"mode": "merge"}, {"prune": True}


@dataclass(frozen=True)
class Template:
    """A manifest whose objects depend on live state (UserDatabases: one database per user on the server),
    with the manifests that name it; the resolve stage turns it into Desired objects once the server is read."""

    manifest: Manifest
    parts: tuple[Manifest, ...] = ()

    @property
    def name(self) -> str:
        return self.manifest.name


class Merging(Protocol):
    """What DesiredState.add needs of a resource kind (kinds/base.py ResourceKind)."""

    def merge(self, first: Desired, second: Desired) -> Desired: ...


@dataclass
class DesiredState:
    objects: dict[tuple[str, str], Desired] = field(default_factory=dict)  # (kind, key) -> the one wanted object
    diagnostics: list[Diagnostic] = field(default_factory=list)  # conflicts between manifests
    # Manifests whose objects depend on live state: the resolve stage turns them into objects of the kinds
    # above once the server has been read, before those kinds observe.
    templates: list[Template] = field(default_factory=list)
    # Kinds whose managed objects nothing wants are deleted even without --allow-delete: a manifest said
    # `prune: true` (common.schema.json), or a template prunes what it made for users who are gone.
    prune_kinds: set[str] = field(default_factory=set)
    # Kind -> key prefixes a template owns: its managed objects under one of them that nothing wants any more
    # (a user is gone) are deleted without --allow-delete; other managed objects of the kind are not.
    prune_prefixes: dict[str, set[str]] = field(default_factory=dict)
    # (kind, key) -> the manifests that want the object ("UserDatabases/per-user", "User/alice"), so a plan can
    # be narrowed to, or without, what one manifest wants (every object a template makes for its users).
    origins: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def add(self, desired: Desired, subject: str, kinds: Mapping[str, Merging]) -> None:
        """Fold `desired` in: a second object with the same (kind, key) is merged by its kind, or, when the
        kind refuses (ReconcileError), is a conflict diagnostic at the second one's line."""
        if desired.options.get("prune"):
            self.prune_kinds.add(desired.kind)
        identity = (desired.kind, desired.key)
        self.origins[identity] = self.origins.get(identity, frozenset()) | {subject}
        first = self.objects.get(identity)
        if first is None:
            self.objects[identity] = desired
            return
        try:
            kind = kinds.get(desired.kind)
            if kind is None:
                raise ReconcileError(f"{desired.kind}/{desired.key} is already wanted by {first.source}")
            self.objects[identity] = kind.merge(first, desired)
        except ReconcileError as conflict:
            self.diagnostics.append(Diagnostic(desired.source, subject, str(conflict),
                                               "keep one manifest for it, or make them agree"))

    def prunes(self, change_kind: str, key: str) -> bool:
        """Whether the manifests let apply delete the managed object `key` of `change_kind` that nothing wants."""
        return change_kind in self.prune_kinds or any(key.startswith(prefix)
                                                      for prefix in self.prune_prefixes.get(change_kind, ()))

    def by_kind(self) -> dict[str, dict[str, Desired]]:
        grouped: dict[str, dict[str, Desired]] = {}
        for (kind, key), desired in self.objects.items():
            grouped.setdefault(kind, {})[key] = desired
        return grouped


@dataclass(frozen=True)
class Observed:
    """One live object as the server holds it, with server-owned noise removed."""

    kind: str
    key: str
    body: Mapping[str, Any]
    version: str | None  # proves the object unchanged later (_rev, update_seq, digest): stale-plan checks
    managed: bool = False  # carries this tool's ownership marker, so it may be pruned
    facts: Mapping[str, Any] = field(default_factory=dict)  # what the plan may need beyond the body (doc_count...)


class Action(StrEnum):
    """What a change does, with everything each rendering says about it: the one table of actions."""

    symbol: str  # in the text plan, the Markdown table and apply's lines
    past: str  # apply's report: "+ database/orders: created"
    style: str  # rich colour of the text plan

    def __new__(cls, verb: str, symbol: str, past: str, style: str) -> "Action":
        action = str.__new__(cls, verb)
        action._value_ = verb
        action.symbol, action.past, action.style = symbol, past, style
        return action

    CREATE = ("create", "+", "created", "green")
    UPDATE = ("update", "~", "updated", "yellow")
    DELETE = ("delete", "-", "deleted", "red")
    REPLACE = ("replace", "-/+", "replaced", "magenta")


@dataclass(frozen=True)
class FieldChange:
    path: str  # dotted path inside the object: "members.names"
    before: Any
    after: Any
    sensitive: bool = False  # rendered as "(sensitive, will change)": the values are never shown or saved


@dataclass(frozen=True)
class Change:
    kind: str
    key: str
    source: Source | None  # the manifest line that wants it; None for a prune of an unlisted object
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    fields: tuple[FieldChange, ...] = ()
    version: str | None = None  # the live version this change was computed against
    notes: tuple[str, ...] = ()  # warnings shown under the change
    destroys: str | None = None  # data a Delete/Replace loses ("12 documents"): needs --allow-delete-data
    desired: Desired | None = None  # what the manifests want (body, secret references, options); set by the engine
    # The object's other live versions seen beside `version` (a CouchDB document's losing conflict revisions),
    # which the write removes too so that one version is left, or none after a Delete. Carried here, not re-read
    # at apply, because a saved plan is applied later from its file, and only its own kind's apply reads it.
    losing_versions: tuple[str, ...] = ()

    action: ClassVar[Action]

    @property
    def symbol(self) -> str:
        return self.action.symbol

    @staticmethod
    def of(action: Action) -> "type[Change]":
        """The Change class of `action` (a plan file names its actions)."""
        return _CLASSES[action]


@dataclass(frozen=True)
class Create(Change):
    action: ClassVar[Action] = Action.CREATE


@dataclass(frozen=True)
class Update(Change):
    action: ClassVar[Action] = Action.UPDATE


@dataclass(frozen=True)
class Delete(Change):
    action: ClassVar[Action] = Action.DELETE


@dataclass(frozen=True)
class Replace(Change):
    action: ClassVar[Action] = Action.REPLACE


_CLASSES: dict[Action, type[Change]] = {cls.action: cls for cls in (Create, Update, Delete, Replace)}


@dataclass
class Plan:
    server: str
    changes: list[Change]
    warnings: list[str] = field(default_factory=list)
    existing: dict[str, int] = field(default_factory=dict)  # live objects in scope per kind (threshold base)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    # The folders its `file:` secrets were confined to when it was made (resolved): the manifest folder, then
    # each `--secrets-dir`. A saved plan's secrets are checked against them again before apply reads one.
    manifest_root: str | None = None
    secrets_dirs: tuple[str, ...] = ()
    # (kind, key) of a change -> the manifests that want it (DesiredState.origins), for --target/--exclude;
    # not saved in plan files, which are narrowed before they are saved.
    origins: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Terraform's arithmetic: a replace is one to add and one to destroy."""
        actions = [change.action for change in self.changes]
        replace = actions.count(Action.REPLACE)
        return {"add": actions.count(Action.CREATE) + replace, "change": actions.count(Action.UPDATE),
                "destroy": actions.count(Action.DELETE) + replace}

    def summary(self) -> str:
        if not self.changes:
            return "No changes. The server matches the manifests."
        counts = self.counts()
        return f"Plan: {counts['add']} to add, {counts['change']} to change, {counts['destroy']} to destroy."
