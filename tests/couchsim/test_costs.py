"""couchsim charges what a real CouchDB spends opening and creating databases (couch_reconciler/couchsim/open_dbs.py).

couch_server keeps at most `[couchdb] max_dbs_open` shards open, least recently used closed first (couch_server.erl); a
request on a database opens all its q shards (fabric_db_info); `_all_dbs` reads the shard map and opens none. Those
cases count the opens (a count, not a time: a timed assertion fails on a busy machine or a cluster, where fabric's
own overhead hides the open). Creating a database makes its q shard files before the shard map names it
(fabric_db_create.erl): that case asserts only a least time, which no busy machine can make shorter. What both
cost a real 3.4.3 is in docs/couchdb.md; bench/plan_bench.py --url measures what they do to a plan on any server."""

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from couch_reconciler.couchsim.testing import SimServer


def opens_of(sim, http, method, path, **kw):
    before = sim.cluster.open_dbs.opened
    assert http.request(method, sim.url + path, **kw).status_code == 200
    return sim.cluster.open_dbs.opened - before


def test_databases_are_opened_again_only_once_closed():
    config = {"chttpd_auth": {"iterations": "1000"}, "couchdb": {"max_dbs_open": "8"}}
    with SimServer(config=config, shard_open_ms=0) as sim:
        http = requests.Session()
        http.auth = sim.admin
        names = [f"db{n}" for n in range(6)]
        for name in names:
            assert http.put(f"{sim.url}/{name}", params={"q": "2"}).status_code == 201
        assert opens_of(sim, http, "GET", "/_all_dbs") == 0
        # The last four created (eight shards) are open; the first two were closed to make room.
        assert opens_of(sim, http, "POST", "/_dbs_info", json={"keys": names[2:]}) == 0
        assert opens_of(sim, http, "GET", f"/{names[0]}/_security") == 2
        # Six databases of two shards each cannot all stay open within eight: a pass in order opens all but
        # db0 (just opened), then every later pass opens all of them again.
        assert opens_of(sim, http, "POST", "/_dbs_info", json={"keys": names}) == 10
        assert opens_of(sim, http, "POST", "/_dbs_info", json={"keys": names}) == 12
        assert opens_of(sim, http, "GET", f"/{names[-1]}") == 0


def test_a_creation_makes_its_shards_two_at_a_time_before_the_database_exists():
    config = {"chttpd_auth": {"iterations": "1000"}}
    with SimServer(config=config, shard_create_ms=300) as sim:
        http = requests.Session()
        http.auth = sim.admin
        began = time.perf_counter()
        assert http.put(f"{sim.url}/four", params={"q": "4"}).status_code == 201
        assert time.perf_counter() - began >= 0.6  # four shards, two at a time
        # Two creations of one name at once: both make their shards and only one names the database. CouchDB
        # answers the other 412, or 500 `conflict` while the winner's shard map is not yet seen
        # (fabric_db_create.erl go/2; couch_reconciler/kinds/database.py RACE_ATTEMPTS).
        with ThreadPoolExecutor(2) as both:
            statuses = sorted(both.map(lambda _: http.put(f"{sim.url}/twice", params={"q": "1"}).status_code,
                                       range(2)))
        assert statuses[0] == 201 and statuses[1] in (412, 500)
        assert http.get(f"{sim.url}/twice").json()["cluster"]["q"] == 1
