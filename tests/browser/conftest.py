"""Headless Chromium (Debian's package, /usr/bin/chromium) driven by Playwright for Python, and a TCP relay
a test can cut to make the server unreachable. Playwright's own browser builds are never used or fetched."""

from __future__ import annotations

import os
import socket
import threading
from typing import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Playwright, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# No background traffic (updates, sync, field trials): the machine may reach nothing but loopback.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)"
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser(playwright: Playwright, tmp_path) -> Iterator[BrowserContext]:
    """A browser with a fresh profile (cookies, storage, service workers) for each test."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
        viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(15000)
    yield context
    context.close()


class Relay:
    """127.0.0.1:<port> forwards to the server until `cut()`; then connections to it are refused, as to a
    server that is down (the server itself, perhaps a real CouchDB other tests share, keeps running)."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def cut(self) -> None:
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


@pytest.fixture
def relay(module_couch) -> Iterator[Relay]:
    """A relay to the module's server: its URL is `http://127.0.0.1:{relay.port}`."""
    url = urlsplit(module_couch.url)
    forwarder = Relay(url.hostname, url.port or 80)
    yield forwarder
    forwarder.cut()
