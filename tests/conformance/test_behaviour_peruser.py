"""couch_peruser: a database per user, `userdb-` + hex of the UTF-8 name, with the security CouchDB writes.

Sources: facts "couch_peruser"; src/couch_peruser/src/couch_peruser.erl (ensure_user_db, add_user,
delete_user_db, user_db_name, init_state, start_listening, [couch_peruser] enable/delete_dbs/database_prefix/q);
src/mem3/src/mem3_cluster.erl (the start period); CouchDB docs config/couch-peruser.
Timing: CouchDB creates the databases asynchronously, so every check is a bounded poll, bounded by the start
period couch_peruser waits after each (re)start.
"""

import time

import pytest

from behaviour_fixtures import db_url, delete_user

# couch_peruser.erl ?DEFAULT_START_PERIOD: after it starts (and it starts again on every change of its config
# section) it listens only once mem3_cluster finds the cluster stable, `cluster_start_period` seconds later.
START_PERIOD = 5.0
# Then it replays the users' changes from the first one; the margin covers a loaded server and a long _users.
LISTENING_WAIT = START_PERIOD + 15.0
# A listening couch_peruser creates or deletes a user's database within ~0.25 s (facts).
NEW_USER_WAIT = 5.0


def userdb(name, prefix="userdb-"):
    return prefix + name.encode("utf-8").hex()


def exists(server, name):
    return server.admin.head(db_url(name)).status_code == 200


@pytest.fixture
def peruser(server, set_config, new_user, poll):
    """Enables couch_peruser with `delete_dbs = true` and gives `user_with_db(prefix)`: a new user once her
    database exists. After the case it deletes those users and waits until couch_peruser has deleted their
    databases: a user deleted while `delete_dbs = false`, or after her database, stops couch_peruser at
    every later start (see test_a_deleted_user_without_a_database_stops_couch_peruser_on_her_shard), so the suite never
    leaves one behind."""
    made: list[tuple[str, str]] = []
    set_config("couch_peruser", "enable", "true")
    set_config("couch_peruser", "delete_dbs", "true")

    def user_with_db(prefix: str = "userdb-", **user_args):
        user = new_user(**user_args)
        name = userdb(user.name, prefix)
        made.append((user.name, name))
        # After a config change the listener starts again first: LISTENING_WAIT bounds both cases. couch_peruser
        # creates the database, then gives it her security in a second write (couch_peruser.erl ensure_user_db/2,
        # ensure_security/3): a loaded 3-node cluster listed the database before its security held her name.
        poll(lambda: exists(server, name) and owned_by(server, name, user.name), timeout=LISTENING_WAIT,
             what=f"{name} created and secured by couch_peruser")
        return user, name

    yield user_with_db
    for user, name in made:
        delete_user(server.admin, user)
    for _, name in made:
        poll(lambda: not exists(server, name), timeout=LISTENING_WAIT, what=f"{name} deleted by couch_peruser")


def owned_by(server, name: str, user: str) -> bool:
    answer = server.admin.get(db_url(name, "_security"))
    return answer.status_code == 200 and user in answer.json().get("admins", {}).get("names", [])


def test_new_user_gets_a_database_with_owner_security(server, peruser, new_name):
    """Facts: a new user's db appears within ~250 ms, named userdb- + hex of the UTF-8 name (josé -> 6a6f73c3a9),
    with security {"members":{"roles":["_admin"],"names":[NAME]},"admins":{"roles":["_admin"],"names":[NAME]}}."""
    suffix = new_name("p")
    user, name = peruser(name="josé-" + suffix)
    # the facts' hex for josé, then the unique ASCII rest of the name
    assert name == "userdb-6a6f73c3a9" + ("-" + suffix).encode("ascii").hex()
    security = server.admin.get(db_url(name, "_security")).json()
    assert security == {"members": {"roles": ["_admin"], "names": [user.name]},
                        "admins": {"roles": ["_admin"], "names": [user.name]}}


def test_owner_administers_her_database(server, peruser):
    """The owner is a member and an admin of her db (facts): she writes docs and design docs there; others may not read."""
    user, name = peruser()
    assert user.client.put(db_url(name, "note"), json={}).status_code == 201
    assert user.client.put(db_url(name, "_design", "mine"), json={}).status_code == 201
    assert server.anon.get(db_url(name, "note")).status_code == 401


def test_existing_users_get_databases_when_enabled(server, set_config, new_user, poll):
    """Facts: "Databases for users that already exist appear seconds later" after enabling: couch_peruser
    replays the users' changes from the first one once it listens; while disabled (the default) a new user
    gets no database."""
    user = new_user()
    name = userdb(user.name)
    assert not exists(server, name)
    set_config("couch_peruser", "delete_dbs", "true")
    set_config("couch_peruser", "enable", "true")
    poll(lambda: exists(server, name), timeout=LISTENING_WAIT, what=f"{name} created for an existing user")
    delete_user(server.admin, user.name)
    poll(lambda: not exists(server, name), timeout=NEW_USER_WAIT, what=f"{name} deleted with its user")


def outlive_earlier_starts() -> None:
    """Wait until the stability checks of couch_peruser's earlier enabled starts (an earlier test's, say, or its
    teardown's) have fired: one still pending would start the next listener early (see
    test_a_change_before_the_listener_starts_does_not_put_it_off)."""
    time.sleep(START_PERIOD)


def test_sign_ups_right_after_enabling_wait_for_the_start_period(server, set_config, new_user, poll):
    """couch_peruser:handle_info({config_change, "couch_peruser", ...}) starts it again (init_state/0); it listens
    once mem3_cluster calls the cluster stable, `cluster_start_period` (5 s) later, then replays from the first
    change: a user who signs up meanwhile gets her database only then. Enabling it is such a change with no
    listener before it (a change while one listens races with that listener on a loaded server)."""
    set_config("couch_peruser", "delete_dbs", "true")
    outlive_earlier_starts()
    enabled = time.monotonic()
    set_config("couch_peruser", "enable", "true")
    user = new_user()
    name = userdb(user.name)
    time.sleep(max(0.0, enabled + START_PERIOD / 2 - time.monotonic()))
    # The start period runs from the config change, not from the sign-up: where the server was too busy to
    # answer both requests well within it, only the outcome below can be seen.
    if time.monotonic() < enabled + START_PERIOD * 0.8:
        assert not exists(server, name), "couch_peruser handled a sign-up before it listened"
    poll(lambda: exists(server, name), timeout=LISTENING_WAIT, what=f"{name} created once couch_peruser listens")
    delete_user(server.admin, user.name)
    poll(lambda: not exists(server, name), timeout=NEW_USER_WAIT, what=f"{name} deleted with its user")


def test_a_change_before_the_listener_starts_does_not_put_it_off(server, set_config, new_user, poll):
    """Each enabled start of couch_peruser begins a mem3_cluster whose one stability check calls the cluster
    stable `cluster_start_period` later (mem3_cluster:init/1, handle_info(stability_check, ...)); a config change
    starts couch_peruser again in the same process without stopping that one (couch_peruser:handle_cast(
    update_config, ...) stops only the listeners). So the listener starts a start period after enabling, though
    another change came before it: a sign-up made meanwhile gets her database then, not a period after the change."""
    outlive_earlier_starts()
    set_config("couch_peruser", "enable", "true")
    time.sleep(START_PERIOD * 0.8)
    changed = time.monotonic()
    set_config("couch_peruser", "delete_dbs", "true")
    user = new_user()
    name = userdb(user.name)
    poll(lambda: exists(server, name), timeout=LISTENING_WAIT, what=f"{name} created once couch_peruser listens")
    assert time.monotonic() < changed + START_PERIOD, "the change put off the listener by a whole start period"
    delete_user(server.admin, user.name)
    poll(lambda: not exists(server, name), timeout=NEW_USER_WAIT, what=f"{name} deleted with its user")


def test_database_prefix_is_respected(server, set_config, peruser):
    """[couch_peruser] database_prefix (couch_peruser:user_db_name) replaces `userdb-`."""
    set_config("couch_peruser", "database_prefix", "personal-")
    user, _ = peruser(prefix="personal-")
    assert not exists(server, userdb(user.name))


def test_q_is_respected(server, set_config, peruser):
    """[couch_peruser] q sets the shard count of the user databases it creates; it is 1 unless set
    (couch_peruser:init_state/0, `config:get_integer("couch_peruser", "q", 1)`), not the cluster's q."""
    _, name = peruser()
    assert server.admin.get(db_url(name)).json()["cluster"]["q"] == 1
    set_config("couch_peruser", "q", "3")
    _, name = peruser()
    assert server.admin.get(db_url(name)).json()["cluster"]["q"] == 3


def test_delete_dbs_true_removes_the_database_with_the_user(server, peruser, poll):
    """[couch_peruser] delete_dbs = true: deleting the user doc deletes her database (couch_peruser:delete_user_db)."""
    user, name = peruser()
    delete_user(server.admin, user.name)
    poll(lambda: not exists(server, name), timeout=NEW_USER_WAIT, what=f"{name} deleted")


def shard_of_user(server, name):
    """The range of the `_users` shard that holds the user's document (mem3_httpd `/{db}/_shards/{docid}`)."""
    return server.admin.get(db_url("_users", "_shards", f"org.couchdb.user:{name}")).json()["range"]


def test_a_deleted_user_without_a_database_stops_couch_peruser_on_her_shard(server, set_config, peruser, new_name,
                                                                             new_user, poll):
    """With `delete_dbs = false` a deleted user makes couch_peruser remove her name from her database's security
    (ensure_security/3); when that database is gone, fabric:get_all_security/2 throws database_does_not_exist,
    init_changes_handler/1 ends the listener of her `_users` shard (start_listening/1 runs one per shard),
    couch_peruser stops on its 'DOWN' and starts again, and that listener replays to the same change every start
    period: later users on that shard get no database, those on another shard do (facts: "a restart loop every
    5 s"). `delete_dbs = true` gets past it (delete_user_db/2 accepts a missing database). The tombstone is
    purged after the case (new_user), so the loop ends with it."""
    if len(server.admin.get("/_membership").json()["cluster_nodes"]) > 1:
        pytest.skip("a cluster: each node's couch_peruser handles the sign-ups whose change it owns "
                    "(should_handle_doc_int/2), so a loop on one node stops no single shard's users, and on a real "
                    "3-node 3.4.3 the loop this case starts outlived it, stopping couch_peruser for later tests")
    leaving, leaving_db = peruser()
    shard = shard_of_user(server, leaving.name)
    # No listener may see her between the two deletions below: it would make her database again.
    outlive_earlier_starts()
    set_config("couch_peruser", "delete_dbs", "false")
    assert server.admin.delete(db_url(leaving_db)).status_code == 200
    delete_user(server.admin, leaving.name)
    names = [new_name("later") for _ in range(12)]
    same = next(name for name in names if shard_of_user(server, name) == shard)  # 1 - 2^-12 for q = 2
    other = next((name for name in names if shard_of_user(server, name) != shard), None)
    later = new_user(name=same)
    elsewhere = new_user(name=other) if other is not None else None  # a q = 1 `_users` has no other shard
    time.sleep(2 * START_PERIOD + 2)  # at least one start and replay
    assert not exists(server, userdb(later.name)), "couch_peruser went past a deleted user whose database is gone"
    if elsewhere is not None:
        poll(lambda: exists(server, userdb(elsewhere.name)), timeout=LISTENING_WAIT,
             what="the database of a user on another shard")
    set_config("couch_peruser", "delete_dbs", "true")
    later_db = userdb(later.name)
    poll(lambda: exists(server, later_db), timeout=LISTENING_WAIT, what=f"{later_db} once delete_dbs is true")
    for user in filter(None, (later, elsewhere)):
        delete_user(server.admin, user.name)
        poll(lambda: not exists(server, userdb(user.name)), timeout=NEW_USER_WAIT,
             what=f"{userdb(user.name)} deleted with its user")
