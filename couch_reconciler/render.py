"""Stage 8, render: a plan as text (Terraform-like), JSON (docs/plan-format.md) or Markdown (a PR comment).

Values come from plan bodies, which never hold a secret; a sensitive field
shows only that it will change.
"""

from __future__ import annotations

import json
from itertools import groupby
from typing import Any, Callable, Sequence

from rich.text import Text

from .model import Action, Change, Create, Diagnostic, FieldChange, Plan, Replace
from .ownership import is_marker_path
from .planfile import to_document

SENSITIVE = "(sensitive, will change)"


COMPACT_SHOWN = 10  # changes listed per kind by `--compact`


def text(plan: Plan, compact: bool = False) -> Text:
    """The plan for a terminal; print `.plain` where colour is not wanted.

    The summary line and the count per kind come before the changes, and the summary and the warnings
    again after them: a plan of thousands of changes scrolls its head away. `compact` lists only the first
    COMPACT_SHOWN changes of each kind."""
    out = Text()
    _warnings(out, plan)
    if plan.warnings:
        out.append("\n")
    if not plan.changes:
        out.append(plan.summary() + "\n", style="bold green")
        return out
    groups = _by_kind(plan.changes)
    out.append(f"couch-reconciler will make these changes on {plan.server}:\n")
    out.append(plan.summary() + "\n", style="bold")
    for kind, changes in groups.items():
        out.append(f"  {kind}: {_counts(changes)}\n")
    out.append("\n")
    if compact:
        for kind, changes in groups.items():
            for change in changes[:COMPACT_SHOWN]:
                _change(out, change)
            if len(changes) > COMPACT_SHOWN:
                out.append(f"    ... and {len(changes) - COMPACT_SHOWN} more {kind} changes (all of them: without "
                           "--compact, or in the JSON plan)\n", style="dim")
    else:
        for change in plan.changes:
            _change(out, change)
    out.append("\n")
    out.append(plan.summary() + "\n", style="bold")
    if plan.warnings:
        out.append("\n")
        _warnings(out, plan)
    return out


def _warnings(out: Text, plan: Plan) -> None:
    for warning in plan.warnings:
        out.append("Warning: ", style="bold yellow")
        out.append(f"{warning}\n")


def _change(out: Text, change: Change) -> None:
    out.append(f"{change.symbol:>3} ", style=f"bold {change.action.style}")
    out.append(f"{change.kind}/{change.key}", style="bold")
    out.append(f"  ({change.source})\n" if change.source else "\n", style="dim")
    for line in change_lines(change):
        out.append(f"      {line}\n")


def _counts(changes: Sequence[Change]) -> str:
    """`2 to create, 1 to delete`: the changes of one kind by action."""
    return ", ".join(f"{sum(1 for c in changes if c.action is action)} to {action.value}"
                     for action in Action if any(c.action is action for c in changes))


def change_lines(change: Change) -> list[str]:
    """What a reviewer needs under one change: its fields, what it destroys, its notes.

    The ownership marker the tool writes into the design and replication documents it creates is
    bookkeeping, not a reviewer's concern (a document it finds keeps its marker, or its lack of one).
    """
    lines = [_field_line(change, item) for item in change.fields if not is_marker_path(item.path)]
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


# A pull-request comment is refused above 65,536 characters on GitHub (1,000,000 on GitLab): the Markdown plan
# stays under it with room to spare for what a pipeline adds around it.
MARKDOWN_LIMIT = 60_000
TABLE_HEAD = ["| | Object | Changes | Manifest |", "|---|---|---|---|"]
OPEN_UP_TO = 20  # changes in a plan whose kinds are shown unfolded


def markdown(plan: Plan, limit: int = MARKDOWN_LIMIT) -> str:
    """A pull-request comment of at most `limit` characters: the summary, the warnings, then one folded
    (`<details>`) table per kind. What does not fit is left out, the smallest kinds shown whole first (a
    config change is not buried under sign-ups); the comment says how many changes it leaves out and
    where the full plan is."""
    groups = _by_kind(plan.changes)
    rows = {kind: [_row(change) for change in changes] for kind, changes in groups.items()}
    warnings = _fitting([f"> :warning: {_cell(warning)}" for warning in plan.warnings], limit // 4,
                        lambda left: f"> :warning: and {left} more warning(s): see the JSON plan")
    rendered = _markdown(plan, groups, rows, {kind: len(changes) for kind, changes in groups.items()}, warnings)
    # Rows get what the rest (summary, warnings, note, each kind's frame) leaves; a frame saying
    # "(first 12 shown)" is a few characters longer than "(not shown)", taken off the rows if need be.
    budget = limit - len(_markdown(plan, groups, rows, dict.fromkeys(groups, 0), warnings))
    while len(rendered) > limit:
        rendered = _markdown(plan, groups, rows, _share(budget, rows), warnings)
        budget -= max(len(rendered) - limit, 0)
    return rendered


def _markdown(plan: Plan, groups: dict[str, list[Change]], rows: dict[str, list[str]], shown: dict[str, int],
              warnings: list[str]) -> str:
    left_out = len(plan.changes) - sum(shown.values())
    lines = ["### couch-reconciler plan", "", f"**{plan.summary()}**", ""]
    if left_out:
        lines += [_left_out(left_out, len(plan.changes)), ""]
    if warnings:
        lines += warnings + [""]
    unfold = len(plan.changes) <= OPEN_UP_TO
    for kind, changes in groups.items():
        lines += [_summary(kind, changes, shown[kind], unfold), ""]
        if shown[kind]:
            lines += TABLE_HEAD + rows[kind][:shown[kind]] + [""]
        lines += ["</details>", ""]
    return "\n".join(lines)


def _by_kind(changes: Sequence[Change]) -> dict[str, list[Change]]:
    """The changes per kind, kinds in plan (apply) order."""
    groups: dict[str, list[Change]] = {}
    for change in changes:
        groups.setdefault(change.kind, []).append(change)
    return groups


def _row(change: Change) -> str:
    # Double backticks: a note may hold single ones (`partitioned`), which would end a `code span`.
    details = "<br>".join(f"`` {_cell(line)} ``" for line in change_lines(change))
    source = f"`{change.source}`" if change.source else ""
    return f"| `{change.symbol}` | `{change.kind}/{_cell(change.key)}` | {details} | {source} |"


def _summary(kind: str, changes: Sequence[Change], shown: int, unfold: bool) -> str:
    partial = "" if shown == len(changes) else f" (first {shown} shown)" if shown else " (not shown)"
    return f"<details{' open' if unfold else ''}><summary><b>{kind}</b>: {_counts(changes)}{partial}</summary>"


def _left_out(left_out: int, total: int) -> str:
    return (f"> **{left_out} of {total} changes are not shown**: all of them would exceed the size of a pull "
            "request comment. The full plan is the JSON plan (`reconcile plan --out plan.json`, kept by the "
            "pipeline as an artifact), or the output of `reconcile plan` (`--compact`: counts per kind).")


def _share(budget: int, rows: dict[str, list[str]]) -> dict[str, int]:
    """How many rows of each kind fit in `budget` characters: the kinds needing least first, each given at
    most an equal share of what is left, so a small kind shows whole and the big ones share the rest."""
    shown: dict[str, int] = {}
    table = sum(len(line) + 1 for line in TABLE_HEAD) + 1
    order = sorted(rows, key=lambda kind: sum(len(row) + 1 for row in rows[kind]))
    for position, kind in enumerate(order):
        share = max(budget, 0) // (len(order) - position)
        used, count = table, 0
        for row in rows[kind]:
            if used + len(row) + 1 > share:
                break
            used += len(row) + 1
            count += 1
        shown[kind] = count
        budget -= used if count else 0
    return shown


def _fitting(lines: list[str], budget: int, more: Callable[[int], str]) -> list[str]:
    """The first of `lines` that fit in `budget` characters, then `more(number left out)` if any was."""
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > budget:
            return kept + [more(len(lines) - len(kept))]
        kept.append(line)
        used += len(line) + 1
    return kept


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


def diagnostics_document(path: str, manifests: int, diagnostics: Sequence[Diagnostic], valid: bool) -> str:
    """`reconcile validate --format json`: every diagnostic with its place, in reading order."""
    return json.dumps({
        "format": "couch-reconciler/diagnostics", "format_version": 1, "path": path, "valid": valid,
        "manifests": manifests,
        "diagnostics": [{"file": d.source.file, "line": d.source.line, "severity": d.severity, "subject": d.subject,
                         "message": d.message, "hint": d.hint} for d in diagnostics],
    }, indent=2, ensure_ascii=False) + "\n"


def apply_document(plan: Plan, applied: Sequence[Change], uncertain: Sequence[Change] = (),
                   pending: Sequence[Change] = (), error: str | None = None) -> str:
    """`reconcile apply --format json`: what was applied, per change, in the order it was sent. After a
    failure, the changes of the batch that failed are `uncertain` and the rest `not_applied`."""
    outcomes = [*((change, "applied") for change in applied), *((change, "uncertain") for change in uncertain),
                *((change, "not_applied") for change in pending)]
    return json.dumps({
        "format": "couch-reconciler/apply", "format_version": 1, "server": plan.server,
        "complete": error is None, "error": error,
        "summary": {status: sum(1 for _, s in outcomes if s == status)
                    for status in ("applied", "uncertain", "not_applied")},
        "changes": [{"action": change.action.value, "kind": change.kind, "key": change.key,
                     "source": str(change.source) if change.source else None, "outcome": status}
                    for change, status in outcomes],
    }, indent=2, ensure_ascii=False) + "\n"
