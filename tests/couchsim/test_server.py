"""couchsim behaviours beyond the recorded exchanges and the behaviour suite: the command line, the
verified-credential cache, cookie refresh, mango indexes, compaction. Each case cites what it relies on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from couch_reconciler.couchsim import auth as auth_module
from couch_reconciler.couchsim.testing import SimServer
from waiting import ONE_COPY, copies, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_command_line_serves_a_cluster_with_config_and_stops_on_sigterm():
    """Issue 3: `python -m couch_reconciler.couchsim --port --admin --nodes --config section/key=value` prints one line when
    ready and stops cleanly on SIGTERM; every node gets the start-up config (per-node stores, /_membership)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "couch_reconciler.couchsim", "--port", "0", "--admin", "root:rootpw", "--nodes", "3",
         "--config", "chttpd_auth/iterations=1000", "--config", "couchdb/max_document_size=1000"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("couchsim listening on http://127.0.0.1:")
        url = line.split()[-1]
        members = requests.get(f"{url}/_membership", auth=("root", "rootpw")).json()
        assert len(members["all_nodes"]) == 3 and members["cluster_nodes"] == members["all_nodes"]
        for node in members["all_nodes"]:
            value = requests.get(f"{url}/_node/{node}/_config/couchdb/max_document_size", auth=("root", "rootpw"))
            assert value.json() == "1000"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.stdout.close()


@pytest.fixture
def derivations(monkeypatch) -> list[str]:
    """Every PBKDF2 the server's authenticator runs, counted."""
    seen: list[str] = []
    real = auth_module.pbkdf2_hex_async

    async def counting(*args):
        seen.append(args[0])
        return await real(*args)

    monkeypatch.setattr(auth_module, "pbkdf2_hex_async", counting)
    return seen


def test_a_verified_password_is_not_derived_again(derivations):
    """couch_passwords_cache (3.4): once a credential verified, basic auth on later requests costs no PBKDF2 —
    what keeps 3,000 GETs/s possible at 600,000 iterations."""
    with SimServer(admin=("admin", "adminpw"), config={"chttpd_auth": {"iterations": "1000"}}) as sim:
        with requests.Session() as http:
            http.auth = sim.admin
            for _ in range(5):
                assert http.get(sim.url + "/_session").json()["userCtx"]["name"] == "admin"
            http.auth = ("admin", "wrong")
            assert http.get(sim.url + "/_session").status_code == 401
    assert len(derivations) == 2  # the right password once, the wrong one once


def test_cookie_is_refreshed_once_a_tenth_of_its_life_is_gone():
    """couch_httpd_auth:cookie_authentication_handler/2 marks a cookie for refresh when
    TimeLeft < Timeout * 0.9; cookie_auth_header/2 then sends a new AuthSession."""
    with SimServer(admin=("admin", "adminpw"),
                   config={"chttpd_auth": {"iterations": "1000", "timeout": "30"}}) as sim:
        login = requests.post(sim.url + "/_session", json={"name": "admin", "password": "adminpw"})
        cookie = login.cookies["AuthSession"]
        fresh = requests.get(sim.url + "/_session", cookies={"AuthSession": cookie})
        assert "Set-Cookie" not in fresh.headers
        time.sleep(3.2)  # past a tenth of its 30 s; a loaded machine answers `fresh` well within 3 s
        aged = requests.get(sim.url + "/_session", cookies={"AuthSession": cookie})
        assert aged.json()["info"]["authenticated"] == "cookie"
        assert aged.headers["Set-Cookie"].startswith("AuthSession=")
        assert "Max-Age=30" in aged.headers["Set-Cookie"]


def test_sort_needs_a_json_index_then_uses_it(couch, unique):
    """mango: sorting by a field needs an index covering it (400 no_usable_index); POST /db/_index creates
    one ("created", then "exists"), _find then sorts by it without the no-index warning, and DELETE
    /db/_index/{ddoc}/json/{name} removes it (mango_httpd:handle_index_req/2)."""
    http = couch.session()
    db = f"{couch.url}/{unique('db')}"
    http.put(db, params=ONE_COPY)
    http.post(f"{db}/_bulk_docs", json={"docs": [{"_id": "a", "n": 3}, {"_id": "b", "n": 1}, {"_id": "c", "n": 2},
                                                   {"_id": "d"}]})
    query = {"selector": {"n": {"$gt": 0}}, "sort": [{"n": "desc"}], "fields": ["_id", "n"]}
    refused = http.post(f"{db}/_find", json=query)
    assert refused.status_code == 400
    assert refused.json() == {"error": "no_usable_index",
                              "reason": "No index exists for this sort, try indexing by the sort fields."}
    index = {"index": {"fields": ["n"]}, "ddoc": "by-n", "name": "n-idx", "type": "json"}
    assert http.post(f"{db}/_index", json=index).json() == {"result": "created", "id": "_design/by-n", "name": "n-idx"}
    assert http.post(f"{db}/_index", json=index).json()["result"] == "exists"
    listed = http.get(f"{db}/_index").json()
    assert [i["name"] for i in listed["indexes"]] == ["_all_docs", "n-idx"]
    found = http.post(f"{db}/_find", json=query).json()
    assert found["docs"] == [{"_id": "a", "n": 3}, {"_id": "c", "n": 2}, {"_id": "b", "n": 1}]
    assert "warning" not in found
    assert http.delete(f"{db}/_index/_design/by-n/json/n-idx").json() == {"ok": True}
    assert http.delete(f"{db}/_index/_design/by-n/json/n-idx").status_code == 404


@pytest.mark.parametrize("selector, error, reason", [
    ({"n": {"$foo": 1}}, "invalid_operator", "Invalid operator: $foo"),
    ("x", "invalid_selector_json", "Selector must be a JSON object, not: <<120>>"),
])
def test_find_refuses_bad_selectors(couch, unique, selector, error, reason):
    """mango_error:info/2 for mango_selector: unknown operators and non-object selectors are 400s; the
    second reason is recorded verbatim from 3.4.3 (exchange "find bad selector")."""
    http = couch.session()
    db = f"{couch.url}/{unique('db')}"
    http.put(db)
    answer = http.post(f"{db}/_find", json={"selector": selector})
    assert (answer.status_code, answer.json()) == (400, {"error": error, "reason": reason})


def test_compaction_forgets_old_revision_bodies(couch, unique):
    """couch_db compaction keeps only leaf revisions' bodies: before it, ?rev=<old> reads the old body;
    after POST /db/_compact (202), the old rev is 404 missing while the current one still reads. Compaction
    runs in the background, on every copy of every shard (fabric.erl `compact/1` casts it to each), so a
    cluster forgets the body only once the last copy that answers has compacted."""
    http = couch.session()
    name = unique("db")
    db = f"{couch.url}/{name}"
    http.put(db)
    # Both revisions on every copy (w = n) before compacting: a copy that got the second only by internal
    # replication after its compaction would keep the first one's body, its leaf when it compacted.
    every_copy = {"w": copies(http, couch.url, name)}
    old = http.put(f"{db}/d", json={"v": 1}, params=every_copy).json()["rev"]
    http.put(f"{db}/d", json={"v": 2, "_rev": old}, params=every_copy)
    assert http.get(f"{db}/d", params={"rev": old}).json()["v"] == 1
    compact = http.post(f"{db}/_compact", json={})
    assert (compact.status_code, compact.json()) == (202, {"ok": True})
    forgotten = {"error": "not_found", "reason": "missing"}

    def forgotten_else_compacted_again() -> bool:
        """A loaded cluster may answer the writes 202 (stored on fewer copies in time): a copy that got the
        second revision by internal replication after it compacted keeps the first one's body, its leaf then,
        until it compacts again."""
        if http.get(f"{db}/d", params={"rev": old}).json() == forgotten:
            return True
        http.post(f"{db}/_compact", json={})
        return False

    wait_for(forgotten_else_compacted_again, "compaction to forget the old revision's body on every copy", 120.0, 2.0)
    assert http.get(f"{db}/d").json()["v"] == 2


def test_fault_injector_is_scoped_by_method_and_cleared_from_the_test(couch):
    """Issue 3: faults are controlled only from the test process; a rule matches its method and path."""
    if couch.sim is None:
        pytest.skip("fault injection exists only in couchsim")
    http = couch.session()
    couch.sim.faults.inject(path=r"^/_uuids", method="GET", status=503)
    assert http.get(couch.url + "/_uuids").status_code == 503
    assert http.get(couch.url + "/_up").status_code == 200
    couch.sim.faults.clear()
    assert http.get(couch.url + "/_uuids").status_code == 200


def test_db_updates_continuous_sends_each_event_once(couch):
    """global_changes_httpd: a continuous /_db_updates feed streams each {db_name, type, seq} row once, in
    order, then `last_seq` when the timeout ends it (needs a `_global_changes` database, facts file)."""
    if couch.real:
        pytest.skip("a shared real server has other databases changing at the same time")
    http = couch.session()
    http.put(couch.url + "/_global_changes")
    feed = http.get(couch.url + "/_db_updates", params={"feed": "continuous", "timeout": 1500}, stream=True)
    with requests.Session() as writer:
        writer.auth = couch.admin
        writer.put(couch.url + "/one")
        writer.put(couch.url + "/one/doc", json={})
        writer.put(couch.url + "/two")
    lines = [line for line in feed.iter_lines() if line.strip()]
    rows = [json.loads(line) for line in lines]
    assert [(r["db_name"], r["type"]) for r in rows[:-1]] == [("one", "created"), ("one", "updated"),
                                                             ("two", "created")]
    assert rows[-1] == {"last_seq": rows[-2]["seq"]}


def test_db_updates_hears_a_database_event_one_write_delay_late():
    """src/global_changes/src/global_changes_server.erl `flush_updates`: database events reach `_global_changes`
    in batches written every `[global_changes] max_write_delay` ms, so `/_db_updates` can show a database's
    creation after clients already use the database. couchsim writes a batch that long after its first event,
    the latest a real server does, so watch's tests meet a late `created` row every time."""
    with SimServer(admin=("admin", "adminpw"), config={"global_changes": {"max_write_delay": "1000"}}) as sim:
        http = requests.Session()
        http.auth = sim.admin
        http.put(sim.url + "/_global_changes")
        since = http.get(sim.url + "/_db_updates", params={"since": "now"}).json()["last_seq"]
        created = time.monotonic()
        assert http.put(sim.url + "/late").status_code == 201
        assert http.get(sim.url + "/_db_updates", params={"since": since}).json()["results"] == []
        answer = http.get(sim.url + "/_db_updates", params={"since": since, "feed": "longpoll", "timeout": 5000})
        assert [(row["db_name"], row["type"]) for row in answer.json()["results"]] == [("late", "created")]
        assert 0.9 <= time.monotonic() - created < 3.0


def test_concurrent_first_requests_share_one_derivation(derivations):
    """couch_passwords_cache spares repeated PBKDF2s; couchsim also makes the connections of a pool that
    present the same new credential at once wait for one derivation instead of each running their own."""
    with SimServer(admin=("admin", "adminpw"), config={"chttpd_auth": {"iterations": "200000"}}) as sim:
        def session_name(_):
            return requests.get(sim.url + "/_session", auth=sim.admin).json()["userCtx"]["name"]
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(session_name, range(8))) == ["admin"] * 8
    assert len(derivations) == 1


def test_peruser_replays_users_when_its_settings_change(couch, unique):
    """couch_peruser:handle_info({config_change, "couch_peruser", ...}) restarts it and it follows `_users` from
    the start again: after database_prefix changes, every existing user also gets a database with the new
    prefix, whose security names her first in admins and members (add_user/3)."""
    if couch.real:
        pytest.skip("changing couch_peruser settings on a shared real server would create databases for all its users")
    http = couch.session()
    name = unique("u")
    http.put(f"{couch.url}/_users/org.couchdb.user:{name}", json={"name": name, "type": "user", "roles": [],
                                                                   "password": "pw"})
    config = f"{couch.url}/_node/_local/_config/couch_peruser"
    http.put(f"{config}/enable", json="true")
    http.put(f"{config}/database_prefix", json="home-")
    wanted = f"{couch.url}/home-{name.encode().hex()}"
    deadline = time.monotonic() + 5
    while http.get(wanted).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert http.get(f"{wanted}/_security").json() == {"members": {"roles": ["_admin"], "names": [name]},
                                                      "admins": {"roles": ["_admin"], "names": [name]}}
