"""Opt-in: the whole conformance suite against a real CouchDB 3.x started in Docker (see compose/README.md)."""

import os
import subprocess
import sys
from pathlib import Path

from docker_fixture import docker_couchdb  # noqa: F401  (fixture)

HERE = Path(__file__).resolve().parent


def test_conformance_suite_passes_against_real_couchdb_in_docker(docker_couchdb):  # noqa: F811
    """Issue 3, "Conformance suite": every behaviour case must hold on a real CouchDB too (official couchdb:3 image)."""
    env = {**os.environ, **docker_couchdb.env()}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider", "-n", "0",
         f"--ignore={Path(__file__).resolve()}"],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
