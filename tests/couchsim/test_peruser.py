"""couchsim's couch_peruser names databases as CouchDB does.

Relied on: apache/couchdb src/couch_peruser/src/couch_peruser.erl `user_db_name/1`:
`[string:to_lower(integer_to_list(X, 16)) || <<X>> <= User]`, one `integer_to_list` per byte with no
zero padding, so a byte below 0x10 gives one hex digit; and src/couch/src/couch_users_db.erl with the
`_auth` design document, which refuse only names starting with `_` or holding `:`, so a tab is a valid
user name.
"""

from __future__ import annotations

import requests
from waiting import wait_for

from couch_reconciler.couchsim.testing import SimServer


def test_a_byte_below_0x10_gives_one_hex_digit_in_the_user_database_name():
    with SimServer(config={"chttpd_auth": {"iterations": "1000"}}) as sim:
        http = requests.Session()
        http.auth = sim.admin
        created = http.put(f"{sim.url}/_users/org.couchdb.user:a%09b",
                           json={"name": "a\tb", "type": "user", "roles": [], "password": "pw"})
        assert created.status_code == 201, created.text
        assert http.put(f"{sim.url}/_node/_local/_config/couch_peruser/enable", json="true").status_code == 200

        # couch_peruser listens `cluster_start_period` (5 s) after the config change, then replays _users.
        wait_for(lambda: "userdb-61962" in http.get(f"{sim.url}/_all_dbs").json(),
                 "couch_peruser to listen and create the database", timeout=20)

        databases = [name for name in http.get(f"{sim.url}/_all_dbs").json() if name.startswith("userdb-")]
        assert databases == ["userdb-61962"]  # 0x61 "61", 0x09 "9", 0x62 "62"; bytes.hex() would give 610962
        assert http.get(f"{sim.url}/userdb-61962/_security").json()["members"]["names"] == ["a\tb"]


def test_with_delete_dbs_false_a_deleted_user_leaves_her_database_without_her_name():
    """couch_peruser changes_handler/3 with `delete_dbs = false`: the database stays, ensure_security/3 with
    remove_user/3 takes her name out of `admins` and `members`. On a fresh server: anywhere a deleted user's
    database is missing, couch_peruser stops at her change (tests/conformance/test_behaviour_peruser.py)."""
    config = {"chttpd_auth": {"iterations": "1000"}, "couch_peruser": {"enable": "true"}}
    with SimServer(config=config) as sim:
        http = requests.Session()
        http.auth = sim.admin
        user = {"name": "leaving", "type": "user", "roles": [], "password": "pw"}
        rev = http.put(f"{sim.url}/_users/org.couchdb.user:leaving", json=user).json()["rev"]
        database = "userdb-" + b"leaving".hex()
        wait_for(lambda: http.get(f"{sim.url}/{database}").status_code == 200, f"{database} created", timeout=20)
        assert http.delete(f"{sim.url}/_users/org.couchdb.user:leaving", params={"rev": rev}).status_code == 200
        wait_for(lambda: "leaving" not in http.get(f"{sim.url}/{database}/_security").json()["members"]["names"],
                 "her name to leave the security of her database", timeout=10)
        security = http.get(f"{sim.url}/{database}/_security").json()
        assert "leaving" not in security["admins"]["names"]
