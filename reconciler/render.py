"""Stage 8, render: a plan as text (Terraform-like), JSON (docs/plan-format.md) or Markdown (a PR comment).

Values come from plan bodies, which never hold a secret; a sensitive field
shows only that it will change.
"""

from __future__ import annotations

import json
from itertools import groupby
from typing import Any, Sequence

from rich.text import Text

from .model import Change, Create, FieldChange, Plan, Replace
from .ownership import is_marker_path
from .planfile import to_document

SENSITIVE = "(sensitive, will change)"


def text(plan: Plan) -> Text:
    """The plan for a terminal; print `.plain` where colour is not wanted."""
    out = Text()
    for warning in plan.warnings:
        out.append("Warning: ", style="bold yellow")
        out.append(f"{warning}\n")
    if plan.warnings:
        out.append("\n")
    if not plan.changes:
        out.append(plan.summary() + "\n", style="bold green")
        return out
    out.append(f"couch-reconciler will make these changes on {plan.server}:\n\n")
    for change in plan.changes:
        style = change.action.style
        out.append(f"{change.symbol:>3} ", style=f"bold {style}")
        out.append(f"{change.kind}/{change.key}", style="bold")
        out.append(f"  ({change.source})\n" if change.source else "\n", style="dim")
        for line in change_lines(change):
            out.append(f"      {line}\n")
    out.append("\n")
    out.append(plan.summary() + "\n", style="bold")
    return out


def change_lines(change: Change) -> list[str]:
    """What a reviewer needs under one change: its fields, what it destroys, its notes.

    The ownership marker the tool writes into design and replication documents is bookkeeping, not a
    reviewer's concern, on every create; an existing document that gets it is adopted, and says so, as
    it makes the document one `--allow-delete` may later remove.
    """
    shown = [item for item in change.fields if not is_marker_path(item.path)]
    lines = [_field_line(change, item) for item in shown]
    if len(shown) < len(change.fields) and not isinstance(change, Create):
        lines.append("# adopts it: marks it as managed by couch-reconciler (--allow-delete may remove it later)")
    if change.destroys:
        lines.append(f"destroys: {change.destroys}")
    lines.extend(f"# {note}" for note in change.notes)
    return lines


def _field_line(change: Change, item: FieldChange) -> str:
    if item.sensitive:
        return f"{item.path}: {SENSITIVE}"
    if isinstance(change, Create):
        line = f"{item.path}: {_value(item.after)}"
    else:
        line = f"{item.path}: {_value(item.before)} -> {_value(item.after)}"
    return line + ("   # forces replacement" if isinstance(change, Replace) else "")


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def json_document(plan: Plan) -> str:
    return json.dumps(to_document(plan), indent=2, ensure_ascii=False) + "\n"


def markdown(plan: Plan) -> str:
    """A pull-request comment: the summary, then one table row per change."""
    lines = ["### couch-reconciler plan", "", f"**{plan.summary()}**", ""]
    lines += [f"> :warning: {_cell(warning)}" for warning in plan.warnings]
    if plan.warnings:
        lines.append("")
    if plan.changes:
        lines += ["| | Object | Changes | Manifest |", "|---|---|---|---|"]
        for change in plan.changes:
            # Double backticks: a note may hold single ones (`partitioned`), which would end a `code span`.
            details = "<br>".join(f"`` {_cell(line)} ``" for line in change_lines(change))
            source = f"`{change.source}`" if change.source else ""
            lines.append(f"| `{change.symbol}` | `{change.kind}/{_cell(change.key)}` | {details} | {source} |")
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    """Table cells end at `|` and lines, even inside backticks."""
    return text.replace("|", "\\|").replace("\n", " ")


SHOWN_KEYS = 5  # keys listed per kind in an apply summary; the rest are counted


def apply_summary(applied: Sequence[Change], uncertain: Sequence[Change], pending: Sequence[Change]) -> list[str]:
    """What a failed apply did, by kind and key: applied, may or may not have been (the batch that failed),
    not sent. The first line counts them, as `Apply complete:` does for a whole apply."""
    total = len(applied) + len(uncertain) + len(pending)
    lines = [f"Apply stopped: {len(applied)} of {total} changes applied, {len(uncertain)} may or may not have "
             f"been (the batch that failed), {len(pending)} not applied."]
    for label, changes in (("applied", applied), ("maybe applied", uncertain), ("not applied", pending)):
        if changes:
            lines.append(f"  {label}: " + "; ".join(_keys(kind, [c.key for c in group])
                                                    for kind, group in groupby(changes, key=lambda c: c.kind)))
    lines.append("Run plan to see what is left: apply is safe to run again and converges.")
    return lines


def _keys(kind: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS]) + (f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")
    return f"{len(keys)} {kind} ({shown})"
