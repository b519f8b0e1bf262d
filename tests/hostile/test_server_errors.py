"""What a server does wrong, as one line that names what happened: a web server that is not CouchDB (its page
never printed), a server that accepts and never answers, an answer that breaks off, a connection dropped after
a write was sent."""

from __future__ import annotations

import functools
import http.server
import queue
import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from couch_reconciler.cli import main
from couch_reconciler.client import Connection, CouchSession
from couch_reconciler.watch.feeds import Feed
from waiting import wait_for

DATABASE = "apiVersion: reconciler/v1\nkind: Database\nmetadata:\n  name: canary-db\nspec: {}\n"


def run(url: str, *args: str) -> "CliRunner.invoke":
    env = {"COUCHDB_URL": url, "COUCHDB_USER": "admin", "COUCHDB_PASSWORD": "adminpw"}
    return CliRunner(env=env).invoke(main, list(args))


@pytest.fixture
def manifests(tmp_path: Path) -> str:
    (tmp_path / "db.yaml").write_text(DATABASE, encoding="utf-8")
    return str(tmp_path)


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[str]:
    """`python3 -m http.server` serving a folder: HTML error pages, no JSON."""
    (tmp_path / "site").mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections, reads nothing, answers nothing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=hold, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    for connection in held:
        connection.close()
    listener.close()


# What a real 3-node CouchDB 3.4.3 sent on a `_db_updates` longpoll: a chunked 200, then a whole 404 response where
# its next chunk belonged.
BROKEN_OFF = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
              b"HTTP/1.1 404 Object Not Found\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
def broken_off_server() -> Iterator[str]:
    """Answers every request with BROKEN_OFF, then closes the connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def answer() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                connection = listener.accept()[0]
            except OSError:
                continue
            with connection:
                connection.recv(65536)
                connection.sendall(BROKEN_OFF)

    threading.Thread(target=answer, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def test_an_answer_that_breaks_off_is_one_line(manifests, broken_off_server):
    result = run(broken_off_server, "plan", manifests)

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"reading _dbs_info: the answer broke off before its end from {broken_off_server}; the server is "
        "overloaded, or is not CouchDB: rerun when it answers"]


def test_a_feed_whose_answer_breaks_off_reconnects(broken_off_server):
    """Watch's feed thread stays alive and says so, as after a lost connection."""
    said: list[str] = []
    stopping = threading.Event()
    with CouchSession(Connection(broken_off_server, "admin", "adminpw")) as session:
        feed = Feed(session, "_db_updates", "now", queue.Queue(), stopping,
                    lambda action, kind="", key="", outcome="ok", level="info": said.append(outcome))
        feed.start()
        try:
            wait_for(lambda: len(said) >= 2, "two reconnect attempts")
            assert feed.alive()
        finally:
            stopping.set()
    assert said[0].startswith("disconnected (following _db_updates: the answer broke off before its end from ")


def test_a_web_server_that_is_not_couchdb_is_one_line_without_its_page(manifests, web_server):
    result = run(web_server, "plan", manifests)

    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("reading _dbs_info: the answer (HTTP 501, text/html, Server: SimpleHTTP/")
    assert line.endswith(") is not CouchDB's JSON; check that --server (COUCHDB_URL) points at CouchDB itself, "
                         "not a web page or a proxy")
    assert "<" not in line


def test_a_server_that_never_answers_is_named_as_such(manifests, silent_server):
    result = run(silent_server, "plan", "--timeout", "0.3", manifests)

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"reading _dbs_info: no answer within 0.3s from {silent_server}; the server is overloaded, or is not "
        "CouchDB: rerun when it answers"]


def test_a_write_whose_connection_drops_may_or_may_not_have_happened(manifests, couch):
    if couch.real:
        pytest.skip("drops connections with couchsim's fault injector")
    couch.sim.faults.inject(path="^/canary-db", method="PUT", drop=True)

    result = run(couch.url, "apply", "--auto-approve", manifests)

    assert result.exit_code == 1
    assert (f"database/canary-db: the connection was closed before an answer came from {couch.url} after the "
            "request was sent: the write may or may not have happened; run plan again to see what is left"
            ) in result.stderr.splitlines()
