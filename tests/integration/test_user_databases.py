"""UserDatabases: one database per user, for the users on the server, with couch_peruser on and off.

Relied on:
- apache/couchdb src/couch_peruser/src/couch_peruser.erl `user_db_name`: the prefix, then every byte of
  the UTF-8 name as `string:to_lower(integer_to_list(Byte, 16))` (lowercase hex, no zero padding);
  `ensure_security` with `add_user`: the user's name joins `members.names` and `admins.names`;
  on user deletion with `delete_dbs = false` the database stays and only loses the name.
- docs/couchdb.md: the userdb security couch_peruser writes
  (`{"members":{"roles":["_admin"],"names":[NAME]},"admins":{"roles":["_admin"],"names":[NAME]}}`),
  `josé` -> `userdb-6a6f73c3a9`, databases appear asynchronously after the user is written.
- couch_reconciler/validate.py DATABASE_NAME_MAX_BYTES (238: the shard file name limit, apache/couchdb#2174).
"""

from __future__ import annotations

import os
from urllib.parse import quote

import pytest
import requests

from reconcile_runner import config_changed, reconcile, write
from replication_setup import members_and_databases, replication
from waiting import copies, wait_for
from couch_reconciler.kinds.user_databases import user_database

SIM_ONLY = pytest.mark.skipif("COUCHDB_URL" in os.environ,
                              reason="--allow-delete prunes every managed object on the server: couchsim only")

def template(extra: str = "", roles: tuple[str, ...] = ()) -> str:
    """A UserDatabases manifest granting `app-user`, with `extra` spec lines, and the Roles it names."""
    declared = "".join(f"---\napiVersion: reconciler/v1\nkind: Role\nmetadata: {{name: {role}}}\nspec: {{}}\n"
                       for role in ("app-user", *roles))
    return ("apiVersion: reconciler/v1\nkind: UserDatabases\nmetadata: {name: per-user}\nspec:\n"
            f"  grantRoles: [app-user]\n{extra}" + declared)


def sign_up(couch, http, name: str, roles: list[str] | None = None) -> None:
    """What the app's back end does: a `_users` document written with credentials that may write it. Written
    to every copy: a cluster's `_all_docs` takes each shard range from whichever copy answers first, so an apply
    right after a quorum write may read a copy that lacks the user (fabric_view_all_docs.erl)."""
    doc = {"name": name, "type": "user", "roles": roles or [], "password": "pw"}
    answer = http.put(f"{couch.url}/_users/{quote('org.couchdb.user:' + name, safe=':')}", json=doc,
                      params={"w": copies(http, couch.url, "_users")})
    assert answer.status_code == 201, answer.text


def security(couch, http, database: str) -> dict | None:
    answer = http.get(f"{couch.url}/{quote(database, safe='')}/_security")
    return answer.json() if answer.status_code == 200 else None


def roles(couch, http, name: str) -> list[str]:
    return http.get(f"{couch.url}/_users/{quote('org.couchdb.user:' + name, safe=':')}").json()["roles"]


def test_database_names_are_couch_perusers():
    """couch_peruser.erl user_db_name: lowercase hex of the UTF-8 bytes, each byte without zero padding
    (JavaScript's charCodeAt would give `e9` for é where CouchDB hashes its two UTF-8 bytes `c3a9`)."""
    assert user_database("userdb-", "josé") == "userdb-6a6f73c3a9"
    assert user_database("userdb-", "日本") == "userdb-e697a5e69cac"
    assert user_database("userdb-", "A.b@c+d-e") == "userdb-412e6240632b642d65"
    assert user_database("u-", "tab\there") == "u-746162968657265"  # 0x09 is written `9`, as integer_to_list does


def test_server_only_users_get_a_database_their_security_and_the_role(couch, http, unique, tmp_path):
    """couch_peruser off: the tool creates each database, makes the user its only member, grants the role."""
    names = [unique("ana"), "josé-" + unique("j"), "日本-" + unique("n"), unique("a.b@c+d") + "-E"]
    for name in names:
        sign_up(couch, http, name)
    write(tmp_path, "userdbs.yaml", template())

    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path))

    assert applied.code == 0, applied.stderr
    for name in names:
        database = "userdb-" + name.encode("utf-8").hex()
        assert f"+ database/{database}: created" in applied.stdout
        held = security(couch, http, database)
        assert held["members"]["names"] == [name] and "_admin" in held["members"]["roles"]
        assert "app-user" in roles(couch, http, name)
    again = reconcile(couch, "plan", "--detailed-exitcode", str(tmp_path))
    assert again.code == 0, again.stdout + again.stderr
    # `_users` is read once per plan, though the template and the user kind both need it.
    assert sum("/_users/_all_docs" in url for url in again.paths()) == 1


def test_with_couch_peruser_on_the_tool_adds_only_what_the_template_says(couch, http, unique, tmp_path):
    """couch_peruser made the database and its security (the user as member and admin): merge mode leaves
    them as they are; the plan only grants the role."""
    with config_changed(http, f"{couch.url}/_node/_local/_config/couch_peruser/enable", "true"):
        name = "josé-" + unique("p")
        database = user_database("userdb-", name)
        sign_up(couch, http, name)
        # The database first holds CouchDB's default security; couch_peruser's ensure_security writes its own next.
        made = wait_for(lambda: (found := security(couch, http, database)) and name in found.get("admins", {}).get(
            "names", []) and found, "couch_peruser to make the database and its security", 60.0)
        assert made["admins"]["names"] == [name]
        write(tmp_path, "userdbs.yaml", template())

        plan = reconcile(couch, "plan", str(tmp_path))

        assert plan.code == 0, plan.stderr
        assert f"database/{database}" not in plan.stdout and f"security/{database}" not in plan.stdout
        assert f"~ user/{name}" in plan.stdout
        assert reconcile(couch, "apply", "--auto-approve", str(tmp_path)).code == 0
        assert security(couch, http, database) == made


def test_a_name_too_long_for_a_database_is_named_in_the_plan_and_the_others_still_apply(
        couch, http, unique, tmp_path):
    long_name = unique("l") + "x" * 110  # 7 + 2 x 126 bytes of hex: above the 238-byte limit
    short = unique("s")
    sign_up(couch, http, long_name)
    sign_up(couch, http, short)
    write(tmp_path, "userdbs.yaml", template())

    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path))

    assert applied.code == 0, applied.stderr
    assert "get no database" in applied.stdout and long_name[:40] in applied.stdout
    assert "238-byte limit" in applied.stdout
    assert security(couch, http, user_database("userdb-", short))["members"]["names"] == [short]
    assert "app-user" in roles(couch, http, long_name)  # the role does not depend on the database


def test_selection_by_role_and_name_pattern_leaves_others_and_server_admins_alone(couch, http, unique, tmp_path):
    chosen, other_role, other_name = unique("in"), unique("role"), "zz" + unique("out")
    sign_up(couch, http, chosen, ["customer"])
    sign_up(couch, http, other_role, ["staff"])
    sign_up(couch, http, other_name, ["customer"])
    if not couch.real:  # a _users document named like the server admin (never left behind on a real server)
        sign_up(couch, http, couch.user, ["customer"])
    write(tmp_path, "userdbs.yaml", template("  select: {roles: [customer], namePattern: 't-.*'}\n", ("customer",)))

    plan = reconcile(couch, "plan", str(tmp_path))

    assert plan.code == 0, plan.stderr
    created = {line.split("/")[1].split()[0] for line in plan.stdout.splitlines() if line.startswith("  + database/")}
    assert created == {user_database("userdb-", chosen)}


def test_a_custom_prefix_and_members_and_admins_from_the_template(couch, http, unique, tmp_path):
    name = unique("c")
    sign_up(couch, http, name)
    write(tmp_path, "userdbs.yaml", template(
        "  prefix: private-\n  security: {mode: exact, admins: {roles: [support]}}\n", ("support",)))

    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path)).code == 0

    held = security(couch, http, user_database("private-", name))
    assert held["members"]["names"] == [name] and held["admins"] == {"names": [], "roles": ["_admin", "support"]}


def replicate_to_analytics(couch, extra: str = "") -> str:
    """The template feeding `analytics`, replicating as the server admin, through the server's own URL."""
    return template(f"  replicateTo:\n    - target: analytics\n      replicationBaseUrl: {couch.url}\n"
                    "      auth: {username: " + couch.user + ", password: env:ADMIN_PASSWORD}\n" + extra) \
        + "---\napiVersion: reconciler/v1\nkind: Database\nmetadata: {name: analytics}\nspec: {}\n"


def replication_ids(couch, http) -> set[str]:
    rows = http.get(f"{couch.url}/_replicator/_all_docs").json()["rows"]
    return {row["id"] for row in rows if not row["id"].startswith("_design/")}


@SIM_ONLY
def test_a_deleted_users_replication_goes_and_her_database_stays(couch, http, unique, tmp_path):
    """Replication documents are this tool's (ownership marker) and useless without their user; the database
    holds her data, so it stays unless the template says `deleteWithUser` (even with --allow-delete)."""
    kept, gone = unique("kept"), unique("gone")
    for name in (kept, gone):
        sign_up(couch, http, name)
    write(tmp_path, "userdbs.yaml", replicate_to_analytics(couch))
    env = {"ADMIN_PASSWORD": couch.password}
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env).code == 0
    gone_id = f"per-user.{user_database('userdb-', gone)}.to.analytics"
    assert gone_id in replication_ids(couch, http)
    user_doc = f"{couch.url}/_users/org.couchdb.user:{gone}"
    http.delete(user_doc, params={"rev": http.get(user_doc).json()["_rev"]})

    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env)  # no --allow-delete needed
    pruning = reconcile(couch, "plan", "--detailed-exitcode", "--allow-delete", str(tmp_path), env=env)

    assert applied.code == 0, applied.stderr
    assert f"- replication/{gone_id}: deleted" in applied.stdout
    assert replication_ids(couch, http) == {f"per-user.{user_database('userdb-', kept)}.to.analytics"}
    assert pruning.code == 0, pruning.stdout  # her database (made by the tool, so managed) is not pruned
    assert security(couch, http, user_database("userdb-", gone)) is not None


def test_the_last_users_replication_goes_too(couch, http, unique, tmp_path):
    name = unique("last")
    sign_up(couch, http, name)
    write(tmp_path, "userdbs.yaml", replicate_to_analytics(couch))
    env = {"ADMIN_PASSWORD": couch.password}
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env).code == 0
    user_doc = f"{couch.url}/_users/org.couchdb.user:{name}"
    http.delete(user_doc, params={"rev": http.get(user_doc).json()["_rev"]})

    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env)

    assert applied.code == 0, applied.stderr
    assert f"per-user.{user_database('userdb-', name)}.to.analytics" not in replication_ids(couch, http)


@SIM_ONLY
def test_delete_with_user_deletes_the_database_only_with_the_data_opt_in(couch, http, unique, tmp_path):
    name = unique("leaver")
    database = user_database("userdb-", name)
    sign_up(couch, http, name)
    write(tmp_path, "userdbs.yaml", template("  deleteWithUser: true\n"))
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path)).code == 0
    assert http.put(f"{couch.url}/{database}/note", json={"text": "hers"}).status_code == 201
    user_doc = f"{couch.url}/_users/org.couchdb.user:{name}"
    http.delete(user_doc, params={"rev": http.get(user_doc).json()["_rev"]})

    refused = reconcile(couch, "apply", "--auto-approve", "--allow-delete", str(tmp_path))
    applied = reconcile(couch, "apply", "--auto-approve", "--allow-delete", "--allow-delete-data", str(tmp_path))

    assert refused.code == 1 and "destroys 1 document" in refused.stderr and database in refused.stderr
    assert applied.code == 0, applied.stderr
    assert security(couch, http, database) is None


def test_the_plan_warns_when_continuous_replications_exceed_the_replicator_capacity(couch, http, unique, tmp_path):
    """docs/couchdb.md: beyond `[replicator] max_jobs` running jobs (per node), the rest queue and rotate."""
    nodes = http.get(f"{couch.url}/_membership").json()["cluster_nodes"]
    with config_changed(http, f"{couch.url}/_node/_local/_config/replicator/max_jobs", "1"):
        for index in range(len(nodes) + 1):  # one more than the nodes, each running one
            sign_up(couch, http, unique(f"r{index}"))
        write(tmp_path, "userdbs.yaml", replicate_to_analytics(couch))

        plan = reconcile(couch, "plan", str(tmp_path), env={"ADMIN_PASSWORD": couch.password})

        assert plan.code == 0, plan.stderr
        assert f"continuous replications would run but the cluster runs at most {len(nodes)} at once" in plan.stdout


def test_design_documents_of_the_template_reach_every_user_database_and_bind_its_user(couch, http, unique, tmp_path):
    """A DesignDocument with `userDatabases: per-user` is deployed to each user's database; its
    validate_doc_update then refuses the user's own bad write (CouchDB runs it for every non-admin write)."""
    names = [unique("v1"), "日本-" + unique("v2")]
    for name in names:
        sign_up(couch, http, name)
    write(tmp_path, "userdbs.yaml", template())
    write(tmp_path, "ddoc.yaml", """
        apiVersion: reconciler/v1
        kind: DesignDocument
        metadata: {name: rules}
        spec:
          userDatabases: per-user
          validate_doc_update: |
            function (newDoc) { if (!newDoc._deleted && !newDoc.type) { throw({forbidden: "a type is required"}); } }
        """)

    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path))

    assert applied.code == 0, applied.stderr
    for name in names:
        database = user_database("userdb-", name)
        assert f"+ design_document/{database}/_design/rules: created" in applied.stdout
        user = couch.session()
        user.auth = (name.encode("utf-8"), b"pw")
        refused = user.post(f"{couch.url}/{quote(database, safe='')}", json={"text": "no type"})
        assert refused.status_code == 403 and refused.json()["reason"] == "a type is required"
        assert user.post(f"{couch.url}/{quote(database, safe='')}", json={"type": "note"}).status_code == 201
    assert reconcile(couch, "plan", "--detailed-exitcode", str(tmp_path)).code == 0


def test_templates_whose_prefixes_overlap_are_refused_before_any_request(couch, tmp_path):
    write(tmp_path, "userdbs.yaml", template() + "---\napiVersion: reconciler/v1\nkind: UserDatabases\n"
          "metadata: {name: staff}\nspec:\n  prefix: userdb-staff-\n")

    plan = reconcile(couch, "plan", str(tmp_path))

    assert plan.code == 1 and plan.sent == []
    assert "UserDatabases/staff: prefix `userdb-staff-` overlaps `userdb-` of UserDatabases/per-user" in plan.stderr


def test_with_couch_peruser_on_a_user_the_manifests_create_is_complete_after_one_apply(couch, http, unique, tmp_path):
    """A user the manifests create gets her database in the same apply, created as couch_peruser creates it
    (its `q`, 1 unless set; the user as member and admin) and left couch_peruser's (no ownership marker):
    whichever of the two makes it, it is the same database, and the next plan has nothing to do."""
    with config_changed(http, f"{couch.url}/_node/_local/_config/couch_peruser/enable", "true"):
        name = "日本-" + unique("new")
        database = user_database("userdb-", name)
        write(tmp_path, "userdbs.yaml", template("  security: {members: {roles: [app-user]}}\n")
              + f"---\napiVersion: reconciler/v1\nkind: User\nmetadata: {{name: {name}}}\nspec: {{}}\n")

        applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path))
        planned = reconcile(couch, "plan", "--detailed-exitcode", str(tmp_path))

        assert applied.code == 0, applied.stderr
        assert f"+ database/{database}: created" in applied.stdout
        assert planned.code == 0, planned.stdout
        held = security(couch, http, database)
        assert held["members"] == {"names": [name], "roles": ["_admin", "app-user"]}
        assert held["admins"]["names"] == [name]
        assert "couch_reconciler" not in held  # couch_peruser's database, never the tool's to prune
        assert http.get(f"{couch.url}/{quote(database, safe='')}").json()["cluster"]["q"] == 1


def template_for(couch, directory, name: str) -> str:
    """The template (its users members of their databases with the app-user role) and `name` as a User; the URL
    of her database."""
    write(directory, "userdbs.yaml", template("  security: {members: {roles: [app-user]}}\n")
          + f"---\napiVersion: reconciler/v1\nkind: User\nmetadata: {{name: {name}}}\nspec: {{}}\n")
    return f"{couch.url}/{user_database('userdb-', name)}"


def made_by_couch_peruser(request, session, url: str, name: str) -> None:
    """What couch_peruser does (couch_peruser.erl ensure_user_db, ensure_security with add_user), through the
    unpatched `request`."""
    assert request(session, "PUT", url).status_code == 201
    made = {"members": {"roles": ["_admin"], "names": [name]}, "admins": {"roles": ["_admin"], "names": [name]}}
    assert request(session, "PUT", f"{url}/_security", json=made).status_code == 200


def test_a_user_database_couch_peruser_makes_while_the_apply_runs_is_taken_as_it_is(couch, http, unique, tmp_path,
                                                                                    monkeypatch):
    """couch_peruser (or a concurrent apply) may create a user's database between the plan and its creation: the
    apply takes it as it is and merges the template's security into what couch_peruser wrote."""
    with config_changed(http, f"{couch.url}/_node/_local/_config/couch_peruser/enable", "true"):
        name = unique("raced")
        path = template_for(couch, tmp_path, name)
        original = requests.Session.request

        def first_made_by_couch_peruser(self, method, url, *args, **kwargs):
            if (method, url) == ("PUT", path):
                made_by_couch_peruser(original, self, url, name)
            return original(self, method, url, *args, **kwargs)

        monkeypatch.setattr(requests.Session, "request", first_made_by_couch_peruser)
        applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path))
        monkeypatch.undo()
        planned = reconcile(couch, "plan", "--detailed-exitcode", str(tmp_path))

        assert applied.code == 0, applied.stderr
        assert planned.code == 0, planned.stdout
        held = security(couch, http, path.rsplit("/", 1)[1])
        assert held["members"] == {"roles": ["_admin", "app-user"], "names": [name]}
        assert held["admins"] == {"roles": ["_admin"], "names": [name]}
        assert "couch_reconciler" not in held


def test_a_creation_race_lost_to_couch_peruser_is_asked_again_and_taken_as_it_is(couch, http, unique, tmp_path,
                                                                                 monkeypatch):
    """Two creators of one database at the same moment (the apply and couch_peruser, which the same apply has
    just turned on): CouchDB answers the loser 500 {"error":"error","reason":"conflict"} while the winner's shard
    map is written but not yet seen (fabric_db_create.erl go/2; seen on a real 3.4.3 applying the reference
    manifests to 1,000 users), and 412 a moment later. The apply asks again and merges as after a 412."""
    with config_changed(http, f"{couch.url}/_node/_local/_config/couch_peruser/enable", "true"):
        name = unique("lost")
        path = template_for(couch, tmp_path, name)
        original = requests.Session.request
        lost: list[str] = []

        def lost_to_couch_peruser(self, method, url, *args, **kwargs):
            if (method, url) == ("PUT", path) and not lost:
                lost.append(url)
                made_by_couch_peruser(original, self, url, name)  # couch_peruser's creation wins
                answer = requests.Response()
                answer.status_code, answer.url = 500, url
                answer.headers["Content-Type"] = "application/json"
                answer._content = b'{"error":"error","reason":"conflict"}\n'
                return answer
            return original(self, method, url, *args, **kwargs)

        monkeypatch.setattr(requests.Session, "request", lost_to_couch_peruser)
        applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path))
        monkeypatch.undo()
        planned = reconcile(couch, "plan", "--detailed-exitcode", str(tmp_path))

        assert lost and applied.code == 0, applied.stdout + applied.stderr
        assert planned.code == 0, planned.stdout
        held = security(couch, http, path.rsplit("/", 1)[1])
        assert held["members"] == {"roles": ["_admin", "app-user"], "names": [name]}
        assert "couch_reconciler" not in held


def test_a_saved_plan_of_the_template_applies_and_refuses_once_stale(couch, http, unique, tmp_path):
    """The per-user objects travel in the plan file like any other; a user database created meanwhile makes
    the saved plan stale rather than half-applied."""
    first, second = unique("f"), unique("s")
    sign_up(couch, http, first)
    folder = tmp_path / "manifests"
    write(folder, "userdbs.yaml", template())
    saved, stale = str(tmp_path / "plan.json"), str(tmp_path / "stale.json")
    assert reconcile(couch, "plan", "--out", saved, str(folder)).code == 0
    sign_up(couch, http, second)
    assert reconcile(couch, "plan", "--out", stale, str(folder)).code == 0
    assert http.put(f"{couch.url}/{user_database('userdb-', second)}").status_code == 201

    applied = reconcile(couch, "apply", saved)
    refused = reconcile(couch, "apply", stale)

    assert applied.code == 0, applied.stderr
    assert security(couch, http, user_database("userdb-", first))["members"]["names"] == [first]
    assert refused.code == 1 and f"database/{user_database('userdb-', second)} (created meanwhile)" in refused.stderr


def test_names_that_give_the_same_unpadded_hex_get_no_database(couch, http, unique, tmp_path):
    """couch_peruser writes byte 0x01 as `1`: "\\x01\\x02…" and "\\x12…" would share a database."""
    tail = unique("c")
    clashing = ["\x01\x02" + tail, "\x12" + tail]
    for name in clashing:
        sign_up(couch, http, name)
    write(tmp_path, "userdbs.yaml", template())

    plan = reconcile(couch, "plan", str(tmp_path))

    assert plan.code == 0, plan.stderr
    assert "2 users (`\\x01\\x02t-c-" in plan.stdout  # control characters shown escaped
    assert "get no database: couch_peruser's unpadded hex" in plan.stdout
    assert user_database("userdb-", clashing[0]) not in plan.stdout


def test_a_template_prunes_only_its_own_replications(couch, http, unique, tmp_path):
    """A UserDatabases template deletes the replications it made for users who are gone, without --allow-delete;
    a hand-written Replication removed from the manifests is another matter: the README promises that such a
    deletion needs --allow-delete, template or not."""
    sign_up(couch, http, unique("member"))
    hand_made, source, target = unique("hand-made"), unique("hand-source"), unique("hand-target")
    env = {"ADMIN_PASSWORD": couch.password, "REPLICATOR_PASSWORD": "replicator-pw",
           "REPLICATION_PASSWORD": "replicator-pw"}
    write(tmp_path, "userdbs.yaml", replicate_to_analytics(couch))
    write(tmp_path, "hand.yaml", members_and_databases(unique("replicator"), source, target))
    write(tmp_path, "hand-replication.yaml", replication(couch, hand_made, source, target, unique("replicator")))
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env).code == 0
    # `_all_docs` takes each shard range from one copy, which on a loaded cluster may not hold the write yet.
    wait_for(lambda: hand_made in replication_ids(couch, http), f"{hand_made} in _replicator")
    (tmp_path / "hand-replication.yaml").unlink()

    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path), env=env)
    allowed = reconcile(couch, "plan", "--allow-delete", str(tmp_path), env=env)

    assert applied.code == 0, applied.stderr
    assert f"replication/{hand_made}" not in applied.stdout
    assert hand_made in replication_ids(couch, http)
    assert allowed.code == 0, allowed.stderr
    assert f"- replication/{hand_made}" in allowed.stdout



def test_an_owner_field_gives_each_users_replication_her_namespace_and_names_no_ambiguous_user(
        couch, http, unique, tmp_path):
    """`ownerField`: each user's replication carries the selector that admits only her documents (`_id` "NAME:…",
    the field naming her) and deletions of such ids (docs/couchdb.md, "Replication"). A name whose database does not
    read back to it (couch_peruser's unpadded hex of a byte below 0x10) gets no database: its replication could
    not tell whose documents to admit."""
    name, ambiguous = unique("zoë"), "\x01" + unique("x")
    write(tmp_path, "userdbs.yaml", replicate_to_analytics(couch, "      ownerField: owner\n"))
    for user in (name, ambiguous):
        sign_up(couch, http, user)
    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path), env={"ADMIN_PASSWORD": couch.password})
    doc = http.get(f"{couch.url}/_replicator/per-user.{user_database('userdb-', name)}.to.analytics").json()

    assert applied.code == 0, applied.stdout + applied.stderr
    assert doc["selector"] == {"_id": {"$beginsWith": f"{name}:"}, "$or": [{"owner": name}, {"_deleted": True}]}
    assert "get no database: a character below U+0010 in the name" in applied.stdout
    assert user_database("userdb-", ambiguous) not in applied.stdout
