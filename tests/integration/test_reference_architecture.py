"""The reference architecture (manifests/) proven by real clients over HTTP, each with its own credentials.

The manifests are applied unchanged, as `make demo` applies them (demo.env secrets, and
$COUCHDB_REPLICATION_URL naming the URL this server reaches itself at). Two users then sign up directly on the server, as the app's back end
does, and a second apply brings them their database, security, role and replication. Then each client
tries what it may and may not do.

Relied on:
- docs/couchdb.md, "Security and users": anonymous on an admin-only database is 401, an
  authenticated non-member 403; members read and write documents, not design documents, not `_security`;
  `_users` is admin-only and not editable, so a user cannot read or change her own document (roles
  included) and anonymous sign-up is 401; the couch_peruser userdb security.
- apache/couchdb src/chttpd/src/chttpd_db.erl (`_design_docs` is `all_docs_view` over design documents,
  behind the same reader check as `_all_docs`), src/couch/src/couch_db.erl `check_is_member`
  (readers: members or admins; `_security` writes: db admins only).
- docs/couchdb.md, "Replication": `_replicator` docs need full URLs, credentials in
  `auth.basic`; a continuous replication carries later writes.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
import requests

from reference_world import apply_manifests, left_as_found, reconcile_manifests, sign_up
from waiting import wait_for
from couch_reconciler.kinds.user_databases import user_database

ANALYTICS_WAIT = 30.0  # seconds for a document to travel through a continuous replication


def client(auth: tuple[str | bytes, str | bytes] | None) -> requests.Session:
    http = requests.Session()
    http.auth = auth
    return http


def path(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


@pytest.fixture(scope="module")
def world(module_couch):
    """The deployed reference architecture and two sign-ups; shared by the module's tests, which only read
    or make writes the others do not count. Removed afterwards, config included."""
    with left_as_found(module_couch):
        yield _deploy(module_couch)


def _deploy(couch) -> dict:
    apply_manifests(couch)
    admin = client(couch.admin)
    suffix = str(int(time.time() * 1000))[-6:]
    users = {"zoë": f"Zoë.{suffix}", "mark": f"Mark.O-{suffix}+test@example.com"}  # non-ASCII, upper case, . + @
    for name in users.values():  # the app's back end: credentials that may write _users, no role given
        sign_up(admin, couch.url, name, f"{name}-pw")
    second = apply_manifests(couch)
    third = reconcile_manifests(couch, "plan", "--detailed-exitcode")
    assert third.code == 0, third.stdout + third.stderr
    return {"couch": couch, "admin": admin, "url": couch.url, "a": users["zoë"], "b": users["mark"],
            "second": second}


def as_user(world, key: str) -> requests.Session:
    name = world[key]
    # CouchDB compares the name's UTF-8 bytes; requests would encode a str as Latin-1.
    return client((name.encode("utf-8"), f"{name}-pw".encode("utf-8")))


def test_signups_get_their_database_role_and_replication_at_the_next_apply(world):
    applied = world["second"].stdout
    for key in ("a", "b"):
        database = user_database("userdb-", world[key])
        assert f"~ user/{world[key]}: updated" in applied  # the app-user role
        assert f"+ replication/per-user.{database}.to.analytics: created" in applied
        assert f"database/{database}" not in applied  # couch_peruser made it; the tool does not fight it


def test_anonymous_can_read_or_write_nothing(world):
    url, anonymous = world["url"], client(None)
    for database in ("main-entities", "analytics", user_database("userdb-", world["a"]), "_users", "_replicator"):
        assert anonymous.get(f"{url}/{path(database)}/_all_docs").status_code == 401, database
        assert anonymous.post(f"{url}/{path(database)}", json={"x": 1}).status_code == 401, database
    signup = {"name": "intruder", "type": "user", "roles": [], "password": "x"}
    assert anonymous.put(f"{url}/_users/org.couchdb.user:intruder", json=signup).status_code == 401


def test_a_user_reads_and_writes_main_entities_and_her_own_database(world):
    url, a = world["url"], as_user(world, "a")
    for database in ("main-entities", user_database("userdb-", world["a"])):
        written = a.post(f"{url}/{path(database)}", json={"type": "note", "owner": world["a"]})
        assert written.status_code == 201, (database, written.text)
        assert a.get(f"{url}/{path(database, written.json()['id'])}").status_code == 200


def test_a_user_cannot_read_write_or_list_the_design_documents_of_another_users_database(world):
    url, a = world["url"], as_user(world, "a")
    theirs = user_database("userdb-", world["b"])
    assert a.get(f"{url}/{path(theirs)}/_all_docs").status_code == 403
    assert a.get(f"{url}/{path(theirs)}/_design_docs").status_code == 403
    assert a.post(f"{url}/{path(theirs)}", json={"type": "note"}).status_code == 403
    assert a.get(f"{url}/{path(theirs)}/_security").status_code == 403


def test_no_user_can_read_or_write_analytics_or_its_security(world):
    url = world["url"]
    for key in ("a", "b"):
        user = as_user(world, key)
        assert user.get(f"{url}/analytics/_all_docs").status_code == 403
        assert user.post(f"{url}/analytics", json={"type": "forged"}).status_code == 403
        assert user.get(f"{url}/analytics/_security").status_code == 403
        assert user.put(f"{url}/analytics/_security", json={}).status_code == 403
        assert user.get(f"{url}/analytics/_design/dashboard/_view/by_type").status_code == 403


def test_a_user_cannot_give_herself_roles(world):
    url, a, name = world["url"], as_user(world, "a"), world["a"]
    doc_path = f"{url}/{path('_users', 'org.couchdb.user:' + name)}"
    stored = world["admin"].get(doc_path).json()
    forged = {**stored, "roles": stored["roles"] + ["analyst"]}
    assert a.put(doc_path, json=forged).status_code in (401, 403)
    assert a.get(doc_path).status_code in (401, 403)  # not even her own document: _users is admin-only
    assert world["admin"].get(doc_path).json()["roles"] == stored["roles"] == ["app-user"]


def test_documents_from_her_database_and_main_entities_reach_analytics_and_the_dashboard_counts_them(world):
    url, a, admin, name = world["url"], as_user(world, "a"), world["admin"], world["a"]
    day = "2026-11-25T08:00:00Z"
    private = a.post(f"{url}/{path(user_database('userdb-', name))}",
                     json={"type": "journal-entry", "owner": name, "created_at": day}).json()["id"]
    shared = a.post(f"{url}/main-entities", json={"type": "shared-task", "owner": name, "created_at": day}).json()["id"]

    for doc_id in (private, shared):
        wait_for(lambda: admin.get(f"{url}/analytics/{doc_id}").status_code == 200, f"{doc_id} in analytics",
                 ANALYTICS_WAIT)

    def count(view: str, key) -> int:
        rows = admin.get(f"{url}/analytics/_design/dashboard/_view/{view}",
                         params={"group": "true", "key": json.dumps(key)}).json()["rows"]
        return rows[0]["value"] if rows else 0

    assert count("by_type", "journal-entry") == 1 and count("by_type", "shared-task") == 1
    assert count("by_user", name) >= 2
    assert count("by_day", ["2026", "11", "25"]) >= 2
