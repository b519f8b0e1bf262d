"""Run `reconcile` in-process as a user would, recording every HTTP request it sends."""

from __future__ import annotations

import hashlib
import json
import textwrap
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping
from unittest import mock

import requests
from click.testing import CliRunner

from cleanup import remove_config
from couch_reconciler.couchsim.testing import SimServer
from couch_reconciler.cli import main

# Creating users and admins costs 600k PBKDF2 rounds each on CouchDB 3.4's defaults: tests use fewer.
FAST_AUTH = {"chttpd_auth": {"iterations": "1000"}}


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    sent: list[tuple[str, str, dict]]  # (method, url, query parameters) of every request the command sent
    bodies: list[Any]  # the JSON body of each of them, in the same order (None: no body)

    def paths(self) -> list[str]:
        return [url for _, url, _ in self.sent]


def reconcile(couch: Any, *args: str, env: Mapping[str, str] | None = None, input: str | None = None) -> Run:
    """`reconcile ARGS` against `couch` (COUCHDB_URL/USER/PASSWORD set as a pipeline would); `input` is typed on stdin."""
    sent: list[tuple[str, str, dict]] = []
    bodies: list[Any] = []
    original, original_init = requests.Session.request, requests.Session.__init__
    # Only the command's own sessions are recorded: a `reconcile watch` running beside it in this process
    # (tests/integration/test_watch.py) sends requests of its own meanwhile.
    own: weakref.WeakSet[requests.Session] = weakref.WeakSet()

    def init(self: requests.Session) -> None:
        original_init(self)
        own.add(self)

    def record(self: requests.Session, method: str, url: str, *rest: Any, **kw: Any) -> requests.Response:
        if self in own:
            sent.append((method, url, dict(kw.get("params") or {})))
            bodies.append(None if kw.get("data") is None else json.loads(kw["data"]))
        return original(self, method, url, *rest, **kw)

    user, password = couch.admin
    environment = {"COUCHDB_URL": couch.url, "COUCHDB_USER": user, "COUCHDB_PASSWORD": password, **(env or {})}
    with mock.patch.object(requests.Session, "request", record), mock.patch.object(requests.Session, "__init__", init):
        result = CliRunner().invoke(main, list(args), env=environment, input=input, catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr, sent, bodies)


def write(directory: Path, name: str, text: str) -> Path:
    """A manifest file (YAML, dedented) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def stored_password_is(doc: Mapping[str, Any], password: str) -> bool:
    """Independent of the product: CouchDB's pbkdf2 with the salt's hex string as the salt bytes."""
    derived = hashlib.pbkdf2_hmac(doc["pbkdf2_prf"], password.encode(), doc["salt"].encode("ascii"),
                                  int(doc["iterations"])).hex()
    return derived == doc["derived_key"]


def assert_no_secret(secrets: list[str], *texts: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, "a secret value reached the output"


@contextmanager
def config_changed(http: requests.Session, url: str, value: str) -> Iterator[None]:
    """The config key at `url` (`.../_node/NODE/_config/SECTION/KEY`) set to `value` for the block, then put
    back as it was (or removed): the server may be a real CouchDB other tests share. NODE `_local` means every
    node of the cluster: config is per node, and what a setting drives runs on each node for the documents that
    node owns (couch_peruser:should_handle_doc_int/2 asks mem3:owner/3), so a server-wide setting is set on all."""
    base, _, rest = url.partition("/_node/")
    node, _, key = rest.partition("/")
    section, name = key.split("/")[1:3]
    nodes = http.get(f"{base}/_membership").json()["cluster_nodes"] if node == "_local" else [node]
    urls = [f"{base}/_node/{name}/{key}" for name in nodes]
    before = [http.get(each) for each in urls]
    for each in urls:
        assert http.put(each, json=value).status_code == 200
    try:
        yield
    finally:
        for each, old in zip(urls, before):
            if old.status_code == 200:
                http.put(each, json=old.json())
            else:
                remove_config(http, each, section, name)


@dataclass
class SimCluster:
    """A multi-node couchsim with the same fields as the `couch` fixture."""

    url: str
    admin: tuple[str, str]
    nodes: list[str]

    user = property(lambda self: self.admin[0])  # as the `couch` fixture's
    password = property(lambda self: self.admin[1])

    def session(self) -> requests.Session:
        session = requests.Session()
        session.auth = self.admin
        return session


@contextmanager
def sim_cluster(nodes: int = 3) -> Iterator[SimCluster]:
    """Config and server admins are per node: only a cluster shows one node drifting from the others."""
    with SimServer(nodes=nodes, config=FAST_AUTH) as sim:
        membership = requests.get(f"{sim.url}/_membership", auth=sim.admin, timeout=30).json()
        yield SimCluster(sim.url, sim.admin, membership["cluster_nodes"])
