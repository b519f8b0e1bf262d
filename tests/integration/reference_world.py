"""The reference architecture (manifests/) deployed as `make demo` deploys it, and users signed up as the
app's back end signs them up: for the tests that use the whole system (integration, browser, PouchDB).

The manifests are applied unchanged, with the demo's secrets (manifests/demo.env) and
$COUCHDB_REPLICATION_URL naming the URL this server reaches itself at, as the demo sets it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import requests

from reconcile_runner import Run, reconcile
from replication_setup import base_url
from waiting import wait_for
from couch_reconciler.kinds.user_databases import user_database
from couch_reconciler.watch import CHECKPOINT_DB, CHECKPOINT_ID

MANIFESTS = Path(__file__).parents[2] / "manifests"
PERUSER_START_PERIOD = 5.0  # seconds: [couch_peruser] cluster_start_period
WATCH_START = 120.0  # seconds for watch's first full reconcile (the reference layout on a loaded machine)


def demo_env() -> dict[str, str]:
    lines = (MANIFESTS / "demo.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def environment(couch) -> dict[str, str]:
    """The demo's secrets and the URL this server reaches itself at, as the demo sets them."""
    return {**demo_env(), "COUCHDB_REPLICATION_URL": base_url(couch)}


def reconcile_manifests(couch, *args: str) -> Run:
    """`reconcile ARGS manifests/` with the demo's environment."""
    return reconcile(couch, *args, str(MANIFESTS), env=environment(couch))


@contextmanager
def watching_manifests(couch) -> Iterator[None]:
    """`reconcile watch manifests/` running beside the server as a deployment runs it (its own process, the
    demo's environment), from its first full reconcile until SIGTERM. The manifests' fan-in is
    `fanIn: triggered`: documents reach analytics only while watch runs."""
    env = {**os.environ, **environment(couch), "COUCHDB_URL": couch.url, "COUCHDB_USER": couch.user,
           "COUCHDB_PASSWORD": couch.password}
    command = [str(Path(sys.executable).with_name("reconcile")), "watch", "--interval", "60", "--debounce", "0.2",
               str(MANIFESTS)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:  # a reader thread: a silent process cannot hang the test, and the pipe never fills
        for line in process.stdout or ():
            lines.append(line)
            if " full: " in line and " applied in " in line:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert started.wait(WATCH_START), f"watch's first full reconcile within {WATCH_START:g}s:\n" + "".join(lines)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0, "".join(lines[-20:])
        finally:
            if process.poll() is None:
                process.kill()
        http = couch.session()
        checkpoint = f"{couch.url}/{CHECKPOINT_DB}/{CHECKPOINT_ID}"  # the next watch must not resume from it
        current = http.get(checkpoint)
        if current.status_code == 200:
            http.delete(checkpoint, params={"rev": current.json()["_rev"]})


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
    # couch_peruser handles no sign-up for cluster_start_period (5 s, couch_peruser.erl) after its config
    # changed (the apply just enabled it), then within about a second; the rest is margin for a loaded machine.
    wait_for(lambda: admin.get(f"{url}/{database}").status_code == 200,
             f"couch_peruser to create the database of {name} (it waits {PERUSER_START_PERIOD:g} s after a "
             "config change; is [couch_peruser] crash-looping on an old _users tombstone? see its log)",
             PERUSER_START_PERIOD + 25.0, 0.1)
