"""The reference architecture (manifests/) converges in one apply on a server that already has users, with
couch_peruser on, and with couch_peruser off (then the same plan turns it on): one `apply --auto-approve`
(no --force), then `plan --detailed-exitcode` exits 0.

Relied on (docs/couchdb.md, "couch_peruser"): after any `[couch_peruser]` config change it handles no sign-up
for its start period (5 s), then replays `_users` from the start, creating each missing database; so while
the apply that turns it on runs, couch_peruser may create any user's database at any moment, before or
after the tool wanted to. The users are written in one `_users/_bulk_docs`, without passwords, as a back
end that migrates accounts would (no PBKDF2 to pay per user).
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from reconcile_runner import config_changed
from reference_world import PERUSER_START_PERIOD, reconcile_manifests
from waiting import wait_while_growing, written_to_every_copy
from couch_reconciler.kinds.user_databases import user_database

PREFIX = "userdb-"
# couch_peruser makes the databases one after another once its start period is over; on a loaded cluster some a
# second. The wait lasts while they come and gives up after a start period and this long without a new one.
PERUSER_STALL = 20.0
# Seconds for every copy to hold what an apply wrote on a loaded cluster (internal replication).
COPIES_AGREE = 60.0


def existing_users(couch, http, unique, count: int) -> list[str]:
    """`count` users written in one `_bulk_docs`, as a back end writes them: no role, no password."""
    stem = unique("conv")
    names = [f"{stem}-{index:04}" for index in range(count)]
    if names:
        docs = [{"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": []} for name in names]
        written_to_every_copy(http, couch.url, "_users", docs)
    return names


def user_databases(couch, http, names: list[str]) -> set[str]:
    """Which of these users' databases exist: one `_all_dbs` page over the prefix their names share."""
    if not names:
        return set()
    first, last = (user_database(PREFIX, name) for name in (min(names), max(names)))
    listed = http.get(f"{couch.url}/_all_dbs", params={"start_key": f'"{first}"', "end_key": f'"{last}"'}).json()
    return set(listed) & {user_database(PREFIX, name) for name in names}


@pytest.mark.parametrize("existing", [0, 5, 300, 1000])
@pytest.mark.parametrize("peruser", ["on", "off"])
def test_one_apply_of_the_reference_manifests_converges(couch, http, unique, peruser, existing):
    config = f"{couch.url}/_node/_local/_config/couch_peruser"
    with config_changed(http, f"{config}/enable", "true" if peruser == "on" else "false"), \
            config_changed(http, f"{config}/database_prefix", PREFIX):
        names = existing_users(couch, http, unique, existing)
        if peruser == "on":
            # Every existing user has her database, as on a server where couch_peruser has been on.
            wait_while_growing(lambda: len(user_databases(couch, http, names)), len(names),
                               f"couch_peruser to create the {existing} users' databases",
                               PERUSER_START_PERIOD + PERUSER_STALL)

        applied = reconcile_manifests(couch, "apply", "--auto-approve")
        assert applied.code == 0, applied.stdout[-3000:] + applied.stderr
        # No second apply: a plan after it comes back empty. On a cluster a plan reads `_all_dbs` from the node it
        # asks (its copy of the shards database) and `_users/_all_docs` from one copy per shard range
        # (fabric_view_all_docs.erl); on a loaded cluster a copy lagged the apply's quorum writes for seconds.
        deadline = time.monotonic() + COPIES_AGREE
        while (planned := reconcile_manifests(couch, "plan", "--detailed-exitcode")).code == 2 \
                and time.monotonic() < deadline:
            time.sleep(1.0)
        assert planned.code == 0, planned.stdout[-3000:] + planned.stderr
        assert user_databases(couch, http, names) == {user_database(PREFIX, name) for name in names}
        for created in ("alice", "bob"):  # users the manifests create get their database in the same apply
            assert http.get(f"{couch.url}/{user_database(PREFIX, created)}").status_code == 200
        if names:
            user = http.get(f"{couch.url}/_users/{quote('org.couchdb.user:' + names[-1], safe=':')}").json()
            assert user["roles"] == ["app-user"]
