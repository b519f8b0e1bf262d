"""couchsim's couch_peruser names databases as CouchDB does.

Relied on: apache/couchdb src/couch_peruser/src/couch_peruser.erl `user_db_name/1`:
`[string:to_lower(integer_to_list(X, 16)) || <<X>> <= User]`, one `integer_to_list` per byte with no
zero padding, so a byte below 0x10 gives one hex digit; and src/couch/src/couch_users_db.erl with the
`_auth` design document, which refuse only names starting with `_` or holding `:`, so a tab is a valid
user name.
"""

from __future__ import annotations

import time

import requests

from couchsim.testing import SimServer


def test_a_byte_below_0x10_gives_one_hex_digit_in_the_user_database_name():
    with SimServer(config={"chttpd_auth": {"iterations": "1000"}}) as sim:
        http = requests.Session()
        http.auth = sim.admin
        created = http.put(f"{sim.url}/_users/org.couchdb.user:a%09b",
                           json={"name": "a\tb", "type": "user", "roles": [], "password": "pw"})
        assert created.status_code == 201, created.text
        assert http.put(f"{sim.url}/_node/_local/_config/couch_peruser/enable", json="true").status_code == 200

        deadline = time.monotonic() + 5
        while "userdb-61962" not in http.get(f"{sim.url}/_all_dbs").json() and time.monotonic() < deadline:
            time.sleep(0.05)

        databases = [name for name in http.get(f"{sim.url}/_all_dbs").json() if name.startswith("userdb-")]
        assert databases == ["userdb-61962"]  # 0x61 "61", 0x09 "9", 0x62 "62"; bytes.hex() would give 610962
        assert http.get(f"{sim.url}/userdb-61962/_security").json()["members"]["names"] == ["a\tb"]
