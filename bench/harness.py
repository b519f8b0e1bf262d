"""What every benchmark here shares: couchsim in its own process, the manifests turned into desired state,
and the floor each figure is printed beside (the same number of bare requests through the same pool).

A benchmark runs couchsim as a subprocess, not in-process, so the server's CPU is not the client's.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler.client import Connection, CouchSession  # noqa: E402
from reconciler.expand import expand  # noqa: E402
from reconciler.pipeline import load_and_validate  # noqa: E402

ADMIN = ("admin", "bench-admin-pw")


@dataclass(frozen=True)
class Couchsim:
    url: str
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def couchsim(*config: str, admin: tuple[str, str] = ADMIN) -> Iterator[Couchsim]:
    """`python -m couchsim` on a free port, each `config` item a `section/key=value`; stopped on exit."""
    port = free_port()
    settings = [arg for item in config for arg in ("--config", item)]
    process = subprocess.Popen([sys.executable, "-m", "couchsim", "--port", str(port),
                                "--admin", f"{admin[0]}:{admin[1]}", *settings], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = process.stdout.readline()
    if "listening" not in line:
        process.kill()
        raise SystemExit(f"couchsim did not start: {line.strip()}")
    # Keep reading what it logs (replication jobs log their crashes): a full pipe would block its event loop.
    threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
    try:
        yield Couchsim(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # thousands of running replication jobs can outlast SIGTERM
            process.kill()
            process.wait()


def desired_state(folder: Path | str):
    """The folder's manifests as `plan` sees them; a benchmark with invalid manifests stops at once."""
    manifests, diagnostics = load_and_validate(str(folder))
    errors = [d for d in diagnostics if d.is_error]
    if errors:
        raise SystemExit(f"bench manifests invalid: {errors[0]}")
    return expand(manifests)


def floor(session: CouchSession, requests: int) -> float:
    """Seconds for `requests` bare `GET /` through `session`'s pool: what the figure beside it cannot beat."""
    began = time.perf_counter()
    list(session.map(lambda _: session.request("GET", "/"), range(requests)))
    return time.perf_counter() - began


def print_beside_floor(connection: Connection, label: str, sent: int, wall: float, detail: str = "") -> None:
    """One row: `label: detail, N requests, wall; floor`, the floor measured now through a fresh pool."""
    with CouchSession(connection) as session:
        bare = floor(session, sent) if sent else 0.0
    print(f"  {label:12s}: {detail}{sent} requests, wall {wall:.2f} s; "
          f"floor ({sent} bare GETs, same pool) {bare:.2f} s", flush=True)


def print_header(name: str, pool: int, detail: str = "") -> None:
    print(f"{name}: couchsim subprocess{detail}, pool {pool}, {os.cpu_count()} CPUs shared by client and server")


SIGNUP_BATCH = 500  # users per `_users/_bulk_docs`, as an app back end importing a burst would send


def sign_up(session: CouchSession, names: list[str], password: str | None = "pw") -> None:
    """Create `names` directly in `_users` (no manifest knows them), batches spread over the pool."""
    batches = [names[start:start + SIGNUP_BATCH] for start in range(0, len(names), SIGNUP_BATCH)]
    secret = {} if password is None else {"password": password}
    list(session.map(lambda batch: session.post("_users/_bulk_docs", {"docs": [
        {"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": [], **secret}
        for name in batch]}), batches))


def user_template(url: str, fan_in: str = "continuous"):
    """The reference layout's per-user part as desired state: every user gets `userdb-<hex>` with her name in
    merge-mode security, the `app-user` role and a `fan_in` replication to `analytics` (which the
    `_global_changes` database lets `reconcile watch` follow through `/_db_updates`)."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "reference.yaml").write_text(f"""\
apiVersion: reconciler/v1
kind: UserDatabases
metadata: {{name: per-user}}
spec:
  grantRoles: [app-user]
  security: {{admins: {{roles: [_admin]}}}}
  replicateTo:
    - target: analytics
      fanIn: {fan_in}
      replicationBaseUrl: {url}
      auth: {{username: {ADMIN[0]}, password: env:BENCH_ADMIN_PASSWORD}}
---
apiVersion: reconciler/v1
kind: Role
metadata: {{name: app-user}}
spec: {{}}
---
apiVersion: reconciler/v1
kind: Database
metadata: {{name: analytics}}
spec: {{}}
---
apiVersion: reconciler/v1
kind: Database
metadata: {{name: _global_changes}}
spec: {{}}
""")
        return desired_state(folder)
