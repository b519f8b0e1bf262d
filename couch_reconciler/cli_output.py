"""What the commands show: a plan in the format asked for, and an apply's progress and outcome. Colour and
progress bars only where a person is at the terminal."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from .client import CouchSession
    from .model import Plan


def terminal(stream: Any) -> bool:
    """Whether a person is at `stream`: colour, progress bars and questions only then."""
    return stream.isatty()


def console() -> "Console":
    """A rich console for stdout, without colour when --no-color (or NO_COLOR) says so."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, no_color=click.get_current_context().meta.get("no_color"))


def show(plan: "Plan", fmt: str = "text", compact: bool = False) -> None:
    from . import render

    if fmt == "json":
        click.echo(render.json_document(plan), nl=False)
    elif fmt == "markdown":
        click.echo(render.markdown(plan))
    elif terminal(sys.stdout) and not click.get_current_context().meta.get("no_color"):
        console().print(render.text(plan, compact), end="")
    else:
        click.echo(render.text(plan, compact).plain, nl=False)


PROGRESS_BAR_ABOVE = 50  # operations; fewer finish before a bar would help


def execute_showing_progress(session: "CouchSession", plan: "Plan", fmt: str = "text") -> None:
    """Apply the plan, showing progress; when a write fails, what was applied and what was not (stdout),
    then the failure's line (stderr, exit 1). With `fmt` json, stdout is one document saying what was
    applied, per change, whether or not the apply completed."""
    from .apply import ApplyFailed, check_secrets, execute
    from .kinds import RESOURCES
    from .render import apply_document, apply_summary

    check_secrets(plan.changes, "nothing was applied")
    applied: list[Any] = []

    def lines(chunk: Any) -> None:
        applied.extend(chunk)
        if fmt == "text":
            for change in chunk:
                click.echo(f"{change.symbol} {change.kind}/{change.key}: {change.action.past}")

    try:
        if fmt == "text" and terminal(sys.stdout) and len(plan.changes) > PROGRESS_BAR_ABOVE:
            from rich.progress import Progress

            # Not transient: the bar's last state (how far it got) stays on screen, above the summary.
            with Progress(console=console()) as bar:
                task = bar.add_task("Applying", total=len(plan.changes))
                execute(session, plan.changes, RESOURCES, lambda chunk: bar.advance(task, len(chunk)))
        else:
            execute(session, plan.changes, RESOURCES, lines)
    except ApplyFailed as failed:
        if fmt == "json":
            click.echo(apply_document(plan, failed.applied, failed.uncertain, failed.pending, str(failed.cause)),
                       nl=False)
        else:
            for line in apply_summary(failed.applied, failed.uncertain, failed.pending):
                click.echo(line)
        raise failed.cause from None
    if fmt == "json":
        click.echo(apply_document(plan, applied), nl=False)
        return
    counts = plan.counts()
    click.echo(f"Apply complete: {counts['add']} added, {counts['change']} changed, {counts['destroy']} destroyed.")
