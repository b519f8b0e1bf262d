"""The reference architecture (manifests/) proven by real clients over HTTP, each with its own credentials.

The manifests are applied unchanged, as `make demo` applies them (demo.env secrets, and
$COUCHDB_REPLICATION_URL naming the URL this server reaches itself at). Two users then sign up directly on the server, as the app's back end
does, and a second apply brings them their role (couch_peruser made their database and security). Their
fan-in to analytics is `fanIn: triggered`: `reconcile watch`, running beside the server from then on as
the deployment runs it, starts their one-shot replications. Then each client tries what it may and may not do.

Relied on:
- docs/couchdb.md, "Security and users": anonymous on an admin-only database is 401, an
  authenticated non-member 403; members read and write documents, not design documents, not `_security`;
  `_users` is admin-only and not editable, so a user cannot read or change her own document (roles
  included) and anonymous sign-up is 401; the couch_peruser userdb security.
- apache/couchdb src/chttpd/src/chttpd_db.erl (`_design_docs` is `all_docs_view` over design documents,
  behind the same reader check as `_all_docs`), src/couch/src/couch_db.erl `check_is_member`
  (readers: members or admins; `_security` writes: db admins only).
- docs/couchdb.md, "Replication": `_replicator` docs need full URLs, credentials in
  `auth.basic`; a continuous replication carries later writes; a one-shot one copies what its source holds
  and ends `completed`; a `selector` replicates only the revisions it matches (couch_changes:filter/5),
  tombstones included when it admits `_deleted`.
- docs/couchdb.md, "couch_peruser" and "Security and users": she administers her own database (ensure_security
  puts her back among its admins), so she may delete its validate_doc_update; in main-entities she is a member
  and may not; no user name holds `:`.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import quote

import pytest
import requests

from cleanup import left_as_found
from reference_world import apply_manifests, reconcile_manifests, sign_up, watching_manifests
from waiting import copies, wait_for
from couch_reconciler.kinds.user_databases import user_database

ANALYTICS_WAIT = 30.0  # seconds for a document to reach analytics (watch's debounce, then a one-shot run)


def client(auth: tuple[str | bytes, str | bytes] | None) -> requests.Session:
    http = requests.Session()
    http.auth = auth
    return http


def path(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


@pytest.fixture(scope="module")
def world(module_couch):
    """The deployed reference architecture and two sign-ups, then `reconcile watch` running; shared by the
    module's tests, which only read or make writes the others do not count. Removed afterwards, config included."""
    with left_as_found(module_couch.url, module_couch.admin):
        world = _deploy(module_couch)
        with watching_manifests(module_couch):
            yield world


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
            "second": second, "third": third}


def as_user(world, key: str) -> requests.Session:
    name = world[key]
    # CouchDB compares the name's UTF-8 bytes; requests would encode a str as Latin-1.
    return client((name.encode("utf-8"), f"{name}-pw".encode("utf-8")))


def test_signups_get_their_role_at_the_next_apply_and_their_fan_in_from_watch(world):
    applied, planned = world["second"].stdout, world["third"].stdout
    for key in ("a", "b"):
        database = user_database("userdb-", world[key])
        assert f"~ user/{world[key]}: updated" in applied  # the app-user role
        assert f"database/{database}" not in applied  # couch_peruser made it; the tool does not fight it
        assert f"replication/per-user.{database}" not in applied  # watch starts the one-shot runs, not apply
    assert "`fanIn: triggered` replications are started by `reconcile watch`, not by apply" in applied
    # Before watch ran, the plan says plainly which fan-in is stale and for how many users (the server may hold
    # other tests' users too).
    stale = re.search(r"user-databases\.yaml:\d+: fanIn triggered into analytics is stale: \d+ user database\(s\) "
                      r"wait for `reconcile watch`.*\((\d+) never replicated\)", planned)
    assert stale and int(stale.group(1)) >= 2, planned

    # With watch running, each has her one-shot replication into analytics, and it completes.
    for key in ("a", "b"):
        doc_path = f"{world['url']}/_replicator/per-user.{user_database('userdb-', world[key])}.to.analytics"
        doc = wait_for(lambda: (found := world["admin"].get(doc_path).json()).get("_replication_state") == "completed"
                       and found, f"the one-shot replication of {world[key]} to complete", ANALYTICS_WAIT)
        assert doc["continuous"] is False and doc["couch_reconciler_trigger"]["update_seq"]


def test_anonymous_can_read_or_write_nothing(world):
    url, anonymous = world["url"], client(None)
    for database in ("main-entities", "analytics", user_database("userdb-", world["a"]), "_users", "_replicator"):
        assert anonymous.get(f"{url}/{path(database)}/_all_docs").status_code == 401, database
        assert anonymous.post(f"{url}/{path(database)}", json={"x": 1}).status_code == 401, database
    signup = {"name": "intruder", "type": "user", "roles": [], "password": "x"}
    assert anonymous.put(f"{url}/_users/org.couchdb.user:intruder", json=signup).status_code == 401


def mine(world, key: str, suffix: str, **fields) -> dict:
    """A document as the app writes it for a user: an id in her namespace and her name as its owner."""
    return {"_id": f"{world[key]}:{suffix}", "owner": world[key], **fields}


def test_a_user_reads_and_writes_main_entities_and_her_own_database(world):
    url, a = world["url"], as_user(world, "a")
    for database in ("main-entities", user_database("userdb-", world["a"])):
        doc = mine(world, "a", f"note-{time.time_ns()}", type="note")
        written = a.put(f"{url}/{path(database, doc['_id'])}", json=doc)
        assert written.status_code == 201, (database, written.text)
        assert a.get(f"{url}/{path(database, doc['_id'])}").status_code == 200


def test_a_document_that_claims_another_owner_or_namespace_is_refused(world):
    """The provenance validation (manifests/design/provenance): in main-entities and in her own database, a user's
    document has an id starting with `NAME:` and `owner: NAME`; anything else, and any write to another user's
    document in main-entities, is 403 forbidden."""
    url, a, b, name, other = world["url"], as_user(world, "a"), as_user(world, "b"), world["a"], world["b"]
    theirs = mine(world, "b", f"shared-{time.time_ns()}", type="shared-note")
    assert b.put(f"{url}/main-entities/{path(theirs['_id'])}", json=theirs).status_code == 201
    stored = b.get(f"{url}/main-entities/{path(theirs['_id'])}").json()
    for database in ("main-entities", user_database("userdb-", name)):
        forgeries = [
            {"_id": f"{name}:claims-{time.time_ns()}", "owner": other},  # another owner, her namespace
            {"_id": f"{other}:claims-{time.time_ns()}", "owner": other},  # another user's namespace and name
            {"_id": f"{other}:mixed-{time.time_ns()}", "owner": name},  # another namespace, her name
            {"_id": f"{name}x:{time.time_ns()}", "owner": name},  # a namespace that merely starts like hers
            {"_id": f"note-{time.time_ns()}", "owner": name},  # no namespace
            {"_id": f"{name}:no-owner-{time.time_ns()}"},
        ]
        for forged in forgeries:
            answer = a.put(f"{url}/{path(database, forged['_id'])}", json=forged)
            assert answer.status_code == 403 and answer.json()["error"] == "forbidden", (database, forged, answer.text)
        posted = a.post(f"{url}/{path(database)}", json={"type": "note", "owner": name})  # a server-made uuid
        assert posted.status_code == 403, (database, posted.text)
        bulk = a.post(f"{url}/{path(database)}/_bulk_docs", json={"docs": forgeries}).json()
        assert [row.get("error") for row in bulk] == ["forbidden"] * len(forgeries), (database, bulk)
    # main-entities: her name as the owner of his document, or his document changed or deleted, is refused too.
    for attempt in ({**stored, "owner": name}, {**stored, "text": "edited by someone else"},
                    {**stored, "_deleted": True}):
        answer = a.put(f"{url}/main-entities/{path(theirs['_id'])}", json=attempt)
        assert answer.status_code == 403, answer.text
    assert a.delete(f"{url}/main-entities/{path(theirs['_id'])}", params={"rev": stored["_rev"]}).status_code == 403
    assert b.get(f"{url}/main-entities/{path(theirs['_id'])}").json() == stored


def test_a_user_cannot_read_write_or_list_the_design_documents_of_another_users_database(world):
    url, a = world["url"], as_user(world, "a")
    theirs = user_database("userdb-", world["b"])
    assert a.get(f"{url}/{path(theirs)}/_all_docs").status_code == 403
    assert a.get(f"{url}/{path(theirs)}/_design_docs").status_code == 403
    assert a.post(f"{url}/{path(theirs)}", json={"type": "note"}).status_code == 403
    assert a.get(f"{url}/{path(theirs)}/_security").status_code == 403


def test_no_user_can_read_or_write_analytics_or_its_security(world):
    """Only server admins and the replications (as `ops`) write analytics: a user's document in her own
    namespace, one in bulk, a design document are all 403 there, so the fan-in is her only way in."""
    url = world["url"]
    for key in ("a", "b"):
        user = as_user(world, key)
        own = mine(world, key, f"direct-{time.time_ns()}", type="forged")
        assert user.get(f"{url}/analytics/_all_docs").status_code == 403
        assert user.post(f"{url}/analytics", json={"type": "forged"}).status_code == 403
        assert user.put(f"{url}/analytics/{path(own['_id'])}", json=own).status_code == 403
        assert user.post(f"{url}/analytics/_bulk_docs", json={"docs": [own], "new_edits": False}).status_code == 403
        assert user.put(f"{url}/analytics/_design/mine", json={"views": {}}).status_code == 403
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
    private = mine(world, "a", "journal-1", type="journal-entry", created_at=day)
    shared = mine(world, "a", "shared-1", type="shared-task", created_at=day)
    for database, doc in ((user_database("userdb-", name), private), ("main-entities", shared)):
        assert a.put(f"{url}/{path(database, doc['_id'])}", json=doc).status_code == 201
    private, shared = private["_id"], shared["_id"]

    for doc_id in (private, shared):
        wait_for(lambda: admin.get(f"{url}/analytics/{path(doc_id)}").status_code == 200, f"{doc_id} in analytics",
                 ANALYTICS_WAIT)

    def count(view: str, key) -> int:
        rows = admin.get(f"{url}/analytics/_design/dashboard/_view/{view}",
                         params={"group": "true", "key": json.dumps(key)}).json()["rows"]
        return rows[0]["value"] if rows else 0

    # The validations stay where they were deployed: main-entities' replication leaves design documents out, and
    # none of a user database's matches her selector.
    for validation in ("_design/shared-provenance", "_design/provenance"):
        assert admin.get(f"{url}/analytics/{validation}").status_code == 404, validation
    assert count("by_type", "journal-entry") == 1 and count("by_type", "shared-task") == 1
    assert count("by_user", name) >= 2
    assert count("by_day", ["2026", "11", "25"]) >= 2


def test_provenance_holds_in_analytics_against_a_user_who_removes_her_validation(world):
    """She administers her own database (couch_peruser), so she can delete its provenance validation and store
    anything there. What reaches analytics is decided by the selector of her replication, in `_replicator`
    (server admins only): nothing claiming another owner, nothing in another user's namespace (his document in
    analytics stays his), none of her design documents (not even one that would outrank the dashboard); her
    own documents and her deletions still arrive. `by_user` counts each user's documents and nothing forged."""
    url, admin, name, other = world["url"], world["admin"], world["a"], world["b"]
    a, b = as_user(world, "a"), as_user(world, "b")
    hers, his = user_database("userdb-", name), user_database("userdb-", other)
    run = time.time_ns()
    his_docs = [mine(world, "b", f"diary-{run}-{i}", type="diary") for i in range(3)]
    assert all(row.get("ok") for row in b.post(f"{url}/{path(his)}/_bulk_docs", json={"docs": his_docs}).json())
    victim = his_docs[0]["_id"]
    wait_for(lambda: all(admin.get(f"{url}/analytics/{path(d['_id'])}").status_code == 200 for d in his_docs),
             f"{other}'s documents in analytics", ANALYTICS_WAIT)
    before = admin.get(f"{url}/analytics/{path(victim)}").json()

    validation = f"{url}/{path(hers)}/_design/provenance"
    current = a.get(validation)
    assert current.status_code == 200, "the template deploys the provenance validation into her database"
    # She may: her database. Every copy runs the validations it holds (couch_db:validate_doc_update/3 on each shard
    # copy), so the deletion is written to every copy (w = n) before she stores what it refused.
    deleted = a.delete(validation, params={"rev": current.json()["_rev"], "w": copies(admin, url, hers)})
    assert deleted.status_code in (200, 202), deleted.text

    # Revision 99 of another user's document would win any conflict in analytics, were it replicated.
    forged = [{"_id": victim, "_rev": f"99-{'f' * 32}", "owner": other, "type": "diary", "text": "forged"},
              {"_id": f"{other}:planted-{run}", "_rev": f"1-{'e' * 32}", "owner": other, "type": "diary"},
              {"_id": f"{name}:claims-{run}", "_rev": f"1-{'d' * 32}", "owner": other, "type": "diary"},
              {"_id": f"forged-{run}", "_rev": f"1-{'c' * 32}", "owner": name, "type": "note"},
              {"_id": "_design/dashboard", "_rev": f"99-{'b' * 32}",
               "views": {"by_user": {"map": "function (doc) { emit('forged', 1000); }", "reduce": "_sum"}}}]
    honest = [mine(world, "a", f"kept-{run}", type="journal-entry"), mine(world, "a", f"gone-{run}", type="note")]
    # Her database takes every forgery once no copy holds the validation (a 202 above: a copy still lagged).
    wait_for(lambda: (stored := a.post(f"{url}/{path(hers)}/_bulk_docs", json={"docs": forged, "new_edits": False})
                      ).status_code == 201 and stored.json() == [], "her database to take every forgery")
    revs = {row["id"]: row["rev"] for row in a.post(f"{url}/{path(hers)}/_bulk_docs", json={"docs": honest}).json()}
    gone = honest[1]["_id"]
    wait_for(lambda: admin.get(f"{url}/analytics/{path(gone)}").status_code == 200, f"{gone} in analytics",
             ANALYTICS_WAIT)
    assert a.delete(f"{url}/{path(hers, gone)}", params={"rev": revs[gone]}).status_code == 200
    # Her deletion travels (a tombstone carries no owner): once it has arrived, every earlier write was handled.
    wait_for(lambda: admin.get(f"{url}/analytics/{path(gone)}").json().get("reason") == "deleted",
             f"the deletion of {gone} in analytics", ANALYTICS_WAIT)

    assert admin.get(f"{url}/analytics/{path(honest[0]['_id'])}").status_code == 200
    assert admin.get(f"{url}/analytics/{path(victim)}", params={"conflicts": "true"}).json() == before
    for doc in forged[1:4]:
        assert admin.get(f"{url}/analytics/{path(doc['_id'])}").status_code == 404, doc["_id"]
    dashboard = admin.get(f"{url}/analytics/_design/dashboard").json()
    assert "forged" not in json.dumps(dashboard) and not dashboard["_rev"].startswith("99-")

    def by_user(user: str) -> int:
        rows = admin.get(f"{url}/analytics/_design/dashboard/_view/by_user",
                         params={"group": "true", "key": json.dumps(user)}).json()["rows"]
        return rows[0]["value"] if rows else 0

    def his_in_analytics() -> list[str]:
        rows = admin.get(f"{url}/analytics/_all_docs", params={"startkey": json.dumps(f"{other}:"),
                                                                "endkey": json.dumps(f"{other}:\ufff0")}).json()["rows"]
        return [row["id"] for row in rows]

    # Every document in his namespace is one he wrote (here, or in main-entities by another test of this module,
    # which may still be on its way), and by_user counts exactly those for him.
    wait_for(lambda: by_user(other) == len(his_in_analytics()), f"by_user to count {other}'s documents",
             ANALYTICS_WAIT)
    assert {d["_id"] for d in his_docs} <= set(his_in_analytics()) and forged[1]["_id"] not in his_in_analytics()
    assert by_user("forged") == 0
    # The next apply (or watch's next full reconcile) puts her validation back: it is the tool's, in every user
    # database.
    apply_manifests(world["couch"])
    assert a.get(validation).status_code == 200
