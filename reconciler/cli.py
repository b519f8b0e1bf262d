"""The `reconcile` command line."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconcile")
def main() -> None:
    """CouchDB 3.x as code: validate, plan and apply YAML manifests against a live server."""
