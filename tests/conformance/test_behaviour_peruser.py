"""couch_peruser: a database per user, `userdb-` + hex of the UTF-8 name, with the security CouchDB writes.

Sources: facts "couch_peruser"; src/couch_peruser/src/couch_peruser.erl (ensure_user_db_exists, add_user,
delete_user_db, user_db_name, [couch_peruser] enable/delete_dbs/database_prefix); CouchDB docs config/couch-peruser.
Timing: CouchDB creates the databases asynchronously, so every check is a bounded poll.
"""

import pytest

from behaviour_fixtures import db_url, delete_user

# facts: existing users' databases appear "seconds later"; a new user's within ~250 ms
EXISTING_USERS_WAIT = 15.0
NEW_USER_WAIT = 5.0


def userdb(name, prefix="userdb-"):
    return prefix + name.encode("utf-8").hex()


def exists(server, name):
    return server.admin.head(db_url(name)).status_code == 200


@pytest.fixture
def peruser(server, set_config, new_user, poll):
    """Enables couch_peruser and gives `user_with_db(prefix)`: a new user once her database exists. Databases it
    made are deleted after the case."""
    made: list[str] = []
    set_config("couch_peruser", "enable", "true")

    def user_with_db(prefix: str = "userdb-", **user_args):
        user = new_user(**user_args)
        name = userdb(user.name, prefix)
        made.append(name)
        poll(lambda: exists(server, name), timeout=NEW_USER_WAIT, what=f"{name} created")
        return user, name

    yield user_with_db
    for name in made:
        server.admin.delete(db_url(name))


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
    """Facts: "Databases for users that already exist appear seconds later" after enabling; while disabled
    (the default) a new user gets no database."""
    user = new_user()
    name = userdb(user.name)
    assert not exists(server, name)
    set_config("couch_peruser", "enable", "true")
    try:
        poll(lambda: exists(server, name), timeout=EXISTING_USERS_WAIT, what=f"{name} created for an existing user")
    finally:
        server.admin.delete(db_url(name))


def test_database_prefix_is_respected(server, set_config, peruser):
    """[couch_peruser] database_prefix (couch_peruser:user_db_name) replaces `userdb-`."""
    set_config("couch_peruser", "database_prefix", "personal-")
    user, _ = peruser(prefix="personal-")
    assert not exists(server, userdb(user.name))


def test_q_is_respected(server, set_config, peruser):
    """[couch_peruser] q sets the shard count of the user databases it creates."""
    set_config("couch_peruser", "q", "1")
    _, name = peruser()
    assert server.admin.get(db_url(name)).json()["cluster"]["q"] == 1


def test_delete_dbs_true_removes_the_database_with_the_user(server, set_config, peruser, poll):
    """[couch_peruser] delete_dbs = true: deleting the user doc deletes her database (couch_peruser:delete_user_db)."""
    set_config("couch_peruser", "delete_dbs", "true")
    user, name = peruser()
    delete_user(server.admin, user.name)
    poll(lambda: not exists(server, name), timeout=NEW_USER_WAIT, what=f"{name} deleted")


def test_delete_dbs_default_keeps_the_database(server, peruser):
    """delete_dbs defaults to false: the database outlives the user. couch_peruser follows _users changes in order,
    so once a later user's db exists, the earlier deletion has been processed."""
    leaving, name = peruser()
    delete_user(server.admin, leaving.name)
    peruser()
    assert exists(server, name)
