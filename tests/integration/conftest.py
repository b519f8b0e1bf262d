"""Fixtures the integration modules share; the server fixtures themselves (`couch`, `unique`) live in tests/conftest.py."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any, Iterator

import pytest
import requests
from cleanup import delete_everywhere
from real_servers import real_cluster
from reconcile_runner import SimCluster, sim_cluster
from waiting import wait_for


@pytest.fixture(scope="module")
def cluster():
    """The cluster for a module's tests of what is per node (config, server admins): the real one named by
    COUCHDB_CLUSTER_URLS (its first URL), else a 3-node couchsim."""
    real = real_cluster()
    if real is None:
        with sim_cluster(nodes=3) as sim:
            yield sim
        return
    urls, admin = real
    membership = requests.get(f"{urls[0]}/_membership", auth=admin, timeout=30).json()
    yield SimCluster(urls[0], admin, membership["cluster_nodes"])


@pytest.fixture
def secret_admin(couch: Any) -> Iterator[Any]:
    """`couch` as a new server admin (on every node) whose password cannot occur in ordinary output, for
    checks that no secret is shown: the suite's own admin password may be a word like `admin`. Removed after."""
    http = couch.session()
    name = f"t-admin-{secrets.token_hex(4)}"
    password = f"Zq7~{secrets.token_urlsafe(18)}"
    nodes = http.get(f"{couch.url}/_membership").json()["cluster_nodes"]
    paths = [f"{couch.url}/_node/{node}/_config/admins/{name}" for node in nodes]
    for path in paths:
        assert http.put(path, json=password).status_code == 200
    # CouchDB hashes a new admin's password asynchronously (couch_password_hasher) and refuses it until then;
    # reading the config, not trying to log in, keeps failed logins (and chttpd_auth_lockout) out of it.
    wait_for(lambda: all(http.get(path).json().startswith("-") for path in paths),
             f"the password of {name} hashed on every node", 30.0, 0.1)
    try:
        yield dataclasses.replace(couch, admin=(name, password))
    finally:
        for path in paths:
            http.delete(path)


@pytest.fixture
def http(request: pytest.FixtureRequest) -> Iterator[requests.Session]:
    """An admin session on the test's server: the `cluster` when the test uses it, else `couch`."""
    server = request.getfixturevalue("cluster" if "cluster" in request.fixturenames else "couch")
    session = server.session()
    yield session
    session.close()


@pytest.fixture
def replication_ids(couch) -> Iterator[list[str]]:
    """Replication documents a test names; deleted afterwards so that no continuous job outlives it."""
    ids: list[str] = []
    yield ids
    delete_everywhere(couch.session(), couch.url, "_replicator", ids)
