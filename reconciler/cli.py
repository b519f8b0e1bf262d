"""The `reconcile` command line.

Each command is an independent function. What they share lives here once:
`one_line_errors` turns a ReconcileError into one line on stderr and exit 1
(never a traceback), and `valid_manifests` runs load + validate, prints every
diagnostic and stops with exit 1 when any is an error, so no command ever
talks to a server about manifests that `reconcile validate` would refuse.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, TypeVar

import click

from . import __version__
from .errors import ReconcileError
from .load import Manifest

F = TypeVar("F", bound=Callable[..., Any])

MANIFEST_DIR = click.Path(exists=False, file_okay=True, dir_okay=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconcile")
def main() -> None:
    """CouchDB 3.x as code: validate, plan and apply YAML manifests against a live server.

    \b
    Commands:
      validate DIR   check manifests offline (syntax, schema, meaning); exit 1 if invalid
      schema [KIND]  print the JSON Schema of the manifests, for editors and other tools
    """


def one_line_errors(command: F) -> F:
    """Run `command`; a ReconcileError becomes its one-line message on stderr and exit status 1."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ReconcileError as error:
            fail(str(error))
        except KeyboardInterrupt:
            fail("interrupted", status=130)

    return run  # type: ignore[return-value]


def fail(message: str, status: int = 1) -> None:
    click.echo(message, err=True)
    sys.exit(status)


def valid_manifests(directory: str, *, strict: bool = False) -> list[Manifest]:
    """Load and validate; print every diagnostic on stderr; exit 1 on errors (on warnings too when `strict`)."""
    from .validate import load_and_validate

    manifests, diagnostics = load_and_validate(directory)
    for diagnostic in diagnostics:
        click.echo(str(diagnostic), err=True)
    errors = sum(1 for d in diagnostics if d.is_error or strict)
    if errors:
        fail(f"{directory}: {errors} error{'s' if errors != 1 else ''}, nothing was sent to any server")
    return manifests


@main.command()
@click.argument("directory", metavar="DIR", type=MANIFEST_DIR)
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1 when there is any warning).")
@one_line_errors
def validate(directory: str, strict: bool) -> None:
    """Check the manifests in DIR (a folder, read recursively, or one file) without touching the network.

    Every problem is printed as `file:line: Kind/name: what is wrong; how to fix it`.
    Exit status: 0 when valid (warnings are printed but do not fail), 1 when not.
    """
    manifests = valid_manifests(directory, strict=strict)
    click.echo(f"{directory}: {len(manifests)} manifest{'s' if len(manifests) != 1 else ''} valid")


@main.command()
@click.argument("kind", required=False)
@one_line_errors
def schema(kind: str | None) -> None:
    """Print the JSON Schema (draft 2020-12) of KIND's manifests, or of any manifest when KIND is left out.

    The output is self-contained (referenced schemas are embedded), ready for an editor's
    `yaml-language-server: $schema=` line or any JSON Schema validator.
    """
    from .kinds import MANIFESTS
    from .validate import ENVELOPE_SCHEMA, bundle, closest

    if kind is None:
        file = ENVELOPE_SCHEMA
    else:
        by_name = {name.lower(): plugin for name, plugin in MANIFESTS.items()}
        plugin = by_name.get(kind.lower())
        if plugin is None:
            raise ReconcileError(f"unknown kind `{kind}`; {closest(kind, MANIFESTS, 'the kinds are')}")
        file = plugin.schema
    click.echo(json.dumps(bundle(file), indent=2))
