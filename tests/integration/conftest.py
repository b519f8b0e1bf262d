"""Fixtures the integration modules share; the server fixtures themselves (`couch`, `unique`) live in tests/conftest.py."""

from __future__ import annotations

from typing import Iterator
from urllib.parse import quote

import pytest
import requests
from reconcile_runner import sim_cluster


@pytest.fixture(scope="module")
def cluster():
    """A 3-node couchsim for a module's tests of what is per node (config, server admins)."""
    with sim_cluster(nodes=3) as sim:
        yield sim


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
    http = couch.session()
    for doc_id in ids:
        path = f"{couch.url}/_replicator/{quote(doc_id, safe='')}"
        current = http.get(path)
        if current.status_code == 200:
            http.delete(path, params={"rev": current.json()["_rev"]})
