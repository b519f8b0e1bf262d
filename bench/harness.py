"""What every benchmark here shares: couchsim in its own process (or any server given with --url), the
manifests turned into desired state, and the floor each figure is printed beside (the same number of bare
requests through the same pool), with the client's and the server's CPU time.

A benchmark runs couchsim as a subprocess, not in-process, so the server's CPU is not the client's.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from couch_reconciler.client import Connection, CouchSession, connection  # noqa: E402
from couch_reconciler import pipeline  # noqa: E402
from couch_reconciler.secrets import SecretPolicy  # noqa: E402

ADMIN = ("admin", "bench-admin-pw")


@dataclass(frozen=True)
class Couchsim:
    url: str
    process: subprocess.Popen


COUCHSIM_MODELS = ("couchsim models what opening a database that is not open costs (max_dbs_open, LRU) and what "
                   "creating one costs (its shard files, 4.5 ms a shard two at a time, calibrated on a real 3.4.3; "
                   "couch_reconciler/couchsim/README.md); not other disk work, CPU per request or network: ratios "
                   "on couchsim rank designs, absolute times need a real server (--url)")


@dataclass(frozen=True)
class Server:
    """The server a benchmark measures: the couchsim it started, or one named by --url."""

    connection: Connection
    pid: int | None  # a process on this machine whose CPU time /proc tells; None: unknown
    name: str  # "couchsim subprocess" or the URL without credentials
    models: str = ""  # what a simulated server models of a real one's costs, and what not


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="measure this CouchDB instead of a couchsim the benchmark starts; "
                                      "credentials as `reconcile` takes them: $COUCHDB_USER, $COUCHDB_PASSWORD "
                                      "or user:password@ in the URL")
    parser.add_argument("--cacert", help="CA bundle for an https --url")
    parser.add_argument("--server-pid", type=int,
                        help="the --url server's process on this machine (e.g. CouchDB's beam.smp), for its CPU time")
    parser.add_argument("--pool", type=int, default=16)


@contextlib.contextmanager
def bench_server(args: argparse.Namespace, *config: str) -> Iterator[Server]:
    """A fresh couchsim (with `config`), or the server --url names, as `reconcile` would connect to it."""
    if args.url is None:
        with couchsim(*config) as sim:
            yield Server(Connection(sim.url, *ADMIN, pool=args.pool), sim.process.pid, "couchsim subprocess",
                         COUCHSIM_MODELS)
        return
    named = connection(args.url, os.environ.get("COUCHDB_USER"), None, args.cacert, args.pool, 60.0)
    yield Server(named, args.server_pid, named.url)


def process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of a process on this machine (/proc/PID/stat), None when unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (proc(5) 14, 15)


@dataclass
class Measured:
    wall: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float | None = None
    requests: int = 0
    changes: int = 0
    load: tuple[float, float] = (0.0, 0.0)  # the machine's 1- and 5-minute load averages when it ended
    walls: tuple[float, ...] = ()  # every run's wall time, when it was measured more than once (`quickest`)
    settled: float | None = None  # seconds waited for the server to be quiet first (`settle`); None: unknown

    def cpu(self) -> str:
        server = "unknown" if self.server_cpu is None else f"{self.server_cpu:.2f} s"
        return f"client CPU {self.client_cpu:.2f} s, server CPU {server}"

    def conditions(self) -> str:
        """Under what the wall time was measured: the runs it is the best of, and the machine's load."""
        runs = f"best of {', '.join(f'{wall:.2f}' for wall in self.walls)} s; " if len(self.walls) > 1 else ""
        quiet = "server quiet: unknown" if self.settled is None else f"server quiet after {self.settled:.0f} s"
        return f"{runs}load {self.load[0]:.1f}/{self.load[1]:.1f}; {quiet}"


# A server is quiet once a whole interval passes with its CPU under this share of one core.
QUIET_SHARE = 0.1
QUIET_INTERVAL = 1.0
QUIET_WAIT_AT_MOST = 180.0


def settle(server: Server) -> float | None:
    """Wait until the server's process is quiet; the seconds waited (None: its CPU is unknown, not awaited).

    A real CouchDB goes on working after the requests that asked for it are answered: deleting a database
    renames its shard files and unlinks them in a process of their own (src/couch/src/couch_file.erl, delete/3), and thousands of
    creations and deletions bring the compaction daemon to `_dbs` (smoosh, src/docs/src/config/compaction.rst
    in apache/couchdb). Measured straight after a benchmark deletes the databases of the figure before it,
    a figure would pay for that work, and the two compared would not start alike."""
    began = time.perf_counter()
    before = process_cpu(server.pid)
    while before is not None and time.perf_counter() - began < QUIET_WAIT_AT_MOST:
        time.sleep(QUIET_INTERVAL)
        now = process_cpu(server.pid)
        if now is None or now - before < QUIET_SHARE * QUIET_INTERVAL:
            break
        before = now
    return None if before is None else time.perf_counter() - began


@contextlib.contextmanager
def measured(server: Server) -> Iterator[Measured]:
    """Wall time, this process's CPU time and the server's over the block. It starts on a quiet server, with
    the garbage of what ran before collected, as a command starts in a fresh process: a figure never pays for
    another's."""
    result = Measured(settled=settle(server))
    gc.collect()
    server_began, cpu_began, began = process_cpu(server.pid), time.process_time(), time.perf_counter()
    yield result
    result.wall = time.perf_counter() - began
    result.client_cpu = time.process_time() - cpu_began
    one, five, _ = os.getloadavg()
    result.load = (one, five)
    server_ended = process_cpu(server.pid)
    if server_began is not None and server_ended is not None:
        result.server_cpu = server_ended - server_began


def print_ratio(label: str, tool: Measured, floors: dict[str, Measured], detail: str = "") -> None:
    """The tool's figures on one line, then each floor's with the ratio of the tool's wall time to it."""
    print(f"  {label}: {tool.wall:.2f} s ({tool.conditions()}), {tool.requests} requests{detail}; {tool.cpu()}",
          flush=True)
    for name, floor in floors.items():
        print(f"    floor {name}: {floor.wall:.2f} s ({floor.conditions()}), {floor.requests} requests; {floor.cpu()}"
              f"  -> ratio {tool.wall / floor.wall:.2f}x", flush=True)


def quickest(runs: int, measures: dict[str, Callable[[], Measured]]) -> dict[str, Measured]:
    """Each measurement `runs` times, in turns (so a burst of other work on the machine hits all of them
    alike), and the quickest of each: the least disturbed one.

    The turns alternate their order, the last one in the order given (so what goes last there can leave its
    work on the server for what follows): a server can slow as it works. A fresh real CouchDB 3.4.3 node here
    took 62-76 ms per `PUT /db` on average in its first round of 2,000 creations (deleted after each round),
    85-96 ms from the third round on. In one order every turn, what goes first would meet the quicker server."""
    best: dict[str, Measured] = {}
    walls: dict[str, list[float]] = {name: [] for name in measures}
    for turn in range(runs):
        order = list(measures.items())
        if (runs - 1 - turn) % 2:
            order.reverse()
        for name, measure in order:
            result = measure()
            walls[name].append(result.wall)
            if name not in best or result.wall < best[name].wall:
                best[name] = result
    for name, result in best.items():
        result.walls = tuple(walls[name])
    return best


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def couchsim(*config: str, admin: tuple[str, str] = ADMIN, modelled_costs: bool = True) -> Iterator[Couchsim]:
    """`python -m couch_reconciler.couchsim` on a free port, each `config` item a `section/key=value`; stopped on exit.
    Without `modelled_costs`, opening and creating databases cost it nothing: what couchsim itself can do."""
    port = free_port()
    settings = [arg for item in config for arg in ("--config", item)]
    if not modelled_costs:
        settings += ["--shard-open-ms", "0", "--shard-create-ms", "0"]
    process = subprocess.Popen([sys.executable, "-m", "couch_reconciler.couchsim", "--port", str(port),
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
    try:
        return pipeline.desired_state(str(folder), SecretPolicy())[0]
    except pipeline.InvalidManifests as invalid:
        first = next((diagnostic for diagnostic in invalid.diagnostics if diagnostic.is_error), invalid)
        raise SystemExit(f"bench manifests invalid: {first}") from None


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


def user_template(url: str, fan_in: str = "continuous", owner_field: str | None = None):
    """The reference layout's per-user part as desired state: every user gets `userdb-<hex>` with her name in
    merge-mode security, the `app-user` role and a `fan_in` replication to `analytics` (which the
    `_global_changes` database lets `reconcile watch` follow through `/_db_updates`). With `owner_field`, as
    manifests/user-databases.yaml ships it, only her documents (`_id` "NAME:...", that field NAME) leave."""
    provenance = "" if owner_field is None else f"\n      ownerField: {owner_field}"
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
      auth: {{username: {ADMIN[0]}, password: env:BENCH_ADMIN_PASSWORD}}{provenance}
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
