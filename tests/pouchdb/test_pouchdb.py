"""PouchDB (the npm packages, run by node's test runner: tests/pouchdb/sync.test.js) against the reference
architecture: a user with a non-ASCII name signs in with /_session, syncs her database and main-entities
both ways from two devices, keeps a conflict, and the analytics view the panel reads counts her documents.

The npm packages come from tests/pouchdb/package-lock.json (`make test` and .ci/run run `npm ci`); a missing
install fails here with the command that fixes it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from reference_world import apply_manifests, sign_up, watching_manifests

HERE = Path(__file__).parent
NODE_TIMEOUT = 180  # seconds for the whole Node run, replication to analytics included


def test_pouchdb_syncs_two_devices_keeps_a_conflict_and_analytics_counts_her_documents(couch, unique):
    node = shutil.which("node")
    assert node, "node is not installed (Debian: apt-get install nodejs)"
    assert (HERE / "node_modules" / "pouchdb-core").is_dir(), "run `npm ci --prefix tests/pouchdb` (make test does)"

    apply_manifests(couch)
    admin = couch.session()
    name, password = unique("zoë-日本"), "correct horse ✓ battery"
    sign_up(admin, couch.url, name, password, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    # The next apply gives her the role that opens main-entities; watch, running as the deployment runs it,
    # replicates her database into analytics whenever she writes (fanIn: triggered).
    apply_manifests(couch)
    env = {**os.environ, "COUCHDB_URL": couch.url, "COUCHDB_USER": couch.user, "COUCHDB_PASSWORD": couch.password,
           "POUCHDB_USER": name, "POUCHDB_PASSWORD": password, "ANALYTICS_WAIT": "60"}
    with watching_manifests(couch):
        run = subprocess.run([node, "--test", "--test-reporter=spec", "sync.test.js"], cwd=HERE, env=env,
                             capture_output=True, text=True, timeout=NODE_TIMEOUT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"^ℹ pass [1-9]", run.stdout, re.M) and re.search(r"^ℹ fail 0$", run.stdout, re.M), run.stdout
