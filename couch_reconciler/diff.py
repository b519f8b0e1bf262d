"""Stage 5, diff: wanted vs live -> typed changes (Create, Update, Delete, Replace), through each kind's `diff`."""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from .kinds.base import ResourceKind
from .model import Change, Create, Desired, Observed, Replace


def diff_all(wanted: Mapping[str, Mapping[str, Desired]], observed: Mapping[str, Mapping[str, Observed]],
             kinds: Mapping[str, ResourceKind]) -> tuple[list[Change], list[str]]:
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
            warnings.extend(kind.warnings(want.get(key), live.get(key)))
        warnings.extend(kind.summary_warnings(
            [change for (kind_name, _), change in changes.items() if kind_name == name], live, want))
    _reset_children(changes, wanted, observed, kinds)
    return list(changes.values()), warnings


def _reset_children(changes: dict[tuple[str, str], Change], wanted: Mapping[str, Mapping[str, Desired]],
                    observed: Mapping[str, Mapping[str, Observed]], kinds: Mapping[str, ResourceKind]) -> None:
    """An object living inside a created or replaced parent (a database's security object) starts from
    nothing: its change is the one against `live=None`, whatever the old parent held. It keeps the old
    object's version, so a saved plan still notices when that object changed before the apply."""
    renewed = {id for id, change in changes.items() if isinstance(change, (Create, Replace))}
    if not renewed:
        return
    for name, want in wanted.items():
        kind, live = kinds[name], observed.get(name, {})
        for key, desired in want.items():
            old = live.get(key)
            # Without a live object, diff_all has just diffed it against None: nothing to redo.
            if old is not None and kind.parent(key) in renewed:
                change = kind.diff(desired, None)
                if change is not None:
                    changes[(name, key)] = replace(change, desired=desired, version=old.version)
