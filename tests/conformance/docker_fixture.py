"""`docker_couchdb`: a throwaway real CouchDB 3.x (official `couchdb:3` image) started with the `docker` package.

Opt-in (COUCHSIM_DOCKER=1) because it pulls an image and takes minutes; without a Docker daemon it skips
and says so. The container mirrors compose/docker-compose.yml's single-node profile: same image, same
admin env file, same single-node.ini, port published on 127.0.0.1 only, removed afterwards.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
IMAGE = "couchdb:3"
START_TIMEOUT = 180.0


@dataclass(frozen=True)
class RealCouch:
    url: str
    user: str
    password: str

    def env(self) -> dict[str, str]:
        """What the conformance suite reads to run against a real server instead of couchsim."""
        return {"COUCHDB_URL": self.url, "COUCHDB_USER": self.user, "COUCHDB_PASSWORD": self.password,
                # replication endpoints are fetched by CouchDB inside the container, on its own port
                "COUCHDB_REPLICATION_URL": "http://127.0.0.1:5984"}


def read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pairs[key.strip()] = value.strip()
    return pairs


def _docker_client():
    """A client whose daemon answered a ping, or a skip that names why none did."""
    import docker

    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker daemon answers ({exc}); cannot start a real CouchDB here. "
                    "Start Docker, or run one yourself (compose/README.md) and set COUCHDB_URL")
    return client


def _wait_until_up(url: str, container) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/_up", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        container.reload()
        if container.status == "exited":
            raise RuntimeError(f"{IMAGE} exited while starting:\n{container.logs().decode(errors='replace')[-2000:]}")
        time.sleep(1)
    raise RuntimeError(f"{IMAGE} did not answer /_up within {START_TIMEOUT:.0f}s")


@pytest.fixture(scope="session")
def docker_couchdb():
    client = _docker_client()
    if os.environ.get("COUCHSIM_DOCKER") != "1":
        pytest.skip("a Docker daemon answers, but starting couchdb:3 pulls an image and takes minutes: "
                    "set COUCHSIM_DOCKER=1 to run this")
    env_file = COMPOSE / "couchdb.env"
    admin = read_env_file(env_file if env_file.exists() else COMPOSE / "couchdb.env.example")
    container = client.containers.run(
        IMAGE,
        detach=True,
        environment={"COUCHDB_USER": admin["COUCHDB_USER"], "COUCHDB_PASSWORD": admin["COUCHDB_PASSWORD"]},
        ports={"5984/tcp": ("127.0.0.1", None)},
        volumes={str(COMPOSE / "single-node.ini"): {"bind": "/opt/couchdb/etc/local.d/single-node.ini", "mode": "ro"}},
        labels={"couch-reconciler": "conformance"},
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["5984/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url, container)
        yield RealCouch(url, admin["COUCHDB_USER"], admin["COUCHDB_PASSWORD"])
    finally:
        container.remove(force=True)
