"""Stage 6, plan: order the changes, apply the safety rules, and save or load a plan file.

Safety rules, checked before anything is shown as a plan that `apply` could run:
- a Delete or Replace that destroys documents needs `allow_delete_data`;
- a Replace deletes the live object first, so it needs `allow_delete` like a Delete
  (deletions of unlisted objects are not even looked for without it);
- like octoDNS, a plan that would update (or delete) more than a share of the
  existing objects of a kind is refused unless forced, once the kind has at least
  `min_existing` objects (tiny deployments are never blocked).

A plan file is the JSON document `to_document` writes (docs/plan-format.md). It
holds no secret: changes carry secret *references*, which apply resolves again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from .diff import Change, Create, Delete, FieldChange, Replace, Update, diff_all
from .errors import ReconcileError
from .expand import Desired, DesiredState
from .load import Source
from .observe import observation, observe
from .secrets import SecretRef
from .templates import resolve

FORMAT = "couch-reconciler/plan"
FORMAT_VERSION = 1
ACTIONS: dict[str, type[Change]] = {cls.action: cls for cls in (Create, Update, Delete, Replace)}


class PlanRefused(ReconcileError):
    """The plan breaks a safety rule; one line per problem."""

    def __init__(self, lines: Sequence[str]):
        super().__init__("\n".join(lines))
        self.lines = list(lines)


class StalePlan(ReconcileError):
    """A saved plan no longer matches the server."""


@dataclass(frozen=True)
class Policy:
    allow_delete: bool = False  # look for managed objects the manifests no longer list, and delete them
    allow_delete_data: bool = False  # also delete (or replace) databases that hold documents
    force: bool = False  # skip the share thresholds
    max_update_share: float = 0.3  # octoDNS's MAX_SAFE_UPDATE_PCENT
    max_delete_share: float = 0.3  # octoDNS's MAX_SAFE_DELETE_PCENT
    min_existing: int = 10  # octoDNS's MIN_EXISTING_RECORDS: below this many objects of a kind, no threshold


@dataclass
class Plan:
    server: str
    changes: list[Change]
    warnings: list[str] = field(default_factory=list)
    existing: dict[str, int] = field(default_factory=dict)  # live objects in scope per kind (threshold base)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def counts(self) -> dict[str, int]:
        """Terraform's arithmetic: a replace is one to add and one to destroy."""
        kinds = [type(change) for change in self.changes]
        replace = kinds.count(Replace)
        return {"add": kinds.count(Create) + replace, "change": kinds.count(Update),
                "destroy": kinds.count(Delete) + replace}

    def summary(self) -> str:
        if not self.changes:
            return "No changes. The server matches the manifests."
        counts = self.counts()
        return f"Plan: {counts['add']} to add, {counts['change']} to change, {counts['destroy']} to destroy."


def make_plan(session: Any, state: DesiredState, policy: Policy, kinds: Mapping[str, Any]) -> Plan:
    """Observe the server, diff, order and check a plan; PlanRefused when a safety rule says no.

    Templates (UserDatabases) are resolved first, from the same reads the kinds observe with."""
    with observation(session):
        state, template_warnings = resolve(session, state, prune=policy.allow_delete)
        wanted = {name: objects for name, objects in state.by_kind().items() if name in kinds}
        warnings = [f"{len(objects)} {name} object(s) in the manifests are not planned: this version cannot "
                    f"apply that kind yet" for name, objects in sorted(state.by_kind().items()) if name not in kinds]
        warnings += template_warnings
        live = observe(session, wanted, kinds, prune=policy.allow_delete,
                       prune_kinds={name for name in state.prune_kinds if name in kinds})
    changes, kind_warnings = diff_all(wanted, live, kinds)
    existing = {name: len(objects) for name, objects in live.items()}
    plan = Plan(session.base, order(changes, kinds), warnings + kind_warnings, existing)
    check_safety(plan, policy)
    return plan


def order(changes: Sequence[Change], kinds: Mapping[str, Any]) -> list[Change]:
    """Creations and updates by kind order (a database before its security object); deletions after
    them, in reverse kind order (what lives in a database goes before the database)."""
    def rank(change: Change) -> tuple:
        position = kinds[change.kind].order
        if isinstance(change, Delete):
            return (1, -position, change.kind, change.key)
        return (0, position, change.kind, change.key)
    return sorted(changes, key=rank)


def check_safety(plan: Plan, policy: Policy) -> None:
    problems = []
    for change in plan.changes:
        where = f"{change.source}: " if change.source else ""
        subject = f"{change.kind}/{change.key}"
        if isinstance(change, Replace) and not policy.allow_delete:
            why = "; ".join(change.notes) or "it cannot be changed in place"
            problems.append(f"{where}{subject}: must be deleted and created again ({why}); rerun with "
                            "--allow-delete" + (" --allow-delete-data" if change.destroys else "")
                            + " to replace it, or revert the manifest")
        elif change.destroys and not policy.allow_delete_data:
            verb = "replacing" if isinstance(change, Replace) else "deleting"
            problems.append(f"{where}{subject}: {verb} it destroys {change.destroys}; rerun with "
                            "--allow-delete-data if that is intended, or add it back to the manifests")
    if not policy.force:
        problems.extend(_threshold_problems(plan, policy))
    if problems:
        raise PlanRefused(problems)


def _threshold_problems(plan: Plan, policy: Policy) -> list[str]:
    problems = []
    for kind, existing in sorted(plan.existing.items()):
        if existing < policy.min_existing:
            continue
        changes = [change for change in plan.changes if change.kind == kind]
        updates = sum(isinstance(change, (Update, Replace)) for change in changes)
        deletes = sum(isinstance(change, (Delete, Replace)) for change in changes)
        for verb, count, share, option in (("update", updates, policy.max_update_share, "--max-update-share"),
                                          ("delete", deletes, policy.max_delete_share, "--max-delete-share")):
            if count / existing > share:
                problems.append(f"refusing to {verb} {count} of {existing} existing {kind} objects "
                                f"({count / existing:.0%} > {share:.0%}); check the manifests, then rerun with "
                                f"--force or a higher {option}")
    return problems


def to_document(plan: Plan) -> dict[str, Any]:
    """The plan as the JSON document of docs/plan-format.md (also what `--format json` prints)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": plan.created_at,
        "server": plan.server,
        "summary": {**plan.counts(), "text": plan.summary()},
        "warnings": list(plan.warnings),
        "existing": dict(sorted(plan.existing.items())),
        "changes": [_change_document(change) for change in plan.changes],
    }


def save(plan: Plan, path: str) -> None:
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(to_document(plan), handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.replace(temporary, path)  # a half-written plan file must never be applied
    except OSError as error:
        raise ReconcileError(f"--out {path}: cannot write the plan file ({error.strerror}); "
                             "give a path in an existing, writable folder") from None


def load(path: str) -> Plan:
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as error:
        raise ReconcileError(f"{path}: cannot read the plan file ({error.strerror})") from None
    except (ValueError, UnicodeDecodeError):
        raise ReconcileError(f"{path}: not a plan file (not JSON); give a file written by `reconcile plan --out`")
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ReconcileError(f"{path}: not a plan file; give a file written by `reconcile plan --out`")
    if document.get("format_version") != FORMAT_VERSION:
        raise ReconcileError(f"{path}: plan format version {document.get('format_version')} is not "
                             f"{FORMAT_VERSION}; make the plan again with this version of reconcile")
    try:
        changes = [_change_from(item) for item in document["changes"]]
        return Plan(document["server"], changes, list(document.get("warnings", [])),
                    dict(document.get("existing", {})), document["created_at"])
    except (KeyError, TypeError, ValueError) as error:
        raise ReconcileError(f"{path}: damaged plan file ({type(error).__name__}: {error}); make the plan again") \
            from None


def is_plan_file(path: str) -> bool:
    if not os.path.isfile(path) or path.endswith((".yaml", ".yml")):
        return False
    with open(path, "rb") as handle:
        return b'"format": "couch-reconciler/plan"' in handle.read(200)


def _change_document(change: Change) -> dict[str, Any]:
    desired = change.desired
    return {
        "action": change.action,
        "symbol": change.symbol,
        "kind": change.kind,
        "key": change.key,
        "source": str(change.source) if change.source else None,
        "version": change.version,
        "destroys": change.destroys,
        "notes": list(change.notes),
        "fields": [{"path": item.path, "sensitive": item.sensitive,
                    **({} if item.sensitive else {"before": item.before, "after": item.after})}
                   for item in change.fields],
        "before": change.before,
        "after": change.after,
        "desired": None if desired is None else {
            "body": desired.body,
            "options": desired.options,
            "source": str(desired.source),
            "secrets": {name: {"ref": ref.ref, "base_dir": os.path.abspath(ref.base_dir)}
                        for name, ref in sorted(desired.secrets.items())},
        },
    }


def _change_from(item: Mapping[str, Any]) -> Change:
    desired = item["desired"]
    return ACTIONS[item["action"]](
        kind=item["kind"], key=item["key"], source=_source(item["source"]),
        before=item["before"], after=item["after"],
        fields=tuple(FieldChange(field["path"], field.get("before"), field.get("after"), field["sensitive"])
                     for field in item["fields"]),
        version=item["version"], notes=tuple(item["notes"]), destroys=item["destroys"],
        desired=None if desired is None else Desired(
            item["kind"], item["key"], desired["body"], _source(desired["source"]),
            {name: SecretRef(ref["ref"], ref["base_dir"]) for name, ref in desired["secrets"].items()},
            desired["options"]),
    )


def _source(text: str | None) -> Source | None:
    if text is None:
        return None
    file, _, line = text.rpartition(":")
    return Source(file, int(line))
