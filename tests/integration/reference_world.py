"""The reference architecture (manifests/) deployed as `make demo` deploys it, and users signed up as the
app's back end signs them up: for the tests that use the whole system (integration, browser, PouchDB).

The manifests are applied unchanged, with the demo's secrets (manifests/demo.env) and
$COUCHDB_REPLICATION_URL naming the URL this server reaches itself at, as the demo sets it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import requests

from reconcile_runner import Run, reconcile
from replication_setup import base_url
from waiting import wait_for
from reconciler.kinds.user_databases import user_database

MANIFESTS = Path(__file__).parents[2] / "manifests"


def demo_env() -> dict[str, str]:
    lines = (MANIFESTS / "demo.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def reconcile_manifests(couch, *args: str) -> Run:
    """`reconcile ARGS manifests/` with the demo's environment."""
    return reconcile(couch, *args, str(MANIFESTS), env={**demo_env(), "COUCHDB_REPLICATION_URL": base_url(couch)})


def apply_manifests(couch) -> Run:
    applied = reconcile_manifests(couch, "apply", "--auto-approve")
    assert applied.code == 0, applied.stdout + applied.stderr
    return applied


def user_doc_path(name: str) -> str:
    return "_users/" + quote("org.couchdb.user:" + name, safe=":")


def sign_up(admin: requests.Session, url: str, name: str, password: str, signed_up_at: str | None = None) -> None:
    """What the app's back end does: a user document with no role (and the `signed_up_at` the analytics panel
    counts sign-ups by), then couch_peruser (enabled by the manifests) creates her database."""
    doc = {"name": name, "type": "user", "roles": [], "password": password}
    if signed_up_at is not None:
        doc["signed_up_at"] = signed_up_at
    created = admin.put(f"{url}/{user_doc_path(name)}", json=doc)
    assert created.status_code == 201, created.text
    database = quote(user_database("userdb-", name), safe="")
    wait_for(lambda: admin.get(f"{url}/{database}").status_code == 200,
             f"couch_peruser to create the database of {name}")
