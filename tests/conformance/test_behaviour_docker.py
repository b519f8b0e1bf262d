"""Opt-in: the whole conformance suite against a real CouchDB 3.x started in Docker (see compose/README.md)."""

import os
import subprocess
import sys
from pathlib import Path

from docker_fixture import docker_couchdb  # noqa: F401  (fixture)

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
