"""Plan files: the JSON document `to_document` writes (docs/plan-format.md), and reading it back.

A plan file holds no secret: changes carry secret *references*, which apply resolves again; the versions
observed let `apply PLANFILE` refuse a plan the server has moved away from.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from .errors import ReconcileError
from .model import Action, Change, Desired, FieldChange, Plan, Source
from .secrets import SecretRef, SecretUnreadable

FORMAT = "couch-reconciler/plan"
FORMAT_VERSION = 1


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
        "roots": {"manifests": plan.manifest_root, "secrets_dirs": list(plan.secrets_dirs)},
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
        roots = document.get("roots") or {}
        plan = Plan(document["server"], changes, list(document.get("warnings", [])),
                    dict(document.get("existing", {})), document["created_at"], roots.get("manifests"),
                    tuple(roots.get("secrets_dirs") or ()))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ReconcileError(f"{path}: damaged plan file ({type(error).__name__}: {error}); make the plan again") \
            from None
    _check_confined(path, plan)
    return plan


def _check_confined(path: str, plan: Plan) -> None:
    """A plan file names secret files by absolute paths, and anyone who can edit it could point one anywhere
    (`/etc/shadow`, sent to the server as a password): every `file:` secret must still resolve, links included,
    inside the folders the plan recorded, as `plan` required of the manifests."""
    files = [(change, ref) for change in plan.changes if change.desired is not None
             for ref in change.desired.secrets.values() if ref.is_file]
    if not files:
        return
    if plan.manifest_root is None:
        raise ReconcileError(f"{path}: the plan file records no manifest folder, so its file: secrets cannot be "
                             "checked; make the plan again with this version of reconcile")
    roots = [plan.manifest_root, *plan.secrets_dirs]
    outside = []
    for change, ref in files:
        try:
            ref.confine(roots)
        except SecretUnreadable:
            outside.append(f"{change.kind}/{change.key} ({ref.ref})")
    if outside:
        more = f" and {len(outside) - 1} more" if len(outside) > 1 else ""
        raise ReconcileError(f"{path}: the secret file of {outside[0]}{more} lies outside the manifest folder "
                             f"{plan.manifest_root} and the --secrets-dir folders the plan was made with (the plan file, "
                             "or a link in the folder, was changed since); nothing was sent: make the plan again")


def is_plan_file(path: str) -> bool:
    if not os.path.isfile(path) or path.endswith((".yaml", ".yml")):
        return False
    with open(path, "rb") as handle:
        return b'"format": "couch-reconciler/plan"' in handle.read(200)


def _change_document(change: Change) -> dict[str, Any]:
    desired = change.desired
    return {
        "action": change.action.value,
        "symbol": change.symbol,
        "kind": change.kind,
        "key": change.key,
        "source": str(change.source) if change.source else None,
        "version": change.version,
        "losing_versions": list(change.losing_versions),
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
    return Change.of(Action[item["action"].upper()])(
        kind=item["kind"], key=item["key"], source=None if item["source"] is None else _source(item["source"]),
        before=item["before"], after=item["after"],
        fields=tuple(FieldChange(field["path"], field.get("before"), field.get("after"), field["sensitive"])
                     for field in item["fields"]),
        version=item["version"], losing_versions=tuple(item.get("losing_versions", ())), notes=tuple(item["notes"]),
        destroys=item["destroys"],
        desired=None if desired is None else Desired(
            item["kind"], item["key"], desired["body"], _source(desired["source"]),
            {name: SecretRef(ref["ref"], ref["base_dir"]) for name, ref in desired["secrets"].items()},
            desired["options"]),
    )


def _source(text: str) -> Source:
    file, _, line = text.rpartition(":")
    return Source(file, int(line))
