"""The `reconcile` command line.

Each command is an independent function. What they share lives here once:
`one_line_errors` turns a ReconcileError into one line on stderr and exit 1
(never a traceback), and `valid_manifests` / `_desired_state` print every
diagnostic and stop with exit 1 when any is an error, so no command ever
talks to a server about manifests that `reconcile validate` would refuse.
Each command imports what it uses when it runs: importing every stage, rich and
requests up front would slow `reconcile --help` and `validate` by a second or more.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, NoReturn, TypeVar

import click

from . import __version__
from . import cli_output as output
from .cli_options import (
    MANIFEST_DIR,
    connect,
    connection_options,
    display_options,
    safety_options,
    secrets_dir_option,
    split_options,
    target_options,
)
from .errors import ReconcileError
from .load import Manifest
from .paths import Roots
from .secrets import SecretPolicy

if TYPE_CHECKING:
    from .model import DesiredState, Plan

F = TypeVar("F", bound=Callable[..., Any])


class InWorkflowOrder(click.Group):
    """`--help` lists the commands as a pipeline uses them (validate, plan, apply...), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=InWorkflowOrder, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconcile")
def main() -> None:
    """CouchDB 3.x as code: validate, plan and apply YAML manifests against a live server."""


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


def fail(message: str, status: int = 1) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(status)


def valid_manifests(directory: str, secrets: SecretPolicy, *, strict: bool = False) -> list[Manifest]:
    """Load and validate; print every diagnostic on stderr; exit 1 on errors (on warnings too when `strict`)."""
    from .pipeline import load_and_validate

    manifests, diagnostics = load_and_validate(directory, secrets)
    for diagnostic in diagnostics:
        click.echo(str(diagnostic), err=True)
    errors = sum(1 for d in diagnostics if d.is_error or strict)
    if errors:
        fail(f"{directory}: {errors} error{'s' if errors != 1 else ''}, nothing was sent to any server")
    return manifests


@main.command(short_help="Check manifests offline: syntax, schema and meaning.")
@click.argument("directory", metavar="DIR", type=MANIFEST_DIR)
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1 when there is any warning).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one document on stdout listing every problem with its file and line, for tools.")
@secrets_dir_option
@one_line_errors
def validate(directory: str, strict: bool, fmt: str, secrets_dirs: tuple[str, ...]) -> None:
    """Check the manifests in DIR (a folder, read recursively, or one file) without touching the network.

    Every problem is printed as `file:line: Kind/name: what is wrong; how to fix it`.
    Exit status: 0 when valid (warnings are printed but do not fail), 1 when not. Secrets are not
    read (they may live only where the manifests are deployed): `plan` and `apply` read them.
    """
    if fmt == "json":
        from .pipeline import load_and_validate
        from .render import diagnostics_document

        found, diagnostics = load_and_validate(directory, SecretPolicy(dirs=secrets_dirs))
        valid = not any(d.is_error or strict for d in diagnostics)
        click.echo(diagnostics_document(directory, len(found), diagnostics, valid), nl=False)
        sys.exit(0 if valid else 1)
    manifests = valid_manifests(directory, SecretPolicy(dirs=secrets_dirs), strict=strict)
    click.echo(f"{directory}: {len(manifests)} manifest{'s' if len(manifests) != 1 else ''} valid")


@main.command(short_help="Print the manifests' JSON Schemas, for editors and tools.")
@click.argument("kind", required=False)
@click.option("--out", type=click.Path(file_okay=False), metavar="DIR",
              help="Write the schema files into DIR instead (one per kind; they refer to each other).")
@one_line_errors
def schema(kind: str | None, out: str | None) -> None:
    """Print the JSON Schema (draft 2020-12) of KIND's manifests, or of any manifest when KIND is left out.

    The output is self-contained (referenced schemas are embedded), ready for an editor's
    `yaml-language-server: $schema=` line or any JSON Schema validator.

    With --out DIR, writes the schema files themselves into DIR (replacing older copies), to keep beside
    the manifests: `manifest.schema.json` accepts a document of any kind, KIND.schema.json one kind; their
    `$ref`s name each other by relative path, so they work from any folder, offline.
    """
    from .kinds import MANIFESTS
    from .kinds.checks import closest
    from .schemas import ENVELOPE_SCHEMA, bundle, schema_files, schema_text

    if out is not None:
        if kind is not None:
            raise click.UsageError("give KIND (to print one schema) or --out DIR (to write them all), not both")
        os.makedirs(out, exist_ok=True)
        # Kinds registered from outside the product keep their schema elsewhere (a full path).
        files = {os.path.basename(file): file for file in [*schema_files(), *(p.schema for p in MANIFESTS.values())]}
        for name, file in sorted(files.items()):
            with open(os.path.join(out, name), "w", encoding="utf-8") as handle:
                handle.write(schema_text(file))
        click.echo(f"{out}: wrote {len(files)} schema files; a manifest names one on its first line: "
                   f"`# yaml-language-server: $schema=PATH/{ENVELOPE_SCHEMA}`, PATH leading from the YAML file to {out}")
        return
    if kind is None:
        file = ENVELOPE_SCHEMA
    else:
        by_name = {name.lower(): plugin for name, plugin in MANIFESTS.items()}
        plugin = by_name.get(kind.lower())
        if plugin is None:
            raise ReconcileError(f"unknown kind `{kind}`; {closest(kind, MANIFESTS, 'the kinds are')}")
        file = plugin.schema
    click.echo(json.dumps(bundle(file), indent=2))


def _desired_state(directory: str, secrets: SecretPolicy, keep: list[str] | None = None) -> "DesiredState":
    """Valid manifests expanded (and every secret they name readable when `secrets.read`); every problem
    printed and exit 1 before any request otherwise. The warnings printed are also added to `keep`."""
    from .pipeline import InvalidManifests, desired_state

    try:
        state, warnings = desired_state(directory, secrets)
    except InvalidManifests as invalid:
        for diagnostic in invalid.diagnostics:
            click.echo(str(diagnostic), err=True)
        fail(f"{directory}: {invalid}, nothing was sent to any server")
    for warning in warnings:
        click.echo(str(warning), err=True)
    if keep is not None:
        keep.extend(map(str, warnings))
    return state


@main.command(short_help="Show what apply would change on the server; change nothing.")
@click.argument("directory", metavar="DIR", type=MANIFEST_DIR)
@click.option("--out", type=click.Path(dir_okay=False), metavar="PLANFILE",
              help="Also save the plan (JSON, holding no secret) for `reconcile apply PLANFILE`.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="text for people, json for tools (docs/plan-format.md), markdown for a PR.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 0 when there is nothing to change, 2 when there are changes, 1 on error.")
@click.option("--without-secrets", is_flag=True,
              help="Plan even where the application secrets cannot be read (a pull request's pipeline): each is a "
                   "warning, and the password it holds is not compared. apply still needs every one.")
@target_options
@display_options
@safety_options
@secrets_dir_option
@connection_options
@one_line_errors
def plan(directory: str, out: str | None, fmt: str, detailed_exitcode: bool, without_secrets: bool, compact: bool,
         targets: tuple[str, ...], excludes: tuple[str, ...], **options: Any) -> None:
    """Show what apply would change on the server to match the manifests in DIR; change nothing.

    Reads the live state in bulk, compares it with the manifests and prints the changes
    (+ create, ~ update, - delete, -/+ replace) and a summary line. Exit status 1 on errors,
    including a plan a safety rule refuses (a deletion or replacement not allowed, or more
    updates or deletions than the share thresholds allow).
    """
    from .kinds import MANIFESTS, RESOURCES
    from .pipeline import make_plan
    from .plan import targeted
    from .planfile import save
    from .validate import UNCHECKED_SECRET

    connection, policy, secrets = split_options(options)
    # By default a secret plan cannot read fails the plan before any request, as it would fail the apply (a
    # typo in a variable's name is found at review, not at merge). A plan only compares secrets with the
    # server's, so --without-secrets makes each a warning saying what it could not compare (in the plan too,
    # for the reviewer); apply still refuses to start without it.
    warnings: list[str] = []
    if without_secrets:
        secrets = dataclasses.replace(secrets, unreadable="warning")
    state = _desired_state(directory, secrets, warnings)
    with connect(**connection) as session:
        result = _shown_if_refused(lambda: make_plan(session, state, policy, RESOURCES), fmt, compact)
    result.warnings += [warning for warning in warnings if UNCHECKED_SECRET in warning]
    result = dataclasses.replace(result, manifest_root=Roots.of(directory).manifests, secrets_dirs=secrets.dirs)
    if targets or excludes:
        result = targeted(result, targets, RESOURCES, MANIFESTS, excludes)
    if out:
        save(result, out)
    output.show(result, fmt, compact)
    if detailed_exitcode and result.changes:
        sys.exit(2)


def _shown_if_refused(planning: Callable[[], Plan], fmt: str = "text", compact: bool = False) -> Plan:
    """The plan `planning` makes; a refused one is shown whole (stdout) before the refusal (stderr, exit 1)."""
    from .plan import PlanRefused

    try:
        return planning()
    except PlanRefused as refused:
        if refused.plan is not None:
            output.show(refused.plan, fmt, compact)
        raise


@main.command(short_help="Make the server match DIR, or apply a saved PLANFILE.")
@click.argument("target", metavar="DIR|PLANFILE", type=MANIFEST_DIR)
@click.option("--auto-approve", is_flag=True, help="Apply without asking (needed when stdin is not a terminal).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one document on stdout saying what was applied, per change (with DIR, needs "
                   "--auto-approve: the plan is not shown).")
@target_options
@display_options
@safety_options
@secrets_dir_option
@connection_options
@one_line_errors
def apply(target: str, auto_approve: bool, fmt: str, compact: bool, targets: tuple[str, ...], excludes: tuple[str, ...],
          **options: Any) -> None:
    """Change the server to match the manifests in DIR, or apply exactly a plan saved with `plan --out`.

    With DIR: plans (as `reconcile plan` does), shows the plan and asks for confirmation
    (`yes`) unless --auto-approve. With PLANFILE: re-reads every object the plan touches
    and refuses, changing nothing, when one changed since the plan was made; the safety
    options were applied when the plan was made. Secrets are read again from their
    references. A rerun after a failure converges.
    """
    from .apply import check_fresh, check_secrets
    from .kinds import MANIFESTS, RESOURCES
    from .pipeline import make_plan
    from .plan import targeted
    from .planfile import is_plan_file, load

    connection, policy, secrets = split_options(options)
    if is_plan_file(target):
        if targets or excludes:
            raise click.UsageError("--target and --exclude narrow a plan being made; a saved plan is applied whole "
                                   "(make it with `reconcile plan --target ... --out`)")
        saved = load(target)
        unknown = sorted({change.kind for change in saved.changes} - set(RESOURCES))
        if unknown:
            raise ReconcileError(f"{target}: this version of reconcile cannot apply {', '.join(unknown)}; "
                                 "make the plan again with it")
        check_secrets(saved.changes, "nothing was sent to any server")
        with connect(**connection) as session:
            if saved.server != session.base:
                raise ReconcileError(f"{target}: the plan was made for {saved.server}, not {session.base}; "
                                     "make a plan for this server")
            if saved.changes:
                check_fresh(session, saved, RESOURCES)
                output.execute_showing_progress(session, saved, fmt)
            elif fmt == "json":
                output.execute_showing_progress(session, saved, fmt)
            else:
                output.show(saved)
        return
    if fmt == "json" and not auto_approve:
        raise click.UsageError("--format json shows no plan to confirm: add --auto-approve, or apply a plan saved "
                               "with `reconcile plan --out`")
    state = _desired_state(target, secrets)
    if not auto_approve and not output.terminal(sys.stdin):
        raise ReconcileError("apply: stdin is not a terminal, so nobody can confirm; rerun with --auto-approve, "
                             "or apply a plan saved with `reconcile plan --out`")
    with connect(**connection) as session:
        result = _shown_if_refused(lambda: make_plan(session, state, policy, RESOURCES), fmt, compact)
        if targets or excludes:
            result = targeted(result, targets, RESOURCES, MANIFESTS, excludes)
        if fmt == "json":
            output.execute_showing_progress(session, result, fmt)
            return
        output.show(result, compact=compact)
        if not result.changes:
            return
        if not auto_approve:
            answer = click.prompt("\nApply these changes? Only 'yes' will be accepted", default="", show_default=False)
            if answer != "yes":
                raise ReconcileError("apply cancelled; nothing was changed")
        output.execute_showing_progress(session, result)


@main.command(short_help="Write manifests describing a live server, to adopt it.")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@connection_options
@one_line_errors
def export(directory: str, **connection: Any) -> None:
    """Write manifests describing the live server into DIR, so an existing deployment can adopt the tool.

    Databases with their _security, users with their roles and extra fields, a Role for every
    role named, node config that differs from CouchDB's defaults, replications, and design
    documents (their functions and attachments as files under DIR/design/); with couch_peruser
    on, a UserDatabases template for the users' databases, and only the users it does not
    account for. `reconcile plan DIR` then shows no change. No password or hash is written: a
    User without `password` leaves the password unmanaged, and replications reference theirs
    as environment variables DIR/README.md names. The README also says what was left out
    (server admins, what no manifest can express). Existing files are never overwritten.
    """
    from .export import export as export_server

    with connect(**connection) as session:
        result = export_server(session, directory)
    template = result.template
    click.echo(f"{directory}: wrote {len(result.databases)} databases, {len(result.users)} users, "
               f"{len(result.roles)} roles, {len(result.config)} config sections, "
               f"{len(result.documents.replications)} replications, "
               f"{len(result.documents.design_documents) + (len(template.design_documents) if template else 0)} "
               "design documents" + (f" and a UserDatabases template for {len(template.covered)} users" if template
                                      else "") + f"; read {directory}/README.md")


@main.command(short_help="Show the health of the fan-ins and the managed replications.")
@click.argument("directory", metavar="DIR", type=MANIFEST_DIR)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text for people, json for tools.")
@click.option("--all", "every", is_flag=True, help="List every replication, not only those that need attention.")
@click.option("--stale-threshold", type=click.FloatRange(min=0), default=300.0, show_default=True,
              metavar="SECONDS", help="A fan-in whose oldest undelivered change is older than this needs attention.")
@click.option("--pending-threshold", type=click.FloatRange(min=0), default=300.0, show_default=True,
              metavar="SECONDS", help="A replication pending longer than this needs attention.")
@secrets_dir_option
@connection_options
@one_line_errors
def status(directory: str, fmt: str, every: bool, stale_threshold: float, pending_threshold: float,
           secrets_dirs: tuple[str, ...], **connection: Any) -> None:
    """Show, for each fan-in of a UserDatabases template, how many of its users have their replication, the
    replications' states and the oldest change not delivered yet (a time); then what needs attention, and the
    replications that are not healthy (--all: every replication the manifests in DIR declare or this tool
    wrote), as CouchDB's replication scheduler reports them. Reads in bulk; changes nothing.

    Exit status: 0 when all is well; 2 when a user has no replication, a fan-in's oldest undelivered change is
    older than --stale-threshold, or a replication is crashing, failed, missing, or pending longer than
    --pending-threshold; 1 on errors.
    """
    from .status import health, render_json, render_text

    state = _desired_state(directory, SecretPolicy(dirs=secrets_dirs))  # reads, writes nothing: no secret read
    with connect(**connection) as session:
        result = health(session, state, pending_threshold, stale_threshold)
    click.echo(render_json(result) if fmt == "json" else render_text(result, every), nl=False)
    if not result.healthy:
        sys.exit(2)


@main.command(short_help="Keep the server converged, sign-ups within seconds.")
@click.argument("directory", metavar="DIR", type=MANIFEST_DIR)
@click.option("--interval", type=click.FloatRange(min=0.1), default=300.0, show_default=True, metavar="SECONDS",
              help="Seconds between full reconciles (one at start).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="One line per action: text, or a JSON object (ts, level, action, kind, key, outcome).")
@click.option("--debounce", type=click.FloatRange(min=0), default=0.2, show_default=True, metavar="SECONDS",
              help="Quiet after the latest event of a burst before watch acts on it.")
@click.option("--debounce-max", type=click.FloatRange(min=0), default=0.5, show_default=True, metavar="SECONDS",
              help="Longest a burst may postpone acting, from its first event.")
@click.option("--max-triggered", type=click.IntRange(min=1), default=20, show_default=True,
              help="One-shot replications (fanIn: triggered) running at once.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve Prometheus metrics on http://ADDRESS:PORT/metrics.")
@click.option("--metrics-address", default="127.0.0.1", show_default=True, metavar="ADDRESS",
              help="The address --metrics-port listens on (0.0.0.0: every interface).")
@safety_options
@secrets_dir_option
@connection_options
@one_line_errors
def watch(directory: str, interval: float, log_format: str, debounce: float, debounce_max: float,
          max_triggered: int, metrics_port: int | None, metrics_address: str, **options: Any) -> None:
    """Keep the server matching the manifests in DIR: a full reconcile (as `apply --auto-approve`) at start
    and every --interval, and in between, from `_users/_changes` and `/_db_updates`, a reconcile of just
    the users and databases that changed, so a sign-up gets her database within seconds (docs/watch.md).

    DIR is read again at every full reconcile, so a deployment that updates it (git pull) is followed, not
    fought. While it is invalid, watch logs why and changes nothing until a full reconcile finds it valid.

    Feed positions are saved on the server (`_users/_local/couch-reconciler-watch`). SIGTERM or Ctrl-C
    finishes the current action, saves them and exits 0. Nothing is deleted without --allow-delete.
    """
    import threading

    from .watch import ActionLog, Metrics, Settings, run, stop_on_signals

    connection, policy, secrets = split_options(options)
    _desired_state(directory, secrets)  # invalid at start: exit 1 before any request, as plan and apply do
    stopping = threading.Event()
    stop_on_signals(stopping)
    settings = Settings(interval=interval, debounce=debounce, debounce_max=debounce_max, max_triggered=max_triggered)
    log, metrics = ActionLog(log_format), Metrics()
    if metrics_port is not None:
        try:
            server = metrics.serve(metrics_port, metrics_address)
        except OSError as error:
            fail(f"--metrics-port {metrics_port}: cannot listen on {metrics_address} ({error.strerror})")
        log("start", "metrics", "", f"serving http://{metrics_address}:{server.server_port}/metrics")
    with connect(**connection) as session:
        code = run(session, directory, policy, settings, log, stopping, secrets, metrics)
    sys.exit(code)
