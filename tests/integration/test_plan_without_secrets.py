"""`plan` only compares secrets with the server's: with --without-secrets it plans without them, with a warning
per secret it could not compare (on stderr and in the plan, for the reviewer of a pull request); `apply` still refuses to
start without every secret it would write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from reconcile_runner import assert_no_secret, reconcile

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def demo_secrets() -> dict[str, str]:
    lines = (MANIFESTS / "demo.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_plan_without_the_secrets_says_what_it_could_not_compare(couch, tmp_path, monkeypatch):
    shutil.copytree(MANIFESTS, tmp_path / "m")
    secrets = demo_secrets()
    env = {"COUCHDB_REPLICATION_URL": couch.url}
    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path / "m"), env={**env, **secrets})
    assert applied.code == 0, applied.stderr

    for name in secrets:
        monkeypatch.delenv(name, raising=False)
    strict = reconcile(couch, "plan", str(tmp_path / "m"), env=env)
    assert strict.code == 1 and strict.sent == [], strict.stderr  # without the flag: refused before any request
    assert "the environment variable OPS_ADMIN_PASSWORD is not set" in strict.stderr

    run = reconcile(couch, "plan", "--without-secrets", "--detailed-exitcode", "--format", "json",
                    str(tmp_path / "m"), env=env)
    assert run.code == 0, run.stderr  # nothing it could compare differs: no password change is claimed
    unchecked = [line for line in run.stderr.splitlines() if "not compared with the server's" in line]
    assert {name for name in secrets if any(f"the environment variable {name} is not set" in line
                                            for line in unchecked)} == set(secrets)
    assert all(": warning: " in line and line.endswith("(apply needs it)") for line in unchecked)
    assert set(unchecked) <= set(json.loads(run.stdout)["warnings"])

    refused = reconcile(couch, "apply", "--auto-approve", str(tmp_path / "m"), env=env)
    assert refused.code == 1 and [m for m, *_ in refused.sent if m in ("PUT", "POST", "DELETE")] == []
    assert "the environment variable OPS_ADMIN_PASSWORD is not set" in refused.stderr
    assert_no_secret(list(secrets.values()), run.stdout, run.stderr)
