"""The options the `reconcile` commands share: where the manifests are, which server and how to reach it,
what a plan may delete, where `file:` secrets may live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

import click

from .client import DEFAULT_POOL, CouchSession, connection
from .secrets import SecretPolicy

if TYPE_CHECKING:
    from .plan import Policy

F = TypeVar("F", bound=Callable[..., Any])

MANIFEST_DIR = click.Path(exists=False, file_okay=True, dir_okay=True)


def secrets_dir_option(command: F) -> F:
    # Resolved here, as the manifest folder is: `file:` secrets are compared with them once resolved themselves.
    return click.option("--secrets-dir", "secrets_dirs", multiple=True, metavar="DIR",
                        type=click.Path(exists=True, file_okay=False, resolve_path=True),
                        help="A folder outside the manifest folder that `file:` secrets may name, e.g. where the "
                             "deployment mounts them (repeatable). Without it, `file:` must stay inside the "
                             "manifest folder.")(command)


def connection_options(command: F) -> F:
    """--server/--user/--password-file/--cacert/--pool/--timeout, each with its environment variable."""
    options = [
        click.option("--server", envvar="COUCHDB_URL", metavar="URL",
                     help="CouchDB URL, e.g. https://couch.example.com:6984 (default: $COUCHDB_URL)."),
        click.option("--user", envvar="COUCHDB_USER", help="Server admin name (default: $COUCHDB_USER)."),
        click.option("--password-file", type=click.Path(dir_okay=False), metavar="FILE",
                     help="File holding the password (default: $COUCHDB_PASSWORD)."),
        click.option("--cacert", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
                     help="CA bundle to verify the server's TLS certificate (verification is always on)."),
        click.option("--pool", type=click.IntRange(1, 256), default=DEFAULT_POOL, show_default=True,
                     help="Keep-alive connections (and threads) used at most at once."),
        click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
                     help="Seconds to wait for each answer."),
    ]
    return _stacked(options, command)


def connect(server: str | None, user: str | None, password_file: str | None, cacert: str | None,
            pool: int, timeout: float) -> CouchSession:
    return CouchSession(connection(server, user, password_file, cacert, pool, timeout))


def safety_options(command: F) -> F:
    options = [
        click.option("--allow-delete", is_flag=True,
                     help="Also delete managed objects (created by this tool) that no manifest lists."),
        click.option("--allow-delete-data", is_flag=True,
                     help="Allow deleting or replacing databases that hold documents (with --allow-delete)."),
        click.option("--force", is_flag=True, help="Skip the --max-update-share/--max-delete-share checks."),
        click.option("--max-update-share", type=click.FloatRange(0, 1), default=0.3, show_default=True,
                     help="Refuse a plan updating more than this share of a kind's existing objects."),
        click.option("--max-delete-share", type=click.FloatRange(0, 1), default=0.3, show_default=True,
                     help="Refuse a plan deleting more than this share of a kind's existing objects."),
        click.option("--min-existing", type=click.IntRange(0), default=10, show_default=True,
                     help="Kinds with fewer existing objects than this are never refused by the shares."),
    ]
    return _stacked(options, command)


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], "Policy", SecretPolicy]:
    """The connection options, the safety policy and the secret policy, out of a command's keyword options."""
    from .plan import Policy  # the plan stage loads every kind: only the commands that plan need it

    connection = {name: options.pop(name) for name in ("server", "user", "password_file", "cacert", "pool", "timeout")}
    secrets = SecretPolicy(dirs=options.pop("secrets_dirs"), read=True)
    return connection, Policy(**options), secrets


def _stacked(options: Sequence[Callable[[F], F]], command: F) -> F:
    """`command` with the options, shown in --help in the order listed."""
    for option in reversed(options):
        command = option(command)
    return command


def display_options(command: F) -> F:
    """--compact and --no-color, for the commands that show a plan."""

    def no_color(ctx: click.Context, _: click.Parameter, value: bool) -> None:
        if value:
            ctx.meta["no_color"] = True

    options = [
        click.option("--compact", is_flag=True,
                     help="Show the counts per kind and only the first few changes of each kind."),
        click.option("--no-color", is_flag=True, expose_value=False, callback=no_color,
                     help="Plain text even on a terminal: no colour, no bold."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def target_options(command: F) -> F:
    """--target and --exclude: a plan narrowed to some objects, for exceptional cases (README, "Targeting")."""
    options = [
        click.option("--target", "targets", multiple=True, metavar="KIND[/NAME]",
                     help="Only the changes to this object (repeatable): a kind (`user`), an object as the plan "
                          "names it (`security/orders`, `user/alice*`), or a manifest (`UserDatabases/per-user`: "
                          "what it wants), with its parents' changes. For exceptional cases only: the plan is "
                          "partial (README, \"Targeting\")."),
        click.option("--exclude", "excludes", multiple=True, metavar="KIND[/NAME]",
                     help="Leave out the changes to this object (repeatable), named as for --target; a manifest "
                          "(`UserDatabases/per-user`) leaves out what only it wants, e.g. pending sign-ups. The "
                          "plan is partial (README, \"Targeting\")."),
    ]
    return _stacked(options, command)
