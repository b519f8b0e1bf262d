"""Stage 5, diff: wanted vs live -> typed changes (Create, Update, Delete, Replace)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from .expand import Desired
from .load import Source


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
    desired: "Desired | None" = None  # what the manifests want (body, secret references, options); set by the engine

    action: ClassVar[str]
    symbol: ClassVar[str]


@dataclass(frozen=True)
class Create(Change):
    action: ClassVar[str] = "create"
    symbol: ClassVar[str] = "+"


@dataclass(frozen=True)
class Update(Change):
    action: ClassVar[str] = "update"
    symbol: ClassVar[str] = "~"


@dataclass(frozen=True)
class Delete(Change):
    action: ClassVar[str] = "delete"
    symbol: ClassVar[str] = "-"


@dataclass(frozen=True)
class Replace(Change):
    action: ClassVar[str] = "replace"
    symbol: ClassVar[str] = "-/+"
