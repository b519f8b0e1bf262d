"""What opening and creating a database cost, as on a real CouchDB: the costs couchsim models
(couch_reconciler/couchsim/README.md).

A request that reads or writes a database needs its shard files open. couch_server keeps at most
`[couchdb] max_dbs_open` (500) of them open and closes the least recently used idle one to open another
(couch_server.erl maybe_close_lru_db/1); opening one reads its file header, far slower than answering from
a file already open. A clustered database has q shards and a request opens all of them (fabric_db_info,
fabric_db_meta:get_security/2), so a plan that reads 10,000 databases twice opens each twice, and
`POST /_dbs_info` with 100 keys costs 1.3-1.5 s on such a server (facts), while `_all_dbs` reads only the
shard map and opens nothing.

Creating a database makes its q shard files, each one's header written and synced (couch_bt_engine.erl
init/2), after the name and existence checks and before the shard map names the database (fabric_db_create.erl
go/2): it costs a real server far more than anything a request on an open database does.

couchsim keeps databases in memory: this module charges `shard_open_s` of a request's time for each shard
it finds closed and `shard_create_s` for each shard a creation makes, at most `concurrency` at a time (the
server's schedulers, which both share), and keeps the LRU of open shards within `max_dbs_open`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from .config import Config

# Calibrated on a real 3.4.3 on 2 cores (facts, "Cost of opening databases"): 10,000 databases of q=2 were
# read by 100 concurrent-ish POST /_dbs_info in ~9 s of wall time (each request 1.3-1.5 s, queued behind
# the others), i.e. ~0.9 ms a shard with two opening at a time; a bare GET db/_security over the same
# databases ran at ~1.5 ms a request.
SHARD_OPEN_MS = 0.9
# Calibrated on the same server (docs/couchdb.md, Bulk reads): 400 `PUT /db` of q=2 with 16 in flight came 4.5 ms
# apart, i.e. ~4.5 ms a shard with two made at a time (one at a time each took 11-12 ms).
SHARD_CREATE_MS = 4.5
OPEN_CONCURRENCY = 2


class OpenDatabases:
    def __init__(self, config: Config, shard_open_ms: float = SHARD_OPEN_MS,
                 shard_create_ms: float = SHARD_CREATE_MS, concurrency: int = OPEN_CONCURRENCY):
        self.config = config
        self.shard_open_s = shard_open_ms / 1000
        self.shard_create_s = shard_create_ms / 1000
        self.concurrency = concurrency
        self.lru: OrderedDict[str, int] = OrderedDict()  # database -> its open shards, least recent first
        self.open_shards = 0
        self.opened = 0  # shard opens so far, for tests and benchmarks
        self._slots: asyncio.Semaphore | None = None

    def _fit(self, name: str, shards: int) -> None:
        self.lru[name] = shards
        self.lru.move_to_end(name)
        self.open_shards += shards
        limit = max(1, self.config.get_int("couchdb", "max_dbs_open"))
        while self.open_shards > limit and len(self.lru) > 1:
            _, closed = self.lru.popitem(last=False)
            self.open_shards -= closed

    async def create(self, shards: int) -> None:
        """A database of `shards` shards is about to be created: its shard files are made first."""
        await self._each_shard(shards, self.shard_create_s)

    def created(self, name: str, shards: int) -> None:
        """A new database's shards are open once created."""
        self.closed(name)
        self._fit(name, shards)

    def closed(self, name: str) -> None:
        self.open_shards -= self.lru.pop(name, 0)

    async def _each_shard(self, shards: int, seconds: float) -> None:
        """`seconds` of work on each of `shards` shards: fabric works on a database's shards in parallel, and
        the server's schedulers bound how many are worked on at once."""
        if seconds > 0:
            await asyncio.gather(*(self._occupy(seconds) for _ in range(shards)))

    async def _occupy(self, seconds: float) -> None:
        """`seconds` of one of the server's schedulers, once one is free."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        async with self._slots:
            await asyncio.sleep(seconds)

    async def use(self, name: str, shards: int) -> None:
        """The database is about to be read or written: its shards are opened first if they are closed."""
        if name in self.lru:
            self.lru.move_to_end(name)
            return
        await self._each_shard(shards, self.shard_open_s)
        self.opened += shards
        if name not in self.lru:
            self._fit(name, shards)
