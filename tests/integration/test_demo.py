"""`make demo` as a newcomer runs it: the reference architecture deployed on couchsim, two sign-ups made on
the server and converged by `reconcile watch` (not by another apply), documents reaching analytics through
watch's one-shot replications (fanIn: triggered), watch stopped by SIGTERM with exit 0; it ends with the
analytics panel's address and how to sign in there.

The demo always starts its own couchsim on a free port (COUCHDB_URL removed from its environment); its
replications reach that server through COUCHDB_REPLICATION_URL, which the demo sets.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_shows_watch_converging_two_sign_ups_and_a_document_reaching_analytics():
    env = {key: value for key, value in os.environ.items() if not key.startswith("COUCHDB_")}
    # No terminal: on one the demo would keep couchsim up for the panel until Enter.
    demo = subprocess.run([str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr

    # The sign-ups are converged by watch's targeted reconcile: one apply in the demo, before them.
    assert out.count("reconcile apply") == 1
    # One burst or several: couch_peruser may make a database a start period after its user signed up.
    for user in (r"Mark\.O\+demo@example\.com", "zoë"):
        assert re.search(rf"reconcile  targeted/[^:\n]*{user}[^:\n]*: \d+ change\(s\) applied", out), user
    for database in ("userdb-7a6fc3ab", "userdb-4d61726b2e4f2b64656d6f406578616d706c652e636f6d"):
        # fanIn: triggered: watch's first one-shot run of each new user database, not a continuous document.
        assert f"trigger    replication/per-user.{database}.to.analytics: one-shot replication started" in out
    assert "zoë: roles ['app-user']; userdb-7a6fc3ab members ['zoë']" in out

    # SIGTERM stops watch cleanly, and no process of the demo outlives it.
    assert "reconcile watch exited 0" in out
    watch_pid = int(re.search(r"kill -TERM (\d+)", out).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(watch_pid, 0)

    assert 'documents per type: {"journal-entry": 1, "shared-task": 1}' in out

    assert re.search(r"all \d+ reached analytics", out)
    port = re.search(r"couchsim is running on http://127\.0\.0\.1:(\d+)", out).group(1)
    assert f"The analytics panel: http://127.0.0.1:{port}/analytics-panel/_design/panel/index.html" in out
    assert "Sign in as `ops`" in out and "OPS_ADMIN_PASSWORD in manifests/demo.env" in out
