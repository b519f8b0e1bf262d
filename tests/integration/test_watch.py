"""`reconcile watch`: sign-ups converge within seconds, feed positions live on the server, SIGTERM stops
cleanly, network cuts are survived, triggered fan-in moves documents, nothing is deleted without opt-in.

Relied on:
- docs/couchdb.md: `/_db_updates` answers 404 until `_global_changes` exists; a `_security`
  write bumps `update_seq`; `_replicator` docs need full URLs and credentials in `auth.basic`.
- apache/couchdb src/couch/src/couch_db.erl `validate_doc_update/3`: `_local/` documents skip validation
  functions, so the checkpoint can live in `_users/_local/...`; src/global_changes/src/global_changes_httpd.erl:
  `_db_updates` takes feed=longpoll, since (incl. `now`), timeout, heartbeat and rows `{db_name, type, seq}`.
- src/couch_replicator/src/couch_replicator_doc_processor.erl `process_change/2`: a document whose
  `_replication_state` is `completed` is left alone; a new revision without it starts a new run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator
from unittest import mock
from urllib.parse import quote

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from reconcile_runner import config_changed, reconcile, write
from replication_setup import conflict, live_leaves
from couch_reconciler.client import Connection, CouchSession
from couch_reconciler.kinds import replication as replication_kind
from couch_reconciler.plan import Policy
from couch_reconciler.kinds.user_databases import user_database
from couch_reconciler.watch import CHECKPOINT_DB, CHECKPOINT_ID, ActionLog, Settings, loop, run
from couch_reconciler.watch.checkpoint import Checkpoint
from couch_reconciler.watch.fan_in import TriggeredFanIn
from waiting import copies, copies_agree_within, wait_for, written_to_every_copy

SIM_ONLY = pytest.mark.skipif("COUCHDB_URL" in os.environ, reason="drives couchsim's fault injector")
FAST = Settings(interval=60, debounce=0.1, feed_timeout=1.0, poll_interval=0.3, backoff_cap=0.5,
                checkpoint_every=0.2)
SECRET = "watch-replication-secret"


def manifests(couch, directory: Path, fan_in: str = "continuous", database: str | None = None,
              global_changes: bool = True, select: str = ".*") -> Path:
    """The watch manifests (the template selecting the users whose name matches `select`), and with `database`
    one more Database (prune: true) in its own file."""
    if database is not None:
        write(directory, "extra.yaml", f"""
            apiVersion: reconciler/v1
            kind: Database
            metadata: {{name: {database}}}
            spec: {{prune: true}}
            """)
    write(directory, "watch.yaml", f"""
        apiVersion: reconciler/v1
        kind: Role
        metadata: {{name: app-user}}
        spec: {{}}
        ---
        apiVersion: reconciler/v1
        kind: Database
        metadata: {{name: analytics}}
        spec: {{}}
        ---
        apiVersion: reconciler/v1
        kind: Database
        metadata: {{name: {"_global_changes" if global_changes else "other"}}}
        spec: {{}}
        ---
        apiVersion: reconciler/v1
        kind: UserDatabases
        metadata: {{name: per-user}}
        spec:
          grantRoles: [app-user]
          select: {{namePattern: "{select}"}}
          replicateTo:
            - target: analytics
              fanIn: {fan_in}
              replicationBaseUrl: {couch.url}
              auth: {{username: {couch.user}, password: env:WATCH_REPLICATION_PASSWORD}}
        """)
    return directory


class Lines:
    """A text stream the watch thread writes its log lines to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self.lines.extend(line for line in text.splitlines() if line)

    def flush(self) -> None:
        pass

    def records(self) -> list[dict]:
        with self._lock:
            return [json.loads(line) for line in self.lines]

    def wait(self, predicate, seconds: float = 20.0) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [record for record in self.records() if predicate(record)]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no such log line within {seconds}s; got:\n" + "\n".join(self.lines[-30:]))


@contextmanager
def watching(couch, directory: Path, policy: Policy = Policy(), settings: Settings = FAST,
             sent: list | None = None) -> Iterator[Lines]:
    """`reconcile watch` in a thread (json log), stopped as SIGTERM would: the stop event, then the loop ends."""
    lines, stopping, result = Lines(), threading.Event(), []
    session = CouchSession(Connection(couch.url, couch.user, couch.password, timeout=10))
    original = requests.Session.request

    def record(self, method, url, *rest, **kw):
        if sent is not None:
            sent.append((method, url, dict(kw.get("params") or {})))
        return original(self, method, url, *rest, **kw)

    with mock.patch.object(requests.Session, "request", record):
        thread = threading.Thread(target=lambda: result.append(
            run(session, str(directory), policy, settings, ActionLog("json", lines), stopping)), daemon=True)
        thread.start()
        try:
            lines.wait(lambda r: r["action"] == "reconcile" and r["kind"] == "full" and r["outcome"] != "started")
            yield lines
        finally:
            stopping.set()
            thread.join(timeout=15)
            session.close()
    assert result == [0], lines.lines[-10:]


def sign_up(couch, http, name: str) -> None:
    """What the app's back end does: a `_users` document, no role."""
    answer = http.put(f"{couch.url}/_users/{quote('org.couchdb.user:' + name, safe=':')}",
                      json={"name": name, "type": "user", "roles": [], "password": "pw"})
    assert answer.status_code == 201, answer.text


def converged(couch, http, name: str) -> bool:
    database = user_database("userdb-", name)
    security = http.get(f"{couch.url}/{database}/_security")
    replication = http.get(f"{couch.url}/_replicator/per-user.{database}.to.analytics")
    user = http.get(f"{couch.url}/_users/{quote('org.couchdb.user:' + name, safe=':')}").json()
    return (security.status_code == 200 and name in security.json().get("members", {}).get("names", [])
            and replication.status_code == 200 and "app-user" in user.get("roles", []))


@pytest.fixture
def http(couch):
    return couch.session()


@pytest.fixture(autouse=True)
def replication_secret(monkeypatch, couch):
    monkeypatch.setenv("WATCH_REPLICATION_PASSWORD", couch.password)


# A triggered one-shot replication: watch writes its document, CouchDB's doc processor and scheduler start the
# job, which reads the source and checkpoints. Seconds on an idle server; a loaded real one took over 20 s.
ONE_SHOT_WAIT = 60.0


@pytest.fixture(autouse=True)
def checkpoint_removed(couch):
    """Watch's checkpoint is a `_local` document of `_users`, which no listing shows: it goes after the test, so
    the next watch starts from the beginning of the feeds (the rest watch made goes with the test's server)."""
    yield
    http = couch.session()
    checkpoint = f"{couch.url}/{CHECKPOINT_DB}/{CHECKPOINT_ID}"
    current = http.get(checkpoint)
    if current.status_code == 200:
        http.delete(checkpoint, params={"rev": current.json()["_rev"]})


def lines_until(process: subprocess.Popen, wanted, seconds: float = 60.0) -> list[str]:
    """The process's stdout lines up to the first for which `wanted(line)` is true; AssertionError, naming what
    was read, if none comes within `seconds` (a reader thread, so a silent process cannot hang the test)."""
    read: list[str] = []
    found = threading.Event()

    def reader() -> None:
        for line in process.stdout:
            read.append(line)
            if wanted(line):
                found.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    if not found.wait(seconds):
        raise AssertionError(f"watch printed no such line within {seconds:g}s; got:\n" + "".join(read[-30:]))
    return read


def applied_full_reconcile(line: str) -> bool:
    return " reconcile " in line and "applied" in line


def test_sign_ups_get_database_security_role_and_replication_within_seconds(couch, http, unique, tmp_path):
    """Between full reconciles, the sign-up is handled by a targeted reconcile: no `_users` scan and no
    `_security` read of the other users' databases; every log line is a JSON object."""
    earlier = [unique("early") for _ in range(3)]
    for name in earlier:
        sign_up(couch, http, name)
    sent: list = []
    # No periodic full reconcile within the test (it reads everything, as it should): a loaded real server can
    # take longer than FAST's interval over the burst.
    with watching(couch, manifests(couch, tmp_path), sent=sent, settings=replace(FAST, interval=3600)) as log:
        assert all(converged(couch, http, name) for name in earlier)
        # The full reconcile's own role grants come back through the `_users` feed, once for each of them (a
        # loaded real server delivered the last one's after the first one's had been handled).
        for name in earlier:
            log.wait(lambda r, name=name: r["kind"] == "targeted" and name in r["key"] and "applied" in r["outcome"])
        # So do their databases' `created` rows, later (docs/watch.md): let them come before the burst, so that it
        # has other users' databases to leave alone. A server that made `_global_changes` after them (the
        # manifests declare it) may never send them: CouchDB writes the events it heard only to an existing
        # `_global_changes` (global_changes_server.erl `flush_updates`), hence no failure if they do not come.
        with contextlib.suppress(AssertionError):
            wait_for(lambda: all(any(r["kind"] == "targeted" and user_database("userdb-", name) in r["key"].split(", ")
                                     for r in log.records()) for name in earlier), timeout=5.0)
        before, lines_before = len(sent), len(log.records())
        # A burst above the plan's share thresholds (10 existing objects): a targeted plan sees only the
        # users concerned, so the thresholds are the full reconcile's.
        burst = [unique("new") for _ in range(12)]
        for name in burst:
            sign_up(couch, http, name)
        # Seconds on couchsim; on a real CouchDB each sign-up is a sharded database, its _security, a
        # _replicator document and a role write (12.5 s for 12 on a loaded 2-core machine): a generous bound.
        wait_for(lambda: all(converged(couch, http, name) for name in burst),
                 f"{len(burst)} sign-ups converged by targeted reconciles", 120.0, 0.2)
        log.wait(lambda r: r["kind"] == "targeted" and "applied" in r["outcome"])
        after = [(method, url) for method, url, _ in sent[before:]]
    records = log.records()
    assert not any("/_users/_all_docs" in url and method == "GET" for method, url in after)
    # An earlier user's database is read only by a reconcile about her, never because of the burst: one whose
    # `_users` document changed once more (a sharded `_users` brings its changes in no set order), or whose
    # database's creation `/_db_updates` brought later still. A real CouchDB writes each shard's `created` event
    # to `_global_changes` in batches, up to `max_write_delay` (500 ms) after it, and again for a shard created
    # later (src/global_changes/src/global_changes_listener.erl): seconds late on a loaded server.
    read = {old for old in earlier
            if any(url.endswith("/_security") and user_database("userdb-", old) in url for _, url in after)}
    about = {old for old in earlier if any(r["kind"] == "targeted" and named(r["key"], old)
                                           for r in records[lines_before:])}
    assert read <= about, (read, about)
    assert all(set(record) == {"ts", "level", "action", "kind", "key", "outcome"} for record in records)
    assert all(any(r["action"] == "create" and r["key"] == user_database("userdb-", name) for r in records)
               for name in burst)
    assert not any(SECRET in line or couch.password in line for line in log.lines)


def named(key: str, user: str) -> bool:
    """Whether a targeted reconcile's log key names `user` or her database."""
    return bool({user, user_database("userdb-", user)} & set(key.split(", ")))


def test_sigterm_stops_cleanly_and_leaves_the_checkpoint_on_the_server(couch, http, unique, tmp_path):
    directory = manifests(couch, tmp_path)
    env = {**os.environ, "COUCHDB_URL": couch.url, "COUCHDB_USER": couch.user, "COUCHDB_PASSWORD": couch.password}
    process = subprocess.Popen([sys.executable, "-c", "from couch_reconciler.cli import main; main()", "watch",
                                "--interval", "60", "--debounce", "0.1", str(directory)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = lines_until(process, applied_full_reconcile)
        name = unique("term")
        sign_up(couch, http, name)
        wait_for(lambda: converged(couch, http, name))
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopped; feed positions saved" in out.splitlines()[-1]
    checkpoint = http.get(f"{couch.url}/{CHECKPOINT_DB}/{CHECKPOINT_ID}").json()
    assert set(checkpoint["positions"]) == {"_users", "_db_updates"}
    assert couch.password not in out + err + "".join(seen)


def test_the_checkpoint_says_what_watch_reports_though_no_feed_moved(couch, http):
    """`reconcile status` takes from watch's checkpoint whether its runs are held and what its queue holds: a
    changed report is written within `checkpoint_every` even while no feed position moves (events still being
    handled, say), not only at watch's next sign of life ALIVE_EVERY seconds later."""
    session = CouchSession(Connection(couch.url, couch.user, couch.password, timeout=10))
    checkpoint = Checkpoint(session, ActionLog(stream=io.StringIO()), FAST.checkpoint_every)
    positions = {"_users": "0", "_db_updates": "0"}
    checkpoint.write(positions, force=True, report={"running": True, "held": True})
    time.sleep(FAST.checkpoint_every)
    checkpoint.write(positions, report={"running": True, "held": False})
    assert http.get(f"{couch.url}/{CHECKPOINT_DB}/{CHECKPOINT_ID}").json()["held"] is False


def test_a_restart_resumes_from_the_checkpoint(couch, http, unique, tmp_path):
    directory = manifests(couch, tmp_path)
    with watching(couch, directory):
        sign_up(couch, http, unique("first"))
    saved = http.get(f"{couch.url}/{CHECKPOINT_DB}/{CHECKPOINT_ID}").json()["positions"]
    sent: list = []
    with watching(couch, directory, sent=sent) as log:
        log.wait(lambda r: r["action"] == "resume" and r["key"] == "_users")
        name = unique("second")
        sign_up(couch, http, name)
        wait_for(lambda: converged(couch, http, name))
    follows = [params for method, url, params in sent if url.endswith("/_users/_changes") and "feed" in params]
    assert follows[0]["since"] == saved["_users"]


@SIM_ONLY
def test_a_network_cut_is_survived_and_the_sign_up_made_meanwhile_converges(couch, http, unique, tmp_path):
    with watching(couch, manifests(couch, tmp_path)) as log:
        cut = couch.sim.faults.inject(path=r"_changes|_db_updates|_dbs_info|_bulk_docs|_security", drop=True)
        log.wait(lambda r: r["outcome"].startswith("disconnected"))
        name = unique("cut")
        sign_up(couch, http, name)
        time.sleep(0.5)
        cut.remove()
        log.wait(lambda r: r["outcome"].startswith("reconnected"))
        wait_for(lambda: converged(couch, http, name))


def test_triggered_fan_in_moves_a_document_to_analytics_with_a_one_shot_replication(couch, http, unique, tmp_path):
    name = unique("trig")
    sign_up(couch, http, name)
    database = user_database("userdb-", name)
    doc_id = f"per-user.{database}.to.analytics"
    with watching(couch, manifests(couch, tmp_path, fan_in="triggered")) as log:
        assert http.put(f"{couch.url}/{database}/note-1", json={"type": "note"}).status_code == 201
        wait_for(lambda: http.get(f"{couch.url}/analytics/note-1").status_code == 200, "note-1 in analytics",
                 ONE_SHOT_WAIT)
        log.wait(lambda r: r["action"] == "replicate" and r["key"] == doc_id and r["outcome"].startswith("completed"))
        assert http.put(f"{couch.url}/{database}/note-2", json={"type": "note"}).status_code == 201
        wait_for(lambda: http.get(f"{couch.url}/analytics/note-2").status_code == 200, "note-2 in analytics",
                 ONE_SHOT_WAIT)
    replication = http.get(f"{couch.url}/_replicator/{doc_id}").json()
    assert replication["continuous"] is False
    assert replication["couch_reconciler"] == {"created_by": "couch-reconciler"}  # the tool's, to prune later


def test_a_triggered_document_in_conflict_is_triggered_again_as_one_revision(couch, http, unique, tmp_path):
    """On a cluster CouchDB's replicator writes `completed` into its node's copy of the one-shot document while
    watch may write another copy from the same parent: two live branches (`replication_setup.conflict`). Watch's
    next trigger deletes the losing one in its own `_bulk_docs`, so the document is one revision again and a
    later flip of the winner cannot start a run nobody asked for."""
    name = unique("split")
    sign_up(couch, http, name)
    database = user_database("userdb-", name)
    doc_id = f"per-user.{database}.to.analytics"
    with watching(couch, manifests(couch, tmp_path, fan_in="triggered", select=name)):
        assert http.put(f"{couch.url}/{database}/note-1", json={"type": "note"}).status_code == 201
        wait_for(lambda: settled(couch, http, database), "the runs of note-1 to complete", ONE_SHOT_WAIT)
        conflict(couch, http, doc_id)
        # Two live branches at least: on a cluster watch may have made one itself already (as said above).
        assert len(live_leaves(couch, http, doc_id)) >= 2
        assert http.put(f"{couch.url}/{database}/note-2", json={"type": "note"}).status_code == 201
        wait_for(lambda: http.get(f"{couch.url}/analytics/note-2").status_code == 200 and settled(couch, http, database),
                 "the run of note-2 to complete", ONE_SHOT_WAIT)
    # Until every copy has the run's `completed`, `open_revs=all` lists the copies' leaves side by side.
    wait_for(lambda: [leaf.get("_replication_state") for leaf in live_leaves(couch, http, doc_id)] == ["completed"],
             "one live revision, completed", copies_agree_within(http, couch.url))


def test_a_trigger_read_back_as_the_earlier_runs_completed_revision_is_triggered_again(couch, http, unique, tmp_path,
                                                                                          monkeypatch):
    """On a cluster watch may write a trigger on a copy still holding the run before, and internal replication
    then keeps both branches, the earlier run's `completed` the winner half the time: no run starts, and
    `completed` read back is not the trigger's own. Watch says so and triggers the database again. Here the
    first read of a run in flight that answers the trigger watch wrote answers the earlier run's revision
    instead, as the winner does. The notes go to every copy: a quorum write can reach the copy `_dbs_info`
    reads after watch has compared its update_seq (fabric_db_info.erl), and no run would start at all."""
    name = unique("lost")
    sign_up(couch, http, name)
    database = user_database("userdb-", name)
    doc_id = f"per-user.{database}.to.analytics"
    with watching(couch, manifests(couch, tmp_path, fan_in="triggered", select=name)) as log:
        written_to_every_copy(http, couch.url, database, [{"_id": "note-1", "type": "note"}])
        wait_for(lambda: settled(couch, http, database), "the runs of note-1 to complete", ONE_SHOT_WAIT)
        read, answered = TriggeredFanIn._docs, []

        def marker(doc: dict) -> object:
            return (doc.get(replication_kind.TRIGGER_FIELD) or {}).get("update_seq")

        def completed() -> dict | None:  # each read may come from another copy (fabric_doc_open.erl)
            doc = http.get(f"{couch.url}/_replicator/{doc_id}").json()
            return doc if doc.get("_replication_state") == "completed" and marker(doc) is not None else None

        earlier = wait_for(completed, "a completed run of note-1 read back", ONE_SHOT_WAIT)

        def earlier_once(fan_in, ids):
            docs = read(fan_in, ids)
            written = fan_in.markers.get(doc_id)
            if (not answered and doc_id in fan_in.running and doc_id in docs
                    and marker(docs[doc_id]) == written != marker(earlier)):
                answered.append(doc_id)
                # The earlier run's `completed` as the winning branch: both grew from the same revision, so it is
                # of the trigger's generation.
                generation = docs[doc_id]["_rev"].split("-", 1)[0]
                docs[doc_id] = {**earlier, "_rev": f"{generation}-{earlier['_rev'].split('-', 1)[1]}"}
            return docs

        monkeypatch.setattr(TriggeredFanIn, "_docs", earlier_once)
        written_to_every_copy(http, couch.url, database, [{"_id": "note-2", "type": "note"}])
        log.wait(lambda r: r["action"] == "replicate" and r["key"] == doc_id
                 and r["outcome"] == "an earlier run's completed revision won over this trigger's; triggering again")
        wait_for(lambda: http.get(f"{couch.url}/analytics/note-2").status_code == 200 and settled(couch, http, database),
                 "the run of note-2 to complete", ONE_SHOT_WAIT)


def test_switching_to_triggered_fan_in_makes_the_continuous_document_one_shot(couch, http, unique, tmp_path):
    """The one-shot document has the continuous one's id: switching `fanIn` takes it over. The plan shows the
    switch as one line with a count and changes no document (apply would start them all at once); watch
    rewrites it as one of its runs, marked with the update_seq it starts at, and triggers it again on a write."""
    name = unique("switch")
    sign_up(couch, http, name)
    database = user_database("userdb-", name)
    doc_id = f"per-user.{database}.to.analytics"
    assert reconcile(couch, "apply", "--auto-approve", str(manifests(couch, tmp_path))).code == 0
    assert http.get(f"{couch.url}/_replicator/{doc_id}").json()["continuous"] is True

    plan = reconcile(couch, "plan", str(manifests(couch, tmp_path, fan_in="triggered")))
    assert f"replication/{doc_id}" not in plan.stdout, plan.stdout
    assert "continuous replication(s) of a `fanIn: triggered` entry switch to one-shot runs" in plan.stdout
    with watching(couch, tmp_path) as log:
        log.wait(lambda r: r["action"] == "trigger" and r["key"] == doc_id)
        switched = http.get(f"{couch.url}/_replicator/{doc_id}").json()
        assert switched["continuous"] is False and "update_seq" in switched["couch_reconciler_trigger"]
        assert http.put(f"{couch.url}/{database}/after-switch", json={}).status_code == 201
        wait_for(lambda: http.get(f"{couch.url}/analytics/after-switch").status_code == 200,
                 "after-switch in analytics", ONE_SHOT_WAIT)
        log.wait(lambda r: r["action"] == "replicate" and r["key"] == doc_id and r["outcome"].startswith("completed"))
    assert http.get(f"{couch.url}/_replicator/{doc_id}").json()["continuous"] is False


def scheduler_jobs(couch, http) -> list[str]:
    """The ids of the jobs in CouchDB's replication scheduler (a continuous one ends with `+continuous`,
    couch_replicator_ids.erl `replication_id/1`)."""
    return [job["id"] for job in http.get(f"{couch.url}/_scheduler/jobs", params={"limit": "10000"}).json()["jobs"]]


@SIM_ONLY
def test_a_switch_under_load_drops_the_continuous_jobs_and_runs_each_database_once(couch, http, unique, tmp_path):
    """More continuous jobs than `[replicator] max_jobs`: the switch to triggered does not wait for CouchDB to
    rotate them out (max_churn per interval). Watch deletes their documents together, so the scheduler drops
    them, then replicates each database once, never more than --max-triggered one-shot jobs at a time, and
    what was written before the switch (unreplicated by the jobs left pending) reaches analytics.
    SIM_ONLY: lowers max_jobs for the whole server."""
    names = [unique("load") for _ in range(6)]
    for name in names:
        sign_up(couch, http, name)
    databases = [user_database("userdb-", name) for name in names]
    ids = {f"per-user.{database}.to.analytics" for database in databases}
    # couch_replicator_scheduler:maybe_start_newly_added_job/2 starts a new job only while the scheduler holds
    # fewer than max_jobs jobs, itself included: 3 leaves room for 2 one-shot jobs once the continuous ones go.
    with config_changed(http, f"{couch.url}/_node/_local/_config/replicator/max_jobs", "3"):
        assert reconcile(couch, "apply", "--auto-approve", str(manifests(couch, tmp_path))).code == 0
        wait_for(lambda: len(scheduler_jobs(couch, http)) == len(names), "the continuous jobs to be scheduled")
        for index, database in enumerate(databases):
            assert http.put(f"{couch.url}/{database}/before-{index}", json={}).status_code == 201
        one_shot, sampling = [0], threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                one_shot[0] = max(one_shot[0], sum(1 for job in scheduler_jobs(couch, http)
                                                   if not job.endswith("+continuous")))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            with watching(couch, manifests(couch, tmp_path, fan_in="triggered"),
                          settings=replace(FAST, max_triggered=2)) as log:
                switch = log.wait(lambda r: r["action"] == "switch")
                assert switch["outcome"].startswith(f"{len(names)} continuous document(s)"), switch
                assert not any(job.endswith("+continuous") for job in scheduler_jobs(couch, http))
                wait_for(lambda: all(http.get(f"{couch.url}/analytics/before-{index}").status_code == 200
                                     for index in range(len(names))), "what was written before the switch", 30)
                wait_for(lambda: all(http.get(f"{couch.url}/_replicator/{doc_id}").json().get("_replication_state")
                                     == "completed" for doc_id in ids), "every one-shot run to complete", 30)
        finally:
            sampling.set()
            sampler.join(timeout=5)
    # A one-shot run can start and finish between two samples, so only the bound is asserted: every run is
    # known from watch's log below.
    assert one_shot[0] <= 2
    triggered = [r["key"] for r in log.records() if r["action"] == "trigger" and r["outcome"].startswith("one-shot")]
    assert sorted(triggered) == sorted(ids)  # each database once


def delete_user(couch, http, name: str) -> None:
    user_doc = f"{couch.url}/_users/{quote('org.couchdb.user:' + name, safe=':')}"
    assert http.delete(user_doc, params={"rev": http.get(user_doc).json()["_rev"]}).status_code == 200


@SIM_ONLY
def test_triggered_documents_stay_while_their_user_exists_and_go_with_her_under_the_continuous_rules(
        couch, http, unique, tmp_path):
    """Issue 7: "When a user is deleted, the replication docs the tool made for that user are removed".
    A live user's one-shot document is no drift to `plan`/`apply` (watch rewrites it each run) and never
    pruned; a deleted user's goes as a continuous one does: `apply` deletes it (the entry's `prune`
    defaults to true), watch only with --allow-delete. SIM_ONLY: --allow-delete prunes server-wide."""
    kept, gone_by_watch, gone_by_apply = (unique(prefix) for prefix in ("kept", "gonew", "gonea"))
    ids = {name: f"per-user.{user_database('userdb-', name)}.to.analytics"
           for name in (kept, gone_by_watch, gone_by_apply)}
    for name in ids:
        sign_up(couch, http, name)
    directory = manifests(couch, tmp_path, fan_in="triggered")
    with watching(couch, directory):  # every user database gets its first one-shot run
        wait_for(lambda: all(http.get(f"{couch.url}/_replicator/{doc_id}").status_code == 200
                             for doc_id in ids.values()))

    plan = reconcile(couch, "plan", "--detailed-exitcode", str(directory))
    assert plan.code == 0, plan.stdout  # no drift, nothing pruned while the users exist

    delete_user(couch, http, gone_by_watch)
    with watching(couch, directory) as log:
        pass
    assert http.get(f"{couch.url}/_replicator/{ids[gone_by_watch]}").status_code == 200
    assert any(r["action"] == "delete" and r["key"] == ids[gone_by_watch] and r["outcome"].startswith("skipped")
               for r in log.records())
    with watching(couch, directory, policy=Policy(allow_delete=True)) as log:
        pass
    assert http.get(f"{couch.url}/_replicator/{ids[gone_by_watch]}").status_code == 404
    assert any(r["action"] == "delete" and r["key"] == ids[gone_by_watch] and r["outcome"] == "done"
               for r in log.records())

    delete_user(couch, http, gone_by_apply)
    applied = reconcile(couch, "apply", "--auto-approve", str(directory))
    assert applied.code == 0, applied.stdout + applied.stderr
    assert f"- replication/{ids[gone_by_apply]}: deleted" in applied.stdout
    assert http.get(f"{couch.url}/_replicator/{ids[gone_by_apply]}").status_code == 404
    assert http.get(f"{couch.url}/_replicator/{ids[kept]}").status_code == 200


def test_a_sign_up_reads_only_its_own_replication_documents_by_id(couch, http, unique, tmp_path):
    """A targeted run prunes nothing, so it has no reason to read all of `_replicator` (11 pages of 1,000 at
    10,000 users, for each burst of sign-ups): it asks for the documents it wants by id, one
    `POST _replicator/_all_docs` with `keys` (CouchDB 3.x `_all_docs` API, "Sending multiple queries")."""
    for _ in range(3):
        sign_up(couch, http, unique("early"))
    name = unique("late")
    sent: list = []
    with watching(couch, manifests(couch, tmp_path), sent=sent) as log:
        mark = len(sent)
        sign_up(couch, http, name)
        wait_for(lambda: converged(couch, http, name))
        log.wait(lambda r: r["kind"] == "targeted" and name in r["key"])
        targeted_runs = sum(1 for r in log.records()[-20:] if r["kind"] == "targeted")
        reads = [method for method, url, _ in sent[mark:] if url.endswith("/_replicator/_all_docs")]  # watch's
    assert reads and all(method == "POST" for method in reads), reads  # never a GET page of every document
    assert len(reads) <= targeted_runs  # one request per targeted run, whatever the number of users


def test_watch_deletes_nothing_without_allow_delete(couch, http, tmp_path):
    """A database the tool made and no manifest lists any more stays; the skipped deletion is logged."""
    directory = manifests(couch, tmp_path, database="leftover")
    assert reconcile(couch, "apply", "--auto-approve", str(directory)).code == 0
    manifests(couch, tmp_path, database="kept")
    with watching(couch, directory) as log:
        pass
    assert http.get(f"{couch.url}/leftover").status_code == 200
    assert any(r["action"] == "delete" and r["key"] == "leftover" and r["outcome"].startswith("skipped")
               for r in log.records())


def test_a_full_reconcile_reads_security_only_where_update_seq_moved_and_still_repairs_drift(
        couch, http, unique, tmp_path):
    """A `_security` write bumps `update_seq` (docs/couchdb.md), so an unchanged seq proves an unchanged
    object: the next full reconcile skips those reads, and a hand-made change is still seen and repaired."""
    names = [unique("seq") for _ in range(3)]
    for name in names:
        sign_up(couch, http, name)
    databases = [user_database("userdb-", name) for name in names]
    sent: list = []
    fulls = lambda log: [r for r in log.records() if r["kind"] == "full" and "applied" in r["outcome"]]
    with watching(couch, manifests(couch, tmp_path), settings=replace(FAST, interval=1.0), sent=sent) as log:
        wait_for(lambda: len(fulls(log)) >= 2, timeout=20)
        # The first full reconcile's writes come back through the feeds once; after that, quiet.
        log.wait(lambda r: r["kind"] == "targeted" and all(name in r["key"] for name in names))
        mark = len(sent)
        drifted = http.get(f"{couch.url}/{databases[0]}/_security").json()
        assert http.put(f"{couch.url}/{databases[0]}/_security",
                        json={**drifted, "members": {"roles": ["_admin"], "names": []}}).status_code == 200
        count = len(fulls(log))
        wait_for(lambda: len(fulls(log)) >= count + 1, timeout=20)
        repaired = http.get(f"{couch.url}/{databases[0]}/_security").json()
        read = [url for method, url, _ in sent[mark:] if method == "GET" and url.endswith("/_security")]
    assert names[0] in repaired["members"]["names"]
    assert any(databases[0] in url for url in read)
    assert not any(database in url for url in read for database in databases[1:])


def test_without_global_changes_watch_says_what_to_do_and_scans_dbs_info(couch, http, unique, tmp_path):
    if http.head(f"{couch.url}/_global_changes").status_code == 200:
        pytest.skip("this server has _global_changes (a cluster set up with it, or made by hand): /_db_updates "
                    "answers, so the fallback to _dbs_info cannot be seen")
    name = unique("poll")
    sign_up(couch, http, name)
    database = user_database("userdb-", name)
    with watching(couch, manifests(couch, tmp_path, global_changes=False)) as log:
        assert http.delete(f"{couch.url}/{database}").status_code == 200
        wait_for(lambda: converged(couch, http, name))
    warnings = [r for r in log.records() if r["key"] == "_db_updates" and r["level"] == "warning"]
    assert len(warnings) == 1 and "PUT /_global_changes" in warnings[0]["outcome"]


def test_triggered_fan_in_runs_at_most_max_triggered_one_shot_jobs_at_once(couch, http, unique, tmp_path):
    """Every user database needs a first run (there is no document yet); with max_triggered 1 they go one
    after another, and each document reaches analytics."""
    names = [unique("bound") for _ in range(4)]
    for name in names:
        sign_up(couch, http, name)
    databases = [user_database("userdb-", name) for name in names]
    with watching(couch, manifests(couch, tmp_path, fan_in="triggered"),
                  settings=replace(FAST, max_triggered=1)) as log:
        for index, database in enumerate(databases):
            assert http.put(f"{couch.url}/{database}/doc-{index}", json={}).status_code == 201
        wait_for(lambda: all(http.get(f"{couch.url}/analytics/doc-{index}").status_code == 200
                             for index in range(len(databases))), "every document in analytics",
                 len(databases) * ONE_SHOT_WAIT)
    running, most = 0, 0
    for record in log.records():
        if record["action"] == "trigger" and record["outcome"].startswith("one-shot"):
            running += 1
        elif record["action"] == "replicate":
            running -= 1
        most = max(most, running)
    assert most == 1


def test_a_write_during_a_catch_up_is_replicated_ahead_of_the_databases_the_catch_up_found_behind(
        couch, http, unique, tmp_path):
    """A full reconcile (a restart, a mode switch: at 10,000 users, thousands of databases at once) finds every
    database without a run behind; what a user writes meanwhile does not wait for all of them: it is
    replicated next, and the catch-up goes on with each of the others once."""
    group = unique("ahead")
    names = [f"{group}-{index}" for index in range(8)]
    for name in names:
        sign_up(couch, http, name)
    databases = [user_database("userdb-", name) for name in names]
    directory = manifests(couch, tmp_path, fan_in="triggered", select=f"{group}-.*")
    # Applied before watch starts, so that its full reconcile writes nothing into them: every database is behind
    # because it has never been replicated, none because watch heard of a write.
    assert reconcile(couch, "apply", "--auto-approve", str(directory)).code == 0
    written = databases[len(databases) // 2]
    with watching(couch, directory, settings=replace(FAST, max_triggered=1)) as log:
        assert http.put(f"{couch.url}/{written}/{group}-note", json={"type": "note"}).status_code == 201
        wait_for(lambda: http.get(f"{couch.url}/analytics/{group}-note").status_code == 200,
                 "the note in analytics", 3 * ONE_SHOT_WAIT)
        # Each database by its own `completed`: the one carrying the note runs twice (its catch-up run and the
        # note's), and a cluster may log a superseded run as `replicate` too.
        every = {f"per-user.{db}.to.analytics" for db in databases}
        wait_for(lambda: every <= {r["key"] for r in log.records()
                                   if r["action"] == "replicate" and r["outcome"].startswith("completed")},
                 "every database replicated", len(databases) * ONE_SHOT_WAIT)
    triggered = [r["key"] for r in log.records() if r["action"] == "trigger" and r["outcome"].startswith("one-shot")]
    carrying = f"per-user.{written}.to.analytics"
    last = max(index for index, key in enumerate(triggered) if key == carrying)
    assert last < len(databases) - 1, triggered  # the run carrying the note came before the catch-up ended
    others = [key for key in triggered if key != carrying]
    assert sorted(others) == sorted(f"per-user.{db}.to.analytics" for db in databases if db != written)


def replicator_config(directory: Path, max_jobs: str) -> None:
    write(directory, "config.yaml", f"""
        apiVersion: reconciler/v1
        kind: NodeConfig
        metadata: {{name: replicator-limits}}
        spec:
          section: replicator
          values: {{max_jobs: {max_jobs}}}
        """)


def max_jobs(couch, http) -> str:
    return http.get(f"{couch.url}/_node/_local/_config/replicator/max_jobs").json()


def full_reconciles(log: Lines) -> int:
    return sum(1 for r in log.records() if r["kind"] == "full" and r["outcome"] != "started")


def test_a_manifest_change_made_while_watch_runs_is_applied_and_not_reverted(couch, http, tmp_path):
    """The GitOps case: the folder watch reads is updated by a deployment (git pull). The next full
    reconcile reads it again and sets the new value; the ones after it keep it (watch reading the
    manifests only at start would set the old value back)."""
    directory = manifests(couch, tmp_path)
    replicator_config(directory, "500")
    with watching(couch, directory, settings=replace(FAST, interval=0.5)) as log:
        assert max_jobs(couch, http) == "500"
        assert not any(r["kind"] == "manifests" for r in log.records())  # unchanged: nothing said
        replicator_config(directory, "1000")
        log.wait(lambda r: r["kind"] == "manifests" and "changed since the last full reconcile" in r["outcome"])
        wait_for(lambda: max_jobs(couch, http) == "1000")
        count = full_reconciles(log)
        wait_for(lambda: full_reconciles(log) >= count + 2)
        assert max_jobs(couch, http) == "1000"
    changed = [r for r in log.records() if r["kind"] == "manifests"]
    assert len(changed) == 1 and changed[0]["outcome"].startswith("changed since the last full reconcile: 1 ")


def test_invalid_manifests_change_nothing_until_they_are_valid_again(couch, http, unique, tmp_path):
    """A folder made invalid while watch runs: every diagnostic is logged as `reconcile validate` prints
    it, full reconciles are skipped (a value set by hand is not repaired), sign-ups wait (held, said
    once), and once the folder is valid again the next full reconcile applies it and sign-ups resume."""
    directory = manifests(couch, tmp_path)
    replicator_config(directory, "500")
    with watching(couch, directory, settings=replace(FAST, interval=0.5)) as log:
        write(directory, "config.yaml", """
            apiVersion: reconciler/v1
            kind: NodeConfig
            metadata: {name: replicator-limits}
            spec:
              section: replicator
              vaules: {max_jobs: 1000}
            """)
        validate = reconcile(couch, "validate", str(directory))
        expected = [line for line in validate.stderr.splitlines() if line.startswith(f"{directory}/")]
        assert validate.code == 1 and expected and "config.yaml:" in expected[0]
        log.wait(lambda r: r["kind"] == "full" and r["outcome"].startswith("skipped"))
        assert http.put(f"{couch.url}/_node/_local/_config/replicator/max_jobs", json="42").status_code == 200
        name = unique("held")
        sign_up(couch, http, name)
        count = full_reconciles(log)
        wait_for(lambda: full_reconciles(log) >= count + 2)
        assert max_jobs(couch, http) == "42"
        assert http.get(f"{couch.url}/{user_database('userdb-', name)}").status_code == 404
        logged = [r["outcome"] for r in log.records() if r["kind"] == "manifests" and r["level"] == "error"]
        assert set(expected) <= set(logged)
        replicator_config(directory, "600")
        log.wait(lambda r: r["kind"] == "manifests" and r["outcome"].startswith("valid again"))
        wait_for(lambda: max_jobs(couch, http) == "600" and converged(couch, http, name))
    held = [r for r in log.records() if r["kind"] == "targeted" and r["outcome"].startswith("held")]
    assert len(held) == 1


def test_a_stream_of_events_does_not_postpone_a_burst_past_debounce_max(couch, http, unique, tmp_path):
    """Sign-ups arriving every 0.2 s, each within the 0.5 s quiet period of the one before: the first is
    converged while they still arrive, since the burst is acted upon `debounce_max` after its first event."""
    settings = replace(FAST, debounce=0.5, debounce_max=1.0)
    names = [unique(f"stream{index}") for index in range(40)]
    with watching(couch, manifests(couch, tmp_path), settings=settings):
        for index, name in enumerate(names):
            sign_up(couch, http, name)
            if converged(couch, http, names[0]):
                break
            time.sleep(0.2)
        # 40 sign-ups take 8 s or more: the first converged long before the last one arrived.
        assert index < len(names) - 1, "the first sign-up waited until the stream of sign-ups ended"
        wait_for(lambda: all(converged(couch, http, name) for name in names[:index + 1]))


def test_a_refused_full_reconcile_holds_what_it_concerns_and_sign_ups_still_converge(couch, http, unique, tmp_path):
    """The share thresholds refuse a full plan that rewrites analytics' security: watch leaves that object
    alone, and a user signing up meanwhile still gets her database, security, role and replication."""
    directory = manifests(couch, tmp_path)
    assert reconcile(couch, "apply", "--auto-approve", str(directory)).code == 0
    text = (directory / "watch.yaml").read_text()
    declared = "metadata: {name: analytics}\nspec: {}"
    assert declared in text
    # Public: the admin-only members roles go, a rewrite (an update that only adds to lists is growth, never refused).
    (directory / "watch.yaml").write_text(text.replace(declared, "metadata: {name: analytics}\n"
                                                       "spec: {security: {public: true}}"))
    before = http.get(f"{couch.url}/analytics/_security").json()
    name = unique("refused")
    # Every update is over a share of 0: whatever else the server holds, this plan is refused.
    with watching(couch, directory, policy=Policy(max_update_share=0.0, min_existing=1)) as log:
        refusal = log.wait(lambda r: r["kind"] == "full" and r["outcome"].startswith("refused:"))
        assert "security" in refusal["outcome"], refusal
        sign_up(couch, http, name)
        wait_for(lambda: converged(couch, http, name))
    assert http.get(f"{couch.url}/analytics/_security").json() == before


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and labels (parsed by prometheus-client)."""
    text = requests.get(url, timeout=5).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_are_served_while_watch_converges_sign_ups(couch, http, unique, tmp_path):
    """`reconcile watch --metrics-port` serves /metrics (Prometheus text format) from its start: events handled,
    reconciles by scope and outcome with their durations, users not converged yet, feed positions."""
    directory = manifests(couch, tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "COUCHDB_URL": couch.url, "COUCHDB_USER": couch.user, "COUCHDB_PASSWORD": couch.password}
    process = subprocess.Popen([sys.executable, "-c", "from couch_reconciler.cli import main; main()", "watch",
                                "--interval", "60", "--debounce", "0.1", "--metrics-port", str(port), str(directory)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        lines_until(process, applied_full_reconcile)
        full = scrape(url)
        assert full[("couch_reconciler_watch_reconciles_total", (("outcome", "applied"), ("scope", "full")))] == 1
        assert full[("couch_reconciler_watch_reconcile_seconds_count", (("scope", "full"),))] == 1
        names = [unique("metrics") for _ in range(3)]
        for name in names:
            sign_up(couch, http, name)
        wait_for(lambda: all(converged(couch, http, name) for name in names))
        samples = wait_for(lambda: (found := scrape(url)).get(
            ("couch_reconciler_watch_reconciles_total", (("outcome", "applied"), ("scope", "targeted"))), 0) >= 1
            and found)
        assert samples[("couch_reconciler_watch_events_total", (("feed", "_users"), ("type", "changed")))] >= 3
        assert samples[("couch_reconciler_watch_reconcile_seconds_count", (("scope", "targeted"),))] >= 1
        assert samples[("couch_reconciler_watch_changes_total", (("scope", "targeted"),))] >= 3 * 3  # db, security, role...
        assert ("couch_reconciler_watch_users_not_converged", ()) in samples
        assert samples[("couch_reconciler_watch_feed_position", (("feed", "_users"), ("state", "received")))] > 0
        assert ("couch_reconciler_watch_fan_in_delay_seconds_count", ()) in samples
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def settled(couch, http, database: str) -> bool:
    """The last one-shot run watch triggered for `database` completed, and nothing was written there since its
    trigger. A real CouchDB starts a one-shot job seconds after its document is written, so a write made meanwhile
    travels with the run, yet watch cannot know it did and triggers once more. "Nothing since" is the feed's to
    say, not the update_seq's number: on a cluster each read takes a shard range from whichever copy answers
    first (fabric_db_info.erl) and copies count differently, while `_changes?since=` resumes each range at the
    copy the seq names (fabric_view_changes.erl)."""
    run = http.get(f"{couch.url}/_replicator/per-user.{database}.to.analytics").json()
    started = (run.get(replication_kind.TRIGGER_FIELD) or {}).get("update_seq")
    if run.get("_replication_state") != "completed" or started is None:
        return False
    since = http.get(f"{couch.url}/{database}/_changes", params={"since": started, "limit": "1"})
    return since.status_code == 200 and not since.json()["results"]


def test_on_a_cluster_one_write_is_one_run_though_update_seq_reads_differ(cluster, unique, tmp_path, monkeypatch):
    """On a cluster two reads of a database's update_seq with no write between them can differ after its
    number (each shard range is read from whichever copy answers first): watch compares the number, so a write
    is replicated once, however often its full reconcile (here every second) reads the database again."""
    http = cluster.session()
    monkeypatch.setenv("WATCH_REPLICATION_PASSWORD", cluster.password)  # the cluster's admin, not `couch`'s
    name = unique("cluster")
    sign_up(cluster, http, name)
    database = user_database("userdb-", name)
    interval = 1.0
    with watching(cluster, manifests(cluster, tmp_path, fan_in="triggered"),
                  settings=replace(FAST, interval=interval)) as log:
        assert http.put(f"{cluster.url}/{database}/note", json={}).status_code == 201
        wait_for(lambda: http.get(f"{cluster.url}/analytics/note").status_code == 200, "note in analytics",
                 ONE_SHOT_WAIT)
        wait_for(lambda: settled(cluster, http, database), "the last one-shot run to complete", ONE_SHOT_WAIT)

        def runs() -> int:
            return sum(1 for r in log.records() if r["action"] == "trigger" and database in r["key"])

        before = runs()
        time.sleep(4 * interval)  # four full reconciles, each reading every user database's update_seq again
        assert runs() == before, [r for r in log.records() if database in r["key"]]


@contextmanager
def first_run_completed(cluster, unique, tmp_path, monkeypatch, prefix: str, settings: Settings = FAST):
    """Watch over one user of `cluster` with a triggered fan-in, after the one-shot run of her first note
    completed: (the session, her database, the run's document id, watch's log, the `completed` revision read
    back with its `_revisions`)."""
    http = cluster.session()
    monkeypatch.setenv("WATCH_REPLICATION_PASSWORD", cluster.password)
    name = unique(prefix)
    sign_up(cluster, http, name)
    database = user_database("userdb-", name)
    doc_id = f"per-user.{database}.to.analytics"
    with watching(cluster, manifests(cluster, tmp_path, fan_in="triggered", select=name), settings=settings) as log:
        written_to_every_copy(http, cluster.url, database, [{"_id": "note-1"}])
        wait_for(lambda: settled(cluster, http, database), "the run of note-1 to complete", ONE_SHOT_WAIT)
        log.wait(lambda r: r["action"] == "replicate" and r["key"] == doc_id, ONE_SHOT_WAIT)

        def completed() -> dict | None:  # each read may come from another copy (fabric_doc_open.erl)
            doc = http.get(f"{cluster.url}/_replicator/{doc_id}", params={"revs": "true"}).json()
            return doc if doc.get("_replication_state") == "completed" else None

        yield http, database, doc_id, log, wait_for(completed, "the completed run of note-1 read back", ONE_SHOT_WAIT)


def second_note_replicated(cluster, http, database: str, log: Lines) -> int:
    """Write note-2 and wait for its run to complete; how many lines watch had logged before the write."""
    lines_before = len(log.records())
    written_to_every_copy(http, cluster.url, database, [{"_id": "note-2"}])
    wait_for(lambda: http.get(f"{cluster.url}/analytics/note-2").status_code == 200
             and settled(cluster, http, database), "the run of note-2 to complete", ONE_SHOT_WAIT)
    return lines_before


def one_quiet_trigger(log: Lines, lines_before: int, doc_id: str) -> None:
    """Since then, watch triggered the run once and logged no warning nor error about it (a conflict's retry,
    an earlier run's revision taken for the winner)."""
    logged = [r for r in log.records()[lines_before:]
              if r["key"] == doc_id or (r["key"], r["action"]) == ("", "trigger")]  # a conflict's retry names none
    assert [r["action"] for r in logged if r["action"] == "trigger"] == ["trigger"], logged
    assert not [r for r in logged if r["level"] != "info"], logged


def test_a_read_from_a_copy_behind_watchs_trigger_neither_ends_its_run_nor_starts_another(
        cluster, unique, tmp_path, monkeypatch):
    """Each read of a `_replicator` document takes the copy that answers first (fabric_doc_open.erl), and a
    quorum write reaches the last copy later: for a while after watch triggers a run, a read may answer the
    revision before, the earlier run's `completed`. Such a read is older than the trigger (a lower revision
    generation), so watch neither takes it for this run's end nor replicates the database again from the
    earlier run's seq. Here every read watch makes in the 3 s after its trigger answers from such a copy."""
    interval = 1.0
    with first_run_completed(cluster, unique, tmp_path, monkeypatch, "behind",
                             replace(FAST, interval=interval)) as (http, database, doc_id, log, earlier):
        read, behind_until = TriggeredFanIn._docs, []

        def generation(doc: dict) -> int:
            return int(doc["_rev"].split("-", 1)[0])

        def from_a_copy_behind(fan_in, ids):
            docs = read(fan_in, ids)
            if doc_id in docs and generation(docs[doc_id]) > generation(earlier):  # note-2's trigger is written
                behind_until.append(behind_until[0] if behind_until else time.monotonic() + 3.0)
                if time.monotonic() < behind_until[0]:
                    docs[doc_id] = earlier
            return docs

        monkeypatch.setattr(TriggeredFanIn, "_docs", from_a_copy_behind)
        lines_before = second_note_replicated(cluster, http, database, log)
        wait_for(lambda: behind_until and time.monotonic() > behind_until[0] + 4 * interval,
                 "four full reconciles after the reads from a copy behind", ONE_SHOT_WAIT)
    one_quiet_trigger(log, lines_before, doc_id)


def test_a_trigger_planned_on_a_copy_behind_waits_for_a_read_of_the_latest_revision(
        cluster, unique, tmp_path, monkeypatch):
    """CouchDB's replicator writes a run's `completed` into one copy (couch_replicator_docs.erl `save_rep_doc`),
    and a read takes the copy that answers first (fabric_doc_open.erl): the plan of the next trigger may read the
    revision before `completed`. Written on it, the trigger would be a branch beside `completed`, the loser or
    the winner (couch_doc:to_doc_info). Watch saw `completed` end the run, so it plans again at its next tick:
    the trigger is written once, on the latest revision, and leaves no conflict."""
    with first_run_completed(cluster, unique, tmp_path, monkeypatch,
                             "planned") as (http, database, doc_id, log, completed):
        revisions = completed["_revisions"]

        def revision_before() -> dict | None:  # a copy that lacks it answers 404 (fabric_doc_open.erl, r=1 here)
            answer = http.get(f"{cluster.url}/_replicator/{doc_id}",
                              params={"rev": f"{revisions['start'] - 1}-{revisions['ids'][1]}"})
            return answer.json() if answer.status_code == 200 else None

        before = wait_for(revision_before, "the revision before `completed` read back", ONE_SHOT_WAIT)
        read, answered = replication_kind.replicator_docs_by_id, []

        def from_a_copy_behind_once(session, ids):
            docs = read(session, ids)
            if doc_id in docs and not answered:
                answered.append(doc_id)
                docs[doc_id] = before
            return docs

        monkeypatch.setattr(replication_kind, "replicator_docs_by_id", from_a_copy_behind_once)
        lines_before = second_note_replicated(cluster, http, database, log)
    assert answered, "the plan never read the trigger's document"
    one_quiet_trigger(log, lines_before, doc_id)
    assert "_conflicts" not in http.get(f"{cluster.url}/_replicator/{doc_id}", params={"conflicts": "true"}).json()


def databases_waiting(plan_text: str) -> int:
    """How many user databases the plan's stale fan-in warning counts (0 without the warning)."""
    found = re.search(r"fanIn triggered into analytics is stale: (\d+) user database", plan_text)
    return int(found.group(1)) if found else 0


def test_without_watch_the_plan_says_the_triggered_fan_in_is_stale_and_since_when(couch, http, unique, tmp_path,
                                                                                    monkeypatch):
    """A user database written after its last one-shot run, with no watch to start the next: the plan says
    the triggered fan-in is stale, how many databases wait and when the oldest run ended."""
    monkeypatch.setattr(replication_kind, "STALE_AFTER", 0.0)  # a run that ended just now counts already
    name = unique("stale")
    sign_up(couch, http, name)
    database = user_database("userdb-", name)
    directory = manifests(couch, tmp_path, fan_in="triggered")
    with watching(couch, directory):
        assert http.put(f"{couch.url}/{database}/before", json={}).status_code == 201
        wait_for(lambda: http.get(f"{couch.url}/analytics/before").status_code == 200)
        wait_for(lambda: settled(couch, http, database), "watch's last one-shot run to complete, nothing "
                 "written since", ONE_SHOT_WAIT)
    # Other tests' user databases on the same server may wait too: this one's write adds exactly one.
    waiting_before = databases_waiting(reconcile(couch, "plan", str(directory)).stdout)
    written_to_every_copy(http, couch.url, database, [{"_id": "after"}])
    # The plan reads the one-shot document as the copies it asks hold it: within copies_agree_within, `completed`.
    plan = wait_for(lambda: (run := reconcile(couch, "plan", str(directory))) and
                    databases_waiting(run.stdout) == waiting_before + 1 and run,
                    f"the plan to count {waiting_before + 1} database(s) waiting", copies_agree_within(http, couch.url))
    assert "is it running?" in plan.stdout, plan.stdout
    assert "(the oldest ended 20" in plan.stdout, plan.stdout


def failing_once(real, when=lambda *args: True):
    """`real`, except that its first call for which `when(*args)` holds raises what a defect would."""
    failed: list[bool] = []

    def call(*args, **kwargs):
        if not failed and when(*args):
            failed.append(True)
            raise ZeroDivisionError("division by zero")
        return real(*args, **kwargs)

    return call


def test_a_defect_in_a_targeted_reconcile_is_one_log_line_and_the_sign_up_still_converges(
        couch, http, unique, tmp_path, monkeypatch):
    """An exception no one expected (a defect of the tool, here raised by the narrowing of her sign-up's plan) ends
    neither watch nor the burst: one error line names it, and the retry converges her."""
    name = unique("defect")
    monkeypatch.setattr(loop, "narrowed", failing_once(loop.narrowed, lambda state, users, databases: name in users))
    with watching(couch, manifests(couch, tmp_path)) as log:
        sign_up(couch, http, name)
        failed = log.wait(lambda r: r["kind"] == "targeted" and "ZeroDivisionError" in r["outcome"])
        wait_for(lambda: converged(couch, http, name), f"{name} converged by the retry", 60.0, 0.2)
    assert failed["level"] == "error" and name in failed["key"]
    assert failed["outcome"].startswith("failed: unexpected ZeroDivisionError: division by zero")


def test_a_defect_between_reconciles_is_one_log_line_and_watch_goes_on(couch, http, unique, tmp_path, monkeypatch):
    """The same for what watch does between reconciles (here the fan-in's tick): logged, and the loop goes on."""
    monkeypatch.setattr(TriggeredFanIn, "tick", failing_once(TriggeredFanIn.tick))
    with watching(couch, manifests(couch, tmp_path)) as log:
        failed = log.wait(lambda r: r["kind"] == "loop" and "ZeroDivisionError" in r["outcome"])
        name = unique("after")
        sign_up(couch, http, name)
        wait_for(lambda: converged(couch, http, name), f"{name} converged after the defect", 60.0, 0.2)
    assert failed["level"] == "error" and failed["outcome"].endswith("please report this line); going on")


def test_status_says_whether_watch_runs_and_since_when_a_triggered_fan_in_is_stale(couch, http, unique, tmp_path):
    """While watch runs, status says so and the fan-in is healthy; once it stopped, a write waits for nothing:
    status counts the database, says since when (the later of its last run's end and watch's last sign) and
    why, and exits 2 once that is older than --stale-threshold."""
    name = unique("status")
    sign_up(couch, http, name)
    database = user_database("userdb-", name)
    directory = manifests(couch, tmp_path, fan_in="triggered", select=name)
    env = {"WATCH_REPLICATION_PASSWORD": couch.password}
    with watching(couch, directory):
        assert http.put(f"{couch.url}/{database}/before", json={}).status_code == 201
        wait_for(lambda: http.get(f"{couch.url}/analytics/before").status_code == 200)
        wait_for(lambda: settled(couch, http, database), "watch's last one-shot run to complete, nothing "
                 "written since", ONE_SHOT_WAIT)
        running = reconcile(couch, "status", str(directory), env=env)
    assert running.code == 0, running.stdout
    assert "  users         1: 1 with a replication, 0 without" in running.stdout
    assert "  watch         running (" in running.stdout
    assert not any("_dbs_info" in url for url in running.paths())  # watch's queue says what waits: no database opened

    written_to_every_copy(http, couch.url, database, [{"_id": "after"}])
    undelivered = ("  undelivered   1 user database(s) hold changes not delivered yet; the oldest change written at "
                   "or after 20")
    # Status reads the one-shot document as the copies it asks hold it: within copies_agree_within, `completed`.
    stopped = wait_for(lambda: (run := reconcile(couch, "status", str(directory), env=env)) and
                       undelivered in run.stdout and run, "status to count the write undelivered",
                       copies_agree_within(http, couch.url))
    assert stopped.code == 0, stopped.stdout  # stale for less than the default 300 s
    assert "  watch         not running (last seen " in stopped.stdout
    assert "no `reconcile watch` runs to deliver it" in stopped.stdout
    strict = wait_for(lambda: (run := reconcile(couch, "status", "--stale-threshold", "0", str(directory),
                                                env=env)).code == 2 and run, "status to count the change stale")
    assert "per-user -> analytics: stale: a change written at or after 20" in strict.stdout
