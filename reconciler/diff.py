"""Stage 5, diff: wanted vs live -> typed changes (Create, Update, Delete, Replace)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar, Iterable, Mapping

from deepdiff import DeepDiff

from .expand import Desired
from .load import Source
from .observe import Observed


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


def prune(kind: str, live: Observed | None, destroys: Callable[[Observed], str | None] = lambda live: None
          ) -> Delete | None:
    """The change for a live object no manifest lists: a Delete only when this tool created it (its ownership
    marker), never for one made by hand, by an application, by sign-up or by couch_peruser. `destroys`
    says what data deleting it loses (such a Delete needs --allow-delete-data)."""
    if live is None or not live.managed:
        return None
    return Delete(kind, live.key, None, before=dict(live.body), version=live.version, destroys=destroys(live),
                  notes=("no manifest lists it; couch-reconciler created it",))


def field_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
                  sets: Iterable[str] = ()) -> tuple[FieldChange, ...]:
    """The fields that differ between two bodies, each as the dotted path of the changed key.

    A change inside a list reports the whole list (a reviewer reads `roles: [a] -> [a, b]`,
    not an index). Paths listed in `sets` compare without order, as CouchDB treats
    role and name lists.
    """
    before, after = before or {}, after or {}
    if not before or not after:  # a whole object appears or goes: each of its leaves is a field
        return tuple(FieldChange(path, _lookup(before, keys), _lookup(after, keys))
                     for path, keys in sorted(_leaves(before or after).items()))
    unordered = set(sets)
    if _canonical(before, unordered) == _canonical(after, unordered):
        return ()  # the common case on a converged server, and ~100x cheaper than asking DeepDiff
    result = DeepDiff(before, after, view="tree", verbose_level=2,
                      ignore_order_func=lambda level: _dotted(_key_path(level)) in unordered)
    paths: dict[str, tuple[str, ...]] = {}
    for changes in result.values():
        for level in changes:
            keys = _key_path(level)
            paths.setdefault(_dotted(keys), keys)
    return tuple(FieldChange(dotted, _lookup(before, keys), _lookup(after, keys))
                 for dotted, keys in sorted(paths.items()))


def diff_all(wanted: Mapping[str, Mapping[str, Desired]], observed: Mapping[str, Mapping[str, Observed]],
             kinds: Mapping[str, Any]) -> tuple[list[Change], list[str]]:
    """Every change (unordered) and every warning, comparing each kind's wanted objects with its live ones."""
    changes: dict[tuple[str, str], Change] = {}
    warnings: list[str] = []
    for name in sorted(set(wanted) | set(observed)):
        kind = kinds[name]
        want, live = wanted.get(name, {}), observed.get(name, {})
        for key in sorted(set(want) | set(live)):
            change = kind.diff(want.get(key), live.get(key))
            if change is not None:
                changes[(name, key)] = replace(change, desired=want.get(key))
            if (warn := getattr(kind, "warnings", None)) is not None:
                warnings.extend(warn(want.get(key), live.get(key)))
        if (summary := getattr(kind, "summary_warnings", None)) is not None:
            warnings.extend(summary([change for (kind_name, _), change in changes.items() if kind_name == name], live))
    _reset_children(changes, wanted, observed, kinds)
    return list(changes.values()), warnings


def _reset_children(changes: dict[tuple[str, str], Change], wanted: Mapping[str, Mapping[str, Desired]],
                    observed: Mapping[str, Mapping[str, Observed]], kinds: Mapping[str, Any]) -> None:
    """An object living inside a created or replaced parent (a database's security object) starts from
    nothing: its change is the one against `live=None`, whatever the old parent held. It keeps the old
    object's version, so a saved plan still notices when that object changed before the apply."""
    renewed = {id for id, change in changes.items() if isinstance(change, (Create, Replace))}
    for name, want in wanted.items():
        parent = getattr(kinds[name], "parent", None)
        if parent is None:
            continue
        for key, desired in want.items():
            if parent(key) in renewed:
                change = kinds[name].diff(desired, None)
                if change is not None:
                    old = observed.get(name, {}).get(key)
                    changes[(name, key)] = replace(change, desired=desired, version=old and old.version)


def _canonical(value: Any, unordered: set[str], path: str = "") -> Any:
    """`value` with the lists at `unordered` paths sorted, for a quick equality test."""
    if isinstance(value, Mapping):
        return {key: _canonical(item, unordered, f"{path}.{key}" if path else str(key)) for key, item in value.items()}
    if isinstance(value, list) and path in unordered:
        return sorted(value, key=repr)
    return value


def _leaves(body: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Dotted path -> key path of every value that is not a mapping (a list counts as one value)."""
    leaves: dict[str, tuple[str, ...]] = {}
    for key, value in body.items():
        keys = prefix + (key,)
        if isinstance(value, Mapping):
            leaves.update(_leaves(value, keys))
        elif value != []:  # an empty list says nothing a reviewer needs
            leaves[_dotted(keys)] = keys
    return leaves


def _key_path(level: Any) -> tuple[str, ...]:
    keys = []
    for part in level.path(output_format="list"):
        if isinstance(part, int):
            break
        keys.append(part)
    return tuple(keys)


def _dotted(keys: tuple[str, ...]) -> str:
    return ".".join(str(key) for key in keys)


def _lookup(body: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = body
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value
