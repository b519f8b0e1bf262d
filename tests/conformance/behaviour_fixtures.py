"""Fixtures shared by tests/conformance/test_behaviour_*.py: HTTP clients per identity, databases, users and
config values that clean up after themselves, and bounded polling.

Every fixture works the same against couchsim and against a real CouchDB (COUCHDB_URL): names come from
`unique`, and whatever a case creates or changes is deleted or restored, so a shared server is left as found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import quote

import pytest
import requests
from cleanup import forget_users, remove_config
from waiting import ONE_COPY, security_reads_back, wait_for


class Client:
    """One identity talking to the server: paths are relative to the server root, JSON bodies via `json=`."""

    def __init__(self, base: str, auth: tuple[str, str] | None = None):
        self.base = base.rstrip("/")
        self.http = requests.Session()
        self.http.auth = auth
        self.http.headers["Accept"] = "application/json"

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.http.request(method, self.base + path, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def head(self, path: str, **kw: Any) -> requests.Response:
        return self.request("HEAD", path, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> requests.Response:
        return self.request("PUT", path, json=json, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, json=json, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        self.http.close()


@dataclass
class Server:
    url: str
    admin_name: str
    admin_password: str
    admin: Client
    anon: Client
    sim: Any  # couchsim's in-process handle, None on a real server
    url_from_server: str  # how the server reaches itself (replication endpoints); differs from `url` behind Docker

    def as_user(self, name: str, password: str) -> Client:
        return Client(self.url, (name, password))

    def node(self) -> str:
        return self.admin.get("/_node/_local").json()["name"]

    def put_security(self, database: str, security: dict) -> requests.Response:
        """PUT `database`'s `_security` as admin; a 200 returns once reads see it (security_reads_back)."""
        response = self.admin.put(f"/{database}/_security", json=security)
        if response.status_code == 200:
            security_reads_back(self.admin.http, f"{self.admin.base}/{database}/_security", security)
        return response


@dataclass
class User:
    name: str
    password: str
    roles: list[str]
    client: Client

    @property
    def doc_id(self) -> str:
        return f"org.couchdb.user:{self.name}"


ADMIN_ONLY_SECURITY = {"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}}
NOT_SERVER_ADMIN = (401, {"error": "unauthorized", "reason": "You are not a server admin."})


def answer(response: requests.Response) -> tuple[int, Any]:
    """(status, JSON body), compared in one assert so that a failure shows both."""
    return response.status_code, response.json()


def _path_part(part: str) -> str:
    """One escaped path segment; `_design/x` and `_local/x` keep their slash, as CouchDB addresses them that way."""
    for prefix in ("_design/", "_local/"):
        if part.startswith(prefix):
            return prefix + quote(part[len(prefix):], safe="")
    return quote(part, safe="")


def db_url(name: str, *rest: str) -> str:
    return "/" + "/".join([quote(name, safe="")] + [_path_part(part) for part in rest])


def user_url(name: str) -> str:
    return "/_users/" + quote(f"org.couchdb.user:{name}", safe=":")


def delete_user(admin: Client, name: str) -> requests.Response | None:
    """Delete a `_users` doc at its current revision; None when there is none."""
    current = admin.get(user_url(name))
    if current.status_code != 200:
        return None
    return admin.delete(user_url(name), params={"rev": current.json()["_rev"]})


@pytest.fixture
def server(couch) -> Iterator[Server]:
    admin = Client(couch.url, (couch.user, couch.password))
    anon = Client(couch.url)
    yield Server(couch.url, couch.user, couch.password, admin, anon, couch.sim,
                 os.environ.get("COUCHDB_REPLICATION_URL", couch.url).rstrip("/"))
    admin.close()
    anon.close()


@pytest.fixture
def new_name(unique) -> Callable[[str], str]:
    """A fresh lowercase name, valid as a database or user name, never used before on this server."""
    return lambda prefix="c": unique(prefix)


@pytest.fixture
def new_db(server, new_name) -> Iterator[Callable[..., str]]:
    """Create a database (optionally with a `_security` object), of ONE_COPY unless `n` says otherwise; it is
    deleted after the case."""
    created: list[str] = []

    def make(prefix: str = "db", security: dict | None = None, name: str | None = None, **params: Any) -> str:
        name = name or new_name(prefix)
        response = server.admin.put(db_url(name), params={**ONE_COPY, **params})
        assert response.status_code == 201, response.text
        created.append(name)
        if security is not None:
            response = server.admin.put(db_url(name, "_security"), json=security)
            assert response.status_code == 200, response.text
        return name

    yield make
    for name in created:
        server.admin.delete(db_url(name))


@pytest.fixture
def db(new_db) -> str:
    """A fresh database with CouchDB 3.x's default (admin-only) security."""
    return new_db()


@pytest.fixture
def new_user(server, new_name) -> Iterator[Callable[..., User]]:
    """Create a `_users` user (as admin); the user doc is deleted after the case."""
    created: list[User] = []

    def make(roles: list[str] | None = None, name: str | None = None, password: str = "pw-secret") -> User:
        name = name or new_name("u")
        roles = list(roles or [])
        doc = {"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": roles, "password": password}
        response = server.admin.put(user_url(name), json=doc)
        assert response.status_code == 201, response.text
        user = User(name, password, roles, server.as_user(name, password))
        created.append(user)
        return user

    yield make
    for user in created:
        user.client.close()
    forget_users(server.admin.http, server.admin.base, [user.name for user in created])


@pytest.fixture
def set_config(server) -> Iterator[Callable[..., requests.Response]]:
    """PUT a config value (a JSON string) on a node, by default on every node of the cluster (config is per
    node, and what a setting drives runs on each node for the documents it owns: couch_peruser, say); the
    answer is the answering node's. The previous values, or their absence, are restored afterwards."""
    previous: dict[tuple[str, str, str], str | None] = {}

    def put(section: str, key: str, value: str, node: str | None = None, raw: bool = False) -> requests.Response:
        if node is None:
            local = server.node()
            nodes = [local] + [n for n in server.admin.get("/_membership").json()["cluster_nodes"] if n != local]
        else:
            nodes = [node]
        answers = []
        for name in nodes:
            path = f"/_node/{name}/_config/{section}/{quote(key, safe='')}"
            if (name, section, key) not in previous:
                before = server.admin.get(path)
                previous[(name, section, key)] = before.json() if before.status_code == 200 else None
            answers.append(server.admin.put(path, json=value, params={"raw": "true"} if raw else None))
            assert answers[-1].status_code == 200, answers[-1].text
        return answers[0]

    yield put
    for (node, section, key), value in reversed(list(previous.items())):
        path = f"/_node/{node}/_config/{section}/{quote(key, safe='')}"
        if value is None:
            remove_config(server.admin, path, section, key)
        else:
            server.admin.put(path, json=value, params={"raw": "true"} if section == "admins" else None)


@pytest.fixture
def poll() -> Callable[..., Any]:
    """poll(fn, timeout): fn's first truthy result, retried until `timeout` seconds; fails with the last result.

    For what CouchDB does asynchronously (admin hashing, couch_peruser, the _auth ddoc): bounded, never a fixed sleep.
    """

    def until(fn: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05, what: str = "condition") -> Any:
        return wait_for(fn, what, timeout, interval)

    return until


@pytest.fixture
def cluster(server):
    """An admin client on a server with at least two nodes: on couchsim a 3-node SimServer, on a real server the
    server itself when it is a cluster (compose/ cluster profile)."""
    if server.sim is None:
        nodes = server.admin.get("/_membership").json()["cluster_nodes"]
        if len(nodes) < 2:
            pytest.skip(f"one-node CouchDB ({nodes}); this needs a cluster (compose/ cluster profile)")
        yield server.admin
        return
    from couch_reconciler.couchsim.testing import SimServer

    with SimServer(admin=(server.admin_name, server.admin_password), nodes=3) as sim:
        admin = Client(sim.url, (server.admin_name, server.admin_password))
        yield admin
        admin.close()
