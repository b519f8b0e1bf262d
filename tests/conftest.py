"""The `couch` server every HTTP-level test talks to, and `unique` names.

Without COUCHDB_URL each test (`couch`), or each module (`module_couch`), gets a fresh couchsim (iterations
lowered to 1000 so that creating users is cheap). With COUCHDB_URL (plus COUCHDB_USER / COUCHDB_PASSWORD) the same tests run against that real CouchDB:
they must then use `unique(...)` names, which are deleted (databases, users, their peruser databases)
when the test ends. `@pytest.mark.real_only(reason)` cases only run against a real server.
"""

from __future__ import annotations

import secrets
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import pytest
import requests

from cleanup import left_as_found
from real_servers import real_admin, real_cluster, real_server
from couch_reconciler.couchsim.testing import SimServer

TEST_CONFIG = {"chttpd_auth": {"iterations": "1000"}}


@dataclass
class Couch:
    url: str
    admin: tuple[str, str]
    sim: SimServer | None = None
    sessions: list[requests.Session] = field(default_factory=list)

    @property
    def real(self) -> bool:
        return self.sim is None

    @property
    def user(self) -> str:
        return self.admin[0]

    @property
    def password(self) -> str:
        return self.admin[1]

    def session(self) -> requests.Session:
        """A new keep-alive session authenticated (basic) as the server admin; closed after the test."""
        http = requests.Session()
        http.auth = self.admin
        self.sessions.append(http)
        return http


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("real_only")
    if marker is not None and real_server() is None:
        reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "needs a real CouchDB")
        pytest.skip(f"real CouchDB only (set COUCHDB_URL): {reason}")


@contextmanager
def serve() -> Iterator[Couch]:
    real = real_server()
    if real is not None:
        server = Couch(real[0], real[1])
        yield server
    else:
        with SimServer(admin=("admin", "adminpw"), config=TEST_CONFIG) as sim:
            server = Couch(sim.url, sim.admin, sim)
            yield server
    for http in server.sessions:
        http.close()


@pytest.fixture
def couch() -> Iterator[Couch]:
    with serve() as server:
        yield server


@pytest.fixture(scope="module")
def module_couch() -> Iterator[Couch]:
    """One server for a whole module whose tests share what they set up (a deployed architecture, say)."""
    with serve() as server:
        yield server


@pytest.fixture
def unique() -> Callable[[str], str]:
    """unique("db") -> "t-db-<random>": a name valid for a database or a user, never used before."""
    return lambda prefix="x": f"t-{prefix}-{secrets.token_hex(5)}"


@pytest.fixture(autouse=True)
def real_server_left_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """On a real server, a test leaves it as it found it: whatever the test added there (users, databases,
    `_replicator` documents, config, server admins) goes afterwards (cleanup.left_as_found), so the suite runs
    in any order, and twice in a row, against the same server. Autouse fixtures come first in their scope, so
    this one ends last, after the test's own fixtures. A module that shares one deployment among its tests
    (`module_couch`) leaves the server as found at its end instead."""
    urls = []
    real = real_server()
    if real is not None and "couch" in request.fixturenames:
        urls.append(real[0])
    cluster = real_cluster()
    if cluster is not None and "cluster" in request.fixturenames and cluster[0][0] not in urls:
        urls.append(cluster[0][0])
    with ExitStack() as stack:
        for url in urls:
            stack.enter_context(left_as_found(url, real_admin()))
        yield


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator["Tripwire"]:
    """A server that records every request it gets (and answers 500); COUCHDB_* point at it. Tests of input
    that must be refused assert `received` (or at least `writes`) stays empty."""
    received: list[str] = []

    class Record(BaseHTTPRequestHandler):
        def _record(self) -> None:
            received.append(f"{self.command} {self.path}")
            self.send_response(500)
            self.end_headers()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_COPY = _record

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Record)
    # shutdown() waits for the loop to poll (every 0.5 s by default): the corpora start one server per test
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("COUCHDB_URL", url)
    monkeypatch.setenv("COUCHDB_USER", "admin")
    monkeypatch.setenv("COUCHDB_PASSWORD", "tripwire-password")
    # Where the server reaches itself is then the documented default, http://127.0.0.1:5984, as the corpora's
    # manifests name it, whatever server the suite was pointed at.
    monkeypatch.delenv("COUCHDB_REPLICATION_URL", raising=False)
    yield Tripwire(url, received)
    server.shutdown()
    server.server_close()


@dataclass
class Tripwire:
    url: str
    received: list[str]

    @property
    def writes(self) -> list[str]:
        """The requests that could have changed something (anything but GET and HEAD)."""
        return [line for line in self.received if not line.startswith(("GET ", "HEAD "))]
