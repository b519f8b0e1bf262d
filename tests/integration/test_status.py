"""`reconcile status`: replication health from CouchDB's scheduler, read-only.

Relied on: docs/couchdb.md ("`/_scheduler/docs/_replicator/ID` shows `state`... A wrong
password → `crashing` with a `replication_auth_error`"), CouchDB's replicator docs
(src/docs/src/replication/replicator.rst, "Replication states": running, pending, crashing, failed,
completed; src/docs/src/api/server/common.rst `/_scheduler/docs`: `info.changes_pending`,
`source_seq`, `checkpointed_source_seq`, `error`).
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest

from reconcile_runner import assert_no_secret, reconcile, write
from replication_setup import base_url, members_and_databases, replication, replication_manifests, scheduler_doc
from waiting import listed_by_every_read, wait_for
from couch_reconciler.kinds.user_databases import user_database

PASSWORD = "status-s3cret-pw"
# The replication checkpoints every 2 s instead of CouchDB's default 30 s ([replicator] checkpoint_interval,
# src/docs/src/config/replicator.rst): a running job's figures appear at its first checkpoint.
CHECKPOINT_MS = 2000
# A running job asks the source for its pending changes at most every `connection_timeout` ms (30 s by default,
# couch_replicator_scheduler_job:get_pending_count/1): lowered so the count is fresh within seconds.
CONNECTION_TIMEOUT_MS = 4000
WRONG = "not-the-password"


def writes(run) -> list:
    return [(method, url) for method, url, _ in run.sent if method != "GET"]


def test_a_broken_replication_shows_in_status_and_exits_2(couch, http, unique, tmp_path, replication_ids):
    source, target, user, name = unique("src"), unique("dst"), unique("repl"), unique("rep")
    replication_ids.append(name)
    write(tmp_path, "repl.yaml", replication_manifests(couch, source, target, user, name,
                                                      f"  checkpoint_interval: {CHECKPOINT_MS}\n"
                                                      f"      connection_timeout: {CONNECTION_TIMEOUT_MS}"))
    env = {"REPLICATOR_PASSWORD": PASSWORD, "REPLICATION_PASSWORD": WRONG}
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve", env=env).code == 0
    wait_for(lambda: scheduler_doc(couch, http, name).get("state") == "crashing", "the replication to crash")

    shown = reconcile(couch, "status", str(tmp_path), env=env)
    assert shown.code == 2, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if line.startswith(name))
    assert line.split()[1] == "crashing" and "replication_auth_error" in line
    assert "session_request_unauthorized" in line  # the server's multi-line reason, on the replication's line
    assert f"Needs attention: {name}." in shown.stdout
    assert writes(shown) == []

    as_json = json.loads(reconcile(couch, "status", str(tmp_path), "--format", "json", env=env).stdout)
    [entry] = [item for item in as_json["replications"] if item["id"] == name]
    assert (as_json["healthy"], entry["state"], entry["healthy"]) == (False, "crashing", False)
    assert "replication_auth_error" in entry["error"] and entry["source"].endswith("repl.yaml:18")
    assert_no_secret([PASSWORD, WRONG], shown.stdout, shown.stderr)

    # The plan says the stored password differs from the secret, without printing either.
    fixed = {"REPLICATOR_PASSWORD": PASSWORD, "REPLICATION_PASSWORD": PASSWORD}
    planned = reconcile(couch, "plan", str(tmp_path), env=fixed)
    assert "source.auth.basic.password: (sensitive, will change)" in planned.stdout
    assert_no_secret([PASSWORD, WRONG], planned.stdout, planned.stderr)
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve", env=fixed).code == 0
    # A job reports `changes_pending` only once it has replicated a change (couch_replicator_scheduler_job
    # get_pending_count/1 gives null before: see tests/conformance/test_replicator_jobs.py), so the source gets
    # a document.
    assert http.put(f"{couch.url}/{source}/first", json={}).status_code == 201
    wait_for(lambda: (doc := scheduler_doc(couch, http, name)).get("state") == "running"
             and (doc.get("info") or {}).get("changes_pending") is not None,
             "the fixed replication to report its figures once it has replicated a document",
             timeout=(CHECKPOINT_MS + CONNECTION_TIMEOUT_MS) / 1000 + 20)
    healthy = reconcile(couch, "status", str(tmp_path), "--all", env=fixed)
    assert healthy.code == 0 and "All healthy." in healthy.stdout
    line = next(line for line in healthy.stdout.splitlines() if line.startswith(name))
    assert line.split()[1:3] == ["running", "0"]  # changes pending: the lag CouchDB reports


def test_a_declared_replication_not_applied_yet_is_missing(couch, unique, tmp_path):
    source, target, user, name = unique("src"), unique("dst"), unique("repl"), unique("rep")
    write(tmp_path, "repl.yaml", replication_manifests(couch, source, target, user, name))
    shown = reconcile(couch, "status", str(tmp_path), "--format", "json",
                      env={"REPLICATOR_PASSWORD": PASSWORD, "REPLICATION_PASSWORD": PASSWORD})
    assert shown.code == 2
    [entry] = [item for item in json.loads(shown.stdout)["replications"] if item["id"] == name]
    assert (entry["state"], entry["error"]) == ("missing", "no _replicator document; run apply")


def test_a_replication_pending_past_the_threshold_needs_attention(couch, http, unique, tmp_path, replication_ids):
    """With more continuous replications than `[replicator] max_jobs`, the rest wait `pending` for their
    turn (couch_replicator_scheduler.erl; docs/couchdb.md "Scale"): normal for a while, not for ever."""
    if couch.real:
        pytest.skip("lowers [replicator] max_jobs for the whole server: couchsim only")
    answer = http.put(f"{couch.url}/_node/_local/_config/replicator/max_jobs", json="2")
    assert answer.status_code == 200
    user, names = unique("repl"), [unique("rep") for _ in range(3)]
    replication_ids.extend(names)
    databases = [unique("db") for _ in range(4)]
    write(tmp_path, "repl.yaml", members_and_databases(user, *databases) + "".join(
        "---" + replication(couch, name, databases[0], target, user) for name, target in zip(names, databases[1:])))
    env = {"REPLICATOR_PASSWORD": PASSWORD, "REPLICATION_PASSWORD": PASSWORD}
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve", env=env).code == 0
    # couch_replicator_scheduler:maybe_start_newly_added_job/2 counts the new job: the max_jobs-th waits.
    wait_for(lambda: sorted(scheduler_doc(couch, http, name).get("state", "") for name in names)
             == ["pending", "pending", "running"], "one running and two pending")

    patient = reconcile(couch, "status", str(tmp_path), env=env)
    assert patient.code == 0, patient.stdout
    assert "3 replications: 2 pending, 1 running. All healthy." in patient.stdout
    time.sleep(1.1)
    impatient = reconcile(couch, "status", str(tmp_path), "--pending-threshold", "0.5", env=env)
    assert impatient.code == 2
    pending = [line for line in impatient.stdout.splitlines() if " pending " in line]
    assert len(pending) == 2 and all("(more than 0.5s)" in line for line in pending)


def fan_in_manifests(couch, target: str, names: list[str], fan_in: str) -> str:
    """A UserDatabases template over exactly `names` replicating each user's database into `target`."""
    return f"""
    apiVersion: reconciler/v1
    kind: UserDatabases
    metadata: {{name: per-user}}
    spec:
      select: {{namePattern: "{'|'.join(names)}"}}
      replicateTo:
        - target: {target}
          fanIn: {fan_in}
          replicationBaseUrl: {base_url(couch)}
          auth: {{username: {couch.user}, password: env:REPLICATION_PASSWORD}}
    ---
    apiVersion: reconciler/v1
    kind: Database
    metadata: {{name: {target}}}
    spec: {{}}
    """


def sign_up(couch, http, name: str) -> None:
    """What the app's back end does: a `_users` document, no role."""
    answer = http.put(f"{couch.url}/_users/{quote('org.couchdb.user:' + name, safe=':')}",
                      json={"name": name, "type": "user", "roles": [], "password": "pw"})
    assert answer.status_code == 201, answer.text


def test_twenty_users_without_their_replication_exit_2_and_are_named(couch, http, unique, tmp_path, replication_ids):
    """Users signed up after the last apply have no replication into the fan-in's target: the summary counts
    them, the line under "Needs attention" names the first few, and the exit status is 2."""
    target, names = unique("fan"), sorted(unique("fan") for _ in range(25))
    write(tmp_path, "fan-in.yaml", fan_in_manifests(couch, target, names, "continuous"))
    env = {"REPLICATION_PASSWORD": couch.password}
    replicated, late = names[:5], names[5:]
    for name in replicated:
        sign_up(couch, http, name)
    replication_ids.extend(f"per-user.{user_database('userdb-', name)}.to.{target}" for name in replicated)
    # On a cluster `status` lists `_users` and `_replicator` from one copy of each shard range, which may lag
    # the writes just made: the counts below are what every copy holds.
    listed_by_every_read(http, couch.url, "_users", *(f"org.couchdb.user:{name}" for name in replicated))
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env).code == 0
    listed_by_every_read(http, couch.url, "_replicator", *replication_ids)
    for name in late:
        sign_up(couch, http, name)
    listed_by_every_read(http, couch.url, "_users", *(f"org.couchdb.user:{name}" for name in late))

    shown = reconcile(couch, "status", str(tmp_path), env=env)
    assert shown.code == 2, shown.stdout + shown.stderr
    assert "  users         25: 5 with a replication, 20 without" in shown.stdout
    listed = ", ".join(f"`{name}`" for name in late[:5])
    assert f"per-user -> {target}: 20 users ({listed} and 15 more) without a replication" in shown.stdout
    assert writes(shown) == []
    as_json = json.loads(reconcile(couch, "status", str(tmp_path), "--format", "json", env=env).stdout)
    [fan_in] = [item for item in as_json["fan_ins"] if item["name"] == f"per-user -> {target}"]
    assert (fan_in["users"], fan_in["without"], as_json["healthy"]) == (25, late, False)

    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env).code == 0
    replication_ids.extend(f"per-user.{user_database('userdb-', name)}.to.{target}" for name in late)
    listed_by_every_read(http, couch.url, "_replicator", *replication_ids)
    complete = reconcile(couch, "status", str(tmp_path), env=env)
    assert "  users         25: 25 with a replication, 0 without" in complete.stdout
    assert "without a replication" not in complete.stdout
