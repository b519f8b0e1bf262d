"""The compose/ setup, and (opt-in) the whole conformance suite against a real CouchDB 3.x started in Docker
(see compose/README.md)."""

import os
import subprocess
import sys
from pathlib import Path

import yaml
from docker_fixture import COMPOSE, docker_couchdb, read_env_file  # noqa: F401  (docker_couchdb is a fixture)

HERE = Path(__file__).resolve().parent


def test_conformance_suite_passes_against_real_couchdb_in_docker(docker_couchdb):  # noqa: F811
    """Issue 3, "Conformance suite": every case must hold on a real CouchDB too (official couchdb:3 image).
    The recorded exchanges go first, while the container is still fresh (COUCHDB_FRESH=1), then everything else."""
    env = {**os.environ, **docker_couchdb.env()}
    pytest_cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0"]
    runs = [
        (pytest_cmd + [str(HERE / "test_exchanges.py")], {**env, "COUCHDB_FRESH": "1"}),
        (pytest_cmd + [str(HERE), f"--ignore={HERE / 'test_exchanges.py'}", f"--ignore={Path(__file__).resolve()}"], env),
    ]
    for command, run_env in runs:
        result = subprocess.run(command, env=run_env, cwd=HERE.parents[1], capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_compose_runs_couchdb_3_on_loopback_with_the_admin_from_the_env_file():
    """compose/docker-compose.yml: official couchdb:3 image, admin from an env file, ports bound to 127.0.0.1
    only (a known admin password must not be reachable from the network), one node in `single`, three in `cluster`."""
    compose = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    nodes = {name: service for name, service in compose["services"].items() if service["image"] == "couchdb:3"}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    for name, service in nodes.items():
        assert service["env_file"] == "couchdb.env", name
    profiles = [profile for service in nodes.values() for profile in service["profiles"]]
    assert (profiles.count("single"), profiles.count("cluster")) == (1, 3)
    assert {"COUCHDB_USER", "COUCHDB_PASSWORD"} <= set(read_env_file(COMPOSE / "couchdb.env.example"))
