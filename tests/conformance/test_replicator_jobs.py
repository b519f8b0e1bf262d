"""`_replicator` documents that really replicate: one-shot and continuous jobs, filters, checkpoints,
`_replication_state` written back, `/_scheduler/docs` and `/_scheduler/jobs`.

Every case talks HTTP only, so it runs against couchsim and (COUCHDB_URL) a real CouchDB. Endpoint URLs are
the ones the *server* uses to reach itself (facts, "Replication"): COUCHDB_REPLICATION_URL when the server
sees itself under another address (a container), else the test's own URL.

Sources: src/docs/src/replication/replicator.rst ("Basics", "Replication states", "Documents describing the
same replication", "Specifying Usernames and Passwords"); couch_replicator_docs.erl (update_doc_completed/3,
update_failed/3: `_replication_state`, `_replication_state_time`, `_replication_stats`,
`_replication_state_reason`); couch_replicator.erl (info_from_doc/2: what `/_scheduler/docs` shows for a
completed doc); couch_replicator_httpd.erl (`/_scheduler/jobs` paging, `/_scheduler/docs/{db}/{docid}`);
couch_replicator_auth_session.erl and couch_replicator_scheduler_job.erl (crash reasons); protocol.rst
(checkpoints in `_local/<replication id>` on both sides).
"""

import os
import re

import pytest

from behaviour_fixtures import db_url
from cleanup import delete_everywhere

# A job starts as soon as CouchDB's scheduler has room (couch_replicator_scheduler.erl
# maybe_start_newly_added_job/2), yet its start, run and state write-back share the server's cores: a real 3.4.3
# on 2 loaded cores took more than 15 s to show a new job `running`. The bound only limits a failing wait.
JOB_WAIT = 60.0


@pytest.fixture
def url(server):
    """How the server reaches a database of its own."""
    base = os.environ.get("COUCHDB_REPLICATION_URL", server.url).rstrip("/")
    return lambda db: f"{base}/{db}"


@pytest.fixture
def rep_docs(server, new_name):
    """rep_docs() -> a fresh `_replicator` doc id; every one is deleted after the case (which stops its job)."""
    made = []

    def make():
        made.append(new_name("rep"))
        return made[-1]

    yield make
    # Every branch: on a cluster the replicator's state write-back can leave one beside the case's (delete_everywhere).
    delete_everywhere(server.admin.http, server.admin.base, "_replicator", made)


def endpoint(url, name, password):
    return {"url": url, "auth": {"basic": {"username": name, "password": password}}}


def as_admin(server, url, db, password=None):
    return endpoint(url(db), server.admin_name, password or server.admin_password)


def scheduler_doc(server, doc_id):
    response = server.admin.get(f"/_scheduler/docs/_replicator/{doc_id}")
    return response.json() if response.status_code == 200 else None


def doc_in(server, db, doc_id):
    response = server.admin.get(db_url(db, doc_id))
    return response.json() if response.status_code == 200 else None


def test_one_shot_replication_copies_every_revision_and_writes_completed(server, new_db, new_name, url, rep_docs,
                                                                         poll):
    """A one-shot job replicates a snapshot, then CouchDB writes `_replication_state: completed`,
    `_replication_state_time` and `_replication_stats` into the doc (update_doc_completed/3), and
    `/_scheduler/docs` reports it from the doc (info_from_doc/2: state completed, stats without start_time)."""
    source, target = new_db(), new_name("target")
    revs = {f"d{i}": server.admin.put(db_url(source, f"d{i}"), json={"n": i}).json()["rev"] for i in range(3)}
    doc_id = rep_docs()
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target), "create_target": True}
    assert server.admin.put(db_url("_replicator", doc_id), json=doc).status_code == 201
    stored = poll(lambda: (d := doc_in(server, "_replicator", doc_id)) and d.get("_replication_state") == "completed"
                  and d, timeout=JOB_WAIT, what="one-shot replication completed")
    assert stored["_replication_state_time"].endswith("Z")
    assert stored["_replication_stats"]["docs_written"] == 3
    assert stored["_replication_stats"]["doc_write_failures"] == 0
    assert {d: doc_in(server, target, d)["_rev"] for d in revs} == revs
    # From the doc as the answering node reads it: on a cluster, a copy of `_replicator` that has the update yet.
    summary = poll(lambda: (s := scheduler_doc(server, doc_id)) and s["state"] == "completed" and s, timeout=JOB_WAIT,
                   what="/_scheduler/docs to read the completed doc")
    assert summary["info"]["docs_written"] == 3 and "start_time" not in summary["info"]
    server.admin.delete(db_url(target))


def test_continuous_replication_keeps_delivering_and_shows_running(server, new_db, url, rep_docs, poll):
    """A continuous job follows the source's changes (`running` in `/_scheduler/docs`, listed with its
    history in `/_scheduler/jobs`); its doc is never marked completed."""
    source, target = new_db(), new_db()
    doc_id = rep_docs()
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target), "continuous": True}
    assert server.admin.put(db_url("_replicator", doc_id), json=doc).status_code == 201
    running = poll(lambda: (s := scheduler_doc(server, doc_id)) and s["state"] == "running" and s, timeout=JOB_WAIT,
                   what="job running")
    assert running["id"].endswith("+continuous")
    assert running["source"] == url(source) + "/" and running["target"] == url(target) + "/"
    assert running["error_count"] == 0
    server.admin.put(db_url(source, "late"), json={"written": "after the job started"})
    copied = poll(lambda: doc_in(server, target, "late"), timeout=JOB_WAIT, what="late doc in target")
    assert copied["written"] == "after the job started"
    jobs = server.admin.get("/_scheduler/jobs").json()
    [job] = [j for j in jobs["jobs"] if j["doc_id"] == doc_id]
    assert job["id"] == running["id"] and job["database"] == "_replicator"
    assert [event["type"] for event in job["history"]][-2:] == ["started", "added"]
    assert server.admin.get(f"/_scheduler/jobs/{running['id']}").json()["doc_id"] == doc_id
    # A running job is also an `_active_tasks` entry of type replication (couch_replicator_scheduler_job). Its
    # `database` is the shard the document lives in (`Rep#rep.db_name`, which couch_multidb_changes sets from
    # the shard; only /_scheduler/* answers through couch_replicator_httpd_util:update_db_name/1).
    [task] = [t for t in server.admin.get("/_active_tasks").json()
              if t.get("type") == "replication" and t.get("doc_id") == doc_id]
    assert (task["replication_id"], task["continuous"]) == (running["id"], True)
    assert re.fullmatch(r"shards/[0-9a-f]{8}-[0-9a-f]{8}/_replicator\.[0-9]+", task["database"]), task["database"]
    missing = server.admin.get("/_scheduler/jobs/0123456789abcdef0123456789abcdef+continuous")
    assert (missing.status_code, missing.json()) == (404, {"error": "not_found", "reason": "missing"})
    assert "_replication_state" not in doc_in(server, "_replicator", doc_id)


def test_a_users_doc_reaches_the_analytics_database_through_a_replication_account(
        server, new_db, new_user, url, rep_docs, poll):
    """The reference architecture: a user writes into her own database (peruser-style security: she is its
    member and admin); a continuous job authenticated as a non-admin replication account that may read her
    database and write the analytics database carries the doc over. couch_replicator_auth_session.erl: the
    job signs in to `_session` with the auth.basic credentials and uses the cookie."""
    alice, replicator = new_user(), new_user()
    userdb = new_db("userdb", security={"members": {"roles": ["_admin"], "names": [alice.name, replicator.name]},
                                        "admins": {"roles": ["_admin"], "names": [alice.name]}})
    analytics = new_db("analytics", security={"members": {"roles": ["_admin"], "names": [replicator.name]},
                                              "admins": {"roles": ["_admin"]}})
    doc_id = rep_docs()
    doc = {"source": endpoint(url(userdb), replicator.name, replicator.password),
           "target": endpoint(url(analytics), replicator.name, replicator.password), "continuous": True}
    assert server.admin.put(db_url("_replicator", doc_id), json=doc).status_code == 201
    assert alice.client.put(db_url(userdb, "visit-1"), json={"type": "visit", "page": "/home"}).status_code == 201
    copied = poll(lambda: doc_in(server, analytics, "visit-1"), timeout=JOB_WAIT, what="visit in analytics")
    assert copied["page"] == "/home"
    assert scheduler_doc(server, doc_id)["state"] == "running"
    # The dashboard's view on analytics counts it.
    ddoc = {"views": {"visits": {"map": "function (doc) { if (doc.type === 'visit') emit(doc.page, 1); }",
                                 "reduce": "_count"}}}
    assert server.admin.put(db_url(analytics, "_design/stats"), json=ddoc).status_code == 201
    rows = server.admin.get(db_url(analytics, "_design/stats", "_view", "visits")).json()["rows"]
    assert rows == [{"key": None, "value": 1}]


def test_a_running_job_reports_its_figures_from_its_first_checkpoint(server, new_db, url, rep_docs, poll):
    """A job's `info` in /_scheduler/docs is what couch_replicator_scheduler_job:update_task/1 last reported:
    nothing (null, couch_replicator_utils:ejson_state_info/1 of no stats) until it has written a batch or
    reached its first checkpoint, `checkpoint_interval` ms after it started; then the figures. The source is
    empty, so only the checkpoint reports, and `changes_pending` is null: get_pending_count/1 asks the source
    from the highest seq the job has done, still the number 0, and a clustered database's `update_seq` is a
    string, so the answer is null. Once the job has replicated a document, it is the source's `pending`, asked
    again at most every `connection_timeout` ms (the count it got is reported until then)."""
    source, target = new_db(), new_db()
    doc_id = rep_docs()
    interval_ms = timeout_ms = 5000
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target), "continuous": True,
           "checkpoint_interval": interval_ms, "connection_timeout": timeout_ms}
    assert server.admin.put(db_url("_replicator", doc_id), json=doc).status_code == 201
    running = poll(lambda: (s := scheduler_doc(server, doc_id)) and s["state"] == "running" and s, timeout=JOB_WAIT,
                   what="job running")
    assert running["info"] is None
    reported = poll(lambda: (s := scheduler_doc(server, doc_id)) and s["info"], timeout=interval_ms / 1000 + 15,
                    what=f"the job's figures at its first checkpoint ({interval_ms} ms after it started)")
    assert (reported["changes_pending"], reported["docs_written"]) == (None, 0)
    assert server.admin.put(db_url(source, "first"), json={}).status_code == 201
    moved = poll(lambda: (s := scheduler_doc(server, doc_id)) and s["info"]["changes_pending"] is not None
                 and s["info"], timeout=(interval_ms + timeout_ms) / 1000 + 15,
                 what=f"changes_pending asked again ({timeout_ms} ms after the last time)")
    assert (moved["changes_pending"], moved["docs_written"]) == (0, 1)


def test_a_wrong_password_shows_crashing_with_a_replication_auth_error(server, new_db, new_user, url, rep_docs,
                                                                       poll):
    """Facts: a wrong password -> `crashing` with a `replication_auth_error`. The reason is the Erlang term
    couch_replicator_auth_session gives: {session_request_unauthorized, SessionUrl, User}, as `~p` prints it
    (couch_replicator_utils:rep_error_to_binary/1 -> couch_util:to_binary/1): longer than a line, so broken
    after the tag, the rest indented by 4; error_count counts consecutive crashes
    (couch_replicator_scheduler:job_summary/2). The failed logins are a user's of the case's own: five lock
    an account out for 5 minutes ([chttpd_auth_lockout]), which must never be the server admin's."""
    source, target = new_db(), new_db()
    doc_id = rep_docs()
    reader = new_user()
    doc = {"source": endpoint(url(source), reader.name, "wrong-password"), "target": as_admin(server, url, target),
           "continuous": True}
    assert server.admin.put(db_url("_replicator", doc_id), json=doc).status_code == 201
    crashing = poll(lambda: (s := scheduler_doc(server, doc_id)) and s["state"] == "crashing" and s, timeout=JOB_WAIT,
                    what="job crashing")
    assert crashing["error_count"] >= 1
    error = crashing["info"]["error"]
    assert error.startswith("{replication_auth_error,\n    {session_request_unauthorized,"), error
    assert f'"{reader.name}"' in error and "wrong-password" not in error


def test_a_second_doc_for_the_same_replication_fails(server, new_db, url, rep_docs, poll):
    """replicator.rst "Documents describing the same replication": the second doc is `failed` (terminal),
    with the reason naming the doc that triggered it; update_failed/3 writes `_replication_state: failed` and
    `_replication_state_reason` into it."""
    if len(server.admin.get("/_membership").json()["cluster_nodes"]) > 1:
        pytest.skip("a cluster: each `_replicator` document is run by the node that owns it (couch_replicator_utils.erl owner/2) and a replication already running is found only in that node's scheduler, so two documents "
                    "of one replication owned by different nodes both run")
    source, target = new_db(), new_db()
    first, second = rep_docs(), rep_docs()
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target), "continuous": True}
    assert server.admin.put(db_url("_replicator", first), json=doc).status_code == 201
    poll(lambda: (s := scheduler_doc(server, first)) and s["state"] == "running", timeout=JOB_WAIT, what="first running")
    assert server.admin.put(db_url("_replicator", second), json=doc).status_code == 201
    failed = poll(lambda: (d := doc_in(server, "_replicator", second)) and d.get("_replication_state") == "failed"
                  and d, timeout=JOB_WAIT, what="duplicate marked failed")
    reason = failed["_replication_state_reason"]
    assert f"specified by document `{second}` already started, triggered by document `{first}`" in reason
    summary = scheduler_doc(server, second)
    assert (summary["state"], summary["error_count"], summary["info"]) == ("failed", 1, {"error": reason})


KEEP_FILTER = {"filters": {"keep": "function (doc, req) { return doc.keep === (req.query.wanted === 'yes'); }"}}


@pytest.mark.parametrize("option", [{"doc_ids": ["keep-1", "keep-2"]}, {"selector": {"keep": True}},
                                    {"filter": "app/keep", "query_params": {"wanted": "yes"}}])
def test_doc_ids_selector_and_filter_replicate_only_the_chosen_docs(server, new_db, url, rep_docs, poll, option):
    """replicator.rst: `doc_ids`, `selector` (a Mango selector, "Selector Objects") and `filter` (a design
    doc filter run by the source, with `query_params`) restrict what is replicated; the replicator asks the
    source's `_changes` with filter=_doc_ids / _selector / ddoc/name (couch_replicator_api_wrap changes_since)."""
    source, target = new_db(), new_db()
    for doc_id, keep in (("keep-1", True), ("keep-2", True), ("drop-1", False)):
        server.admin.put(db_url(source, doc_id), json={"keep": keep})
    if "filter" in option:
        server.admin.put(db_url(source, "_design/app"), json=KEEP_FILTER)
    rep_id = rep_docs()
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target), **option}
    assert server.admin.put(db_url("_replicator", rep_id), json=doc).status_code == 201
    poll(lambda: (d := doc_in(server, "_replicator", rep_id)) and d.get("_replication_state") == "completed",
         timeout=JOB_WAIT, what="filtered replication completed")
    ids = [row["id"] for row in server.admin.get(db_url(target, "_all_docs")).json()["rows"]]
    assert ids == ["keep-1", "keep-2"]


def test_a_selector_replication_carries_the_deletions_it_matches(server, new_db, url, rep_docs, poll):
    """The fan-in's provenance filter (docs/couchdb.md, "Replication"): a selector that admits tombstones
    (`_deleted`, couch_changes:filter/5 matches couch_doc:to_json_obj/2 of each revision) replicates a deletion
    of a document it replicated, while documents outside it (another namespace, another owner, a design
    document) never reach the target."""
    source, target = new_db(), new_db()
    for doc_id, owner in (("ann:1", "ann"), ("ann:2", "ann"), ("ann:3", "bob"), ("bob:1", "ann"),
                          ("_design/x", "ann")):
        assert server.admin.put(db_url(source, doc_id), json={"owner": owner}).status_code == 201
    selector = {"_id": {"$beginsWith": "ann:"}, "$or": [{"owner": "ann"}, {"_deleted": True}]}
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target), "selector": selector}

    def run_once():
        rep_id = rep_docs()
        assert server.admin.put(db_url("_replicator", rep_id), json=doc).status_code == 201
        poll(lambda: (d := doc_in(server, "_replicator", rep_id)) and d.get("_replication_state") == "completed",
             timeout=JOB_WAIT, what="selector replication completed")

    run_once()
    ids = [row["id"] for row in server.admin.get(db_url(target, "_all_docs")).json()["rows"]]
    assert ids == ["ann:1", "ann:2"]
    rev = server.admin.get(db_url(source, "ann:2")).json()["_rev"]
    server.admin.delete(db_url(source, "ann:2"), params={"rev": rev})  # a tombstone without `owner`
    run_once()
    ids = [row["id"] for row in server.admin.get(db_url(target, "_all_docs")).json()["rows"]]
    assert ids == ["ann:1"]
    assert server.admin.get(db_url(target, "ann:2")).json() == {"error": "not_found", "reason": "deleted"}


def test_checkpoints_let_the_next_job_start_where_the_last_one_stopped(server, new_db, url, rep_docs, poll):
    """protocol.rst "Record Replication Checkpoint": both sides keep `_local/<replication id>` with
    `source_last_seq` and a history; a later job with the same replication id reads it and only checks the
    changes after it (couch_replicator_scheduler_job compare_replication_logs/2)."""
    source, target = new_db(), new_db()
    for i in range(4):
        server.admin.put(db_url(source, f"d{i}"), json={})
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target)}

    def run_once():
        doc_id = rep_docs()
        server.admin.put(db_url("_replicator", doc_id), json=doc)
        done = poll(lambda: (d := doc_in(server, "_replicator", doc_id)) and d.get("_replication_state") == "completed"
                    and d, timeout=JOB_WAIT, what="replication completed")
        server.admin.delete(db_url("_replicator", doc_id), params={"rev": done["_rev"]})
        return done["_replication_stats"]

    first = run_once()
    assert (first["revisions_checked"], first["docs_written"]) == (4, 4)
    source_logs = [row for row in server.admin.get(db_url(source, "_local_docs")).json()["rows"]]
    target_logs = [row for row in server.admin.get(db_url(target, "_local_docs")).json()["rows"]]
    assert len(source_logs) == 1 and [r["id"] for r in target_logs] == [source_logs[0]["id"]]
    checkpoint = doc_in(server, source, source_logs[0]["id"])
    assert checkpoint["source_last_seq"] == first["checkpointed_source_seq"]
    assert checkpoint["history"][0]["docs_written"] == 4
    server.admin.put(db_url(source, "d4"), json={})
    second = run_once()
    # The second session starts from the first one's checkpoint (its history entry says so), with its counters
    # seeded from that entry (init_state/1 in src/couch_replicator/src/couch_replicator_scheduler_job.erl,
    # couch_replicator_stats:max_stats/2): the one new document adds to the first run's figures.
    assert (second["revisions_checked"], second["docs_written"]) == (5, 5)
    resumed = doc_in(server, source, source_logs[0]["id"])["history"][0]
    assert resumed["start_last_seq"] == checkpoint["source_last_seq"]
    assert resumed["session_id"] != checkpoint["history"][0]["session_id"]
    assert len(server.admin.get(db_url(target, "_all_docs")).json()["rows"]) == 5


def test_since_seq_and_create_target_params(server, new_db, new_name, url, rep_docs, poll):
    """replicator.rst lists `since_seq` (start from that source sequence instead of the beginning) and
    `create_target_params` (the query parameters of the target's creation, e.g. q)."""
    source, target = new_db(), new_name("target")
    server.admin.put(db_url(source, "before"), json={})
    since = server.admin.get(db_url(source)).json()["update_seq"]
    server.admin.put(db_url(source, "after"), json={})
    rep_id = rep_docs()
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target), "since_seq": since,
           "create_target": True, "create_target_params": {"q": 1}}
    assert server.admin.put(db_url("_replicator", rep_id), json=doc).status_code == 201
    poll(lambda: (d := doc_in(server, "_replicator", rep_id)) and d.get("_replication_state") == "completed",
         timeout=JOB_WAIT, what="replication completed")
    ids = [row["id"] for row in server.admin.get(db_url(target, "_all_docs")).json()["rows"]]
    assert ids == ["after"]
    assert server.admin.get(db_url(target)).json()["cluster"]["q"] == 1
    server.admin.delete(db_url(target))


def test_deleting_the_doc_cancels_the_job(server, new_db, url, rep_docs, poll):
    """replicator.rst "Canceling replications": DELETE the document that triggered the replication."""
    source, target = new_db(), new_db()
    doc_id = rep_docs()
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target), "continuous": True}
    server.admin.put(db_url("_replicator", doc_id), json=doc)
    poll(lambda: (s := scheduler_doc(server, doc_id)) and s["state"] == "running", timeout=JOB_WAIT, what="running")
    rev = doc_in(server, "_replicator", doc_id)["_rev"]
    assert server.admin.delete(db_url("_replicator", doc_id), params={"rev": rev}).status_code == 200
    poll(lambda: not [j for j in server.admin.get("/_scheduler/jobs").json()["jobs"] if j["doc_id"] == doc_id],
         timeout=JOB_WAIT, what="job removed")
    assert server.admin.get(f"/_scheduler/docs/_replicator/{doc_id}").status_code == 404


def test_attachments_deletions_and_conflicts_replicate(server, new_db, url, rep_docs, poll):
    """protocol.rst: the replicator copies every leaf revision with its history (`_revisions`) and attachments,
    tombstones included, with `new_edits: false`, so the target holds the same revision tree: the same
    winner and the same `_conflicts`."""
    source, target = new_db(), new_db()
    hello = {"f.txt": {"content_type": "text/plain", "data": "aGVsbG8="}}
    server.admin.put(db_url(source, "with-att"), json={"_attachments": hello})
    rev = server.admin.put(db_url(source, "gone"), json={}).json()["rev"]
    server.admin.delete(db_url(source, "gone"), params={"rev": rev})
    server.admin.post(db_url(source, "_bulk_docs"), json={"new_edits": False, "docs": [
        {"_id": "split", "_rev": "1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "v": 1},
        {"_id": "split", "_rev": "1-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "v": 2}]})
    rep_id = rep_docs()
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target)}
    assert server.admin.put(db_url("_replicator", rep_id), json=doc).status_code == 201
    poll(lambda: (d := doc_in(server, "_replicator", rep_id)) and d.get("_replication_state") == "completed",
         timeout=JOB_WAIT, what="replication completed")
    assert server.admin.get(db_url(target, "with-att", "f.txt")).content == b"hello"
    assert server.admin.get(db_url(target, "gone")).json() == {"error": "not_found", "reason": "deleted"}
    split = {name: server.admin.get(db_url(db, "split"), params={"conflicts": "true"}).json()
             for name, db in (("source", source), ("target", target))}
    assert split["target"] == split["source"]
    assert split["target"]["_conflicts"]


def test_scheduler_listings_page_filter_by_state_and_accept_other_replicator_dbs(server, new_db, new_name, url,
                                                                                 poll):
    """couch_replicator_httpd.erl: `/_scheduler/docs/{db}` for any db ending in `/_replicator`, escaped or not
    (parse_unquoted_docs_path/1); `states=` filters (parse_replication_state_filter/1, unknown states are a
    400 query_parse_error); `limit`/`skip` page `/_scheduler/jobs` and report `offset`."""
    other = f"{new_name('extra')}/_replicator"
    assert server.admin.put(db_url(other)).status_code == 201
    try:
        source, target = new_db(), new_db()
        doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target), "continuous": True}
        assert server.admin.put(db_url(other, "r1"), json=doc).status_code == 201
        prefix = other.split("/")[0]
        for path in (f"/_scheduler/docs/{prefix}%2F_replicator/r1", f"/_scheduler/docs/{prefix}/_replicator/r1"):
            poll(lambda: server.admin.get(path).json().get("state") == "running", timeout=JOB_WAIT, what=path)
            assert server.admin.get(path).json()["database"] == other
        listed = server.admin.get(f"/_scheduler/docs/{prefix}/_replicator", params={"states": "running"}).json()
        assert [d["doc_id"] for d in listed["docs"]] == ["r1"]
        none = server.admin.get(f"/_scheduler/docs/{prefix}/_replicator", params={"states": "failed"}).json()
        # Only the rows are filtered: total_rows is the database's `_all_docs` total (couch_replicator_fabric
        # handle_message({meta, ...}) adds up the shards' totals before any state is looked at).
        assert (none["total_rows"], none["offset"], none["docs"]) == (1, 0, [])
        bad = server.admin.get("/_scheduler/docs", params={"states": "sleeping"})
        assert (bad.status_code, bad.json()["error"]) == (400, "query_parse_error")
        total = server.admin.get("/_scheduler/jobs").json()["total_rows"]
        page = server.admin.get("/_scheduler/jobs", params={"skip": total - 1, "limit": 5}).json()
        assert (page["total_rows"], page["offset"], len(page["jobs"])) == (total, total - 1, 1)
    finally:
        server.admin.delete(db_url(other))
    # replicator.rst "Additional Replicator Databases": deleting one stops its replications.
    poll(lambda: not [j for j in server.admin.get("/_scheduler/jobs").json()["jobs"] if j["database"] == other],
         timeout=JOB_WAIT, what="jobs of the deleted replicator db gone")


def test_a_filter_the_source_lacks_leaves_the_doc_in_error_until_it_appears(server, new_db, url, rep_docs, poll):
    """replicator.rst "States descriptions": `error` is temporary and exists for filtered replications whose
    filter code (part of the replication id) cannot be fetched yet; the replicator retries. Fetching the
    filter is couch_replicator_filters:fetch/3."""
    source, target = new_db(), new_db()
    rep_id = rep_docs()
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target), "filter": "app/keep"}
    assert server.admin.put(db_url("_replicator", rep_id), json=doc).status_code == 201
    waiting = poll(lambda: (s := scheduler_doc(server, rep_id)) and s["state"] == "error" and s, timeout=JOB_WAIT,
                   what="doc in error")
    assert "_design/app" in waiting["info"]["error"]
    assert waiting["error_count"] >= 1 and waiting["id"] is None


@pytest.mark.parametrize("option, reason", [
    ({"filter": "keep"}, "Invalid filter. Must match `ddocname/filtername`."),
    ({"doc_ids": "keep-1"}, "parameter `doc_ids` must be an array"),
    ({"selector": ["keep"]}, "parameter `selector` must be a JSON object"),
])
def test_options_the_replicator_cannot_run_are_refused_at_write(server, new_db, url, rep_docs, option, reason):
    """couch_replicator_filters:parse_user_filter/1 (a filter not starting with `_` must be
    `ddocname/filtername`) and couch_replicator_parse:convert_options/1 (option types); before_doc_update
    turns the parse error into 403 forbidden with the parser's message."""
    source, target = new_db(), new_db()
    doc = {"source": as_admin(server, url, source), "target": as_admin(server, url, target), **option}
    response = server.admin.put(db_url("_replicator", rep_docs()), json=doc)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden" and reason in response.json()["reason"]
