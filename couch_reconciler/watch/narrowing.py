"""The desired state a targeted reconcile plans with: just the users and databases a burst of events
concerns, and how a new reading of the manifests differs from the last one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..kinds.design_document import split_key
from ..kinds.user_databases import UserTemplate, user_database
from ..model import DATABASE, DESIGN_DOCUMENT, SECURITY, USER, DesiredState


def narrowed(state: DesiredState, users: set[str], databases: set[str]) -> DesiredState:
    """The desired state of just these users (what their templates want) and these databases: manifests'
    objects that live in them, nothing pruned (a narrowed plan does not see what it would prune)."""
    templates = [UserTemplate(replace(t.manifest, spec={
        **t.manifest.spec,
        "replicateTo": [{**entry, "prune": False} for entry in t.manifest.spec.get("replicateTo", [])]}),
        t.parts) for t in state.templates if isinstance(t, UserTemplate)]
    touched = databases | {user_database(t.prefix, user) for t in templates for user in users}

    def related(kind: str, key: str) -> bool:
        if kind == USER:
            return key in users
        if kind == DESIGN_DOCUMENT:
            return split_key(key)[0] in touched
        return kind in (DATABASE, SECURITY) and key in touched

    objects = {(kind, key): replace(desired, options={k: v for k, v in desired.options.items() if k != "prune"})
               for (kind, key), desired in state.objects.items() if related(kind, key)}
    return DesiredState(objects, templates=list(templates))


def changed_objects(before: DesiredState, after: DesiredState) -> int:
    """How many wanted objects and user templates differ (added, removed, other content); where they are
    written in the files does not count."""

    def contents(state: DesiredState) -> dict[tuple[str, str], Any]:
        objects = {key: (desired.body, desired.secrets, desired.options) for key, desired in state.objects.items()}
        templates = {("template", t.manifest.name): (t.manifest.spec, [(d.name, d.spec) for d in t.parts])
                     for t in state.templates}
        return {**objects, **templates}

    old, new = contents(before), contents(after)
    return sum(1 for key in old.keys() | new.keys() if old.get(key) != new.get(key))

