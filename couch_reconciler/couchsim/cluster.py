"""The cluster: its nodes (each with its own config store), its databases, and the events other parts
follow (document writes, database updates for `/_db_updates`).

Requests are answered by the first node, which `/_node/_local` names; server-wide behaviour reads that node's
config, as the node handling a request reads its own config in CouchDB.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Callable

from .auth import Authenticator, hash_admin_password, is_hashed_admin
from .config import Config
from .database import Database
from .revisions import DocEntry
from .design import DesignFunctions
from .errors import CouchError, db_not_found
from .open_dbs import SHARD_CREATE_MS, SHARD_OPEN_MS, OpenDatabases
from .peruser import PerUser
from .replication.documents import ReplicatorDbBehaviour
from .security import ADMIN_ONLY_SECURITY, UserCtx
from .users import AUTH_DDOC, UsersDbBehaviour

# couch_db:validate_dbname/1 (3.x): system dbs, or lowercase names as below; `/`-separated suffixes allowed.
DB_NAME = re.compile(r"^[a-z][a-z0-9_$()+/-]*$")
SYSTEM_DBS = frozenset({"_users", "_replicator", "_global_changes"})
# Node names that are Erlang atoms on any node without being cluster members: chttpd_node answers 412 nodedown.
KNOWN_NODE_ATOMS = frozenset({"nonode@nohost"})

DocListener = Callable[[Database, DocEntry], None]


class ReplicatorHooks:
    """`/_scheduler/*` answers of a cluster whose replicator has not started: the server replaces this object
    with couch_reconciler/couchsim/replicator.py's ClusterReplicator when it starts serving."""

    def scheduler_docs(self, db_name: str = "_replicator", states: list[str] | None = None,
                       limit: int | None = None, skip: int = 0) -> dict:
        return {"total_rows": 0, "offset": 0, "docs": []}

    def scheduler_doc(self, db_name: str, doc_id: str) -> dict:
        raise CouchError(404, "not_found", "unknown")

    def scheduler_jobs(self, limit: int = 100, skip: int = 0) -> dict:
        return {"total_rows": 0, "offset": 0, "jobs": []}

    def scheduler_job(self, job_id: str) -> dict:
        raise CouchError(404, "not_found", "unknown")

    def active_tasks(self) -> list:
        return []

    def db_deleted(self, name: str) -> None:
        """A deleted replicator database takes its jobs with it."""


class Cluster:
    def __init__(self, nodes: int = 1, admins: dict[str, str] | None = None,
                 config: dict[str, dict[str, str]] | None = None, shard_open_ms: float = SHARD_OPEN_MS,
                 shard_create_ms: float = SHARD_CREATE_MS):
        self.node_names = [f"couchdb@node{i}" for i in range(1, nodes + 1)]
        self.uuid = uuid.uuid4().hex
        seed = {
            "couchdb": {"uuid": self.uuid, "max_document_size": "8000000", "database_dir": "./data",
                        "view_index_dir": "./data"},
            "chttpd": {"port": "5984", "bind_address": "127.0.0.1"},
            "chttpd_auth": {"secret": uuid.uuid4().hex},
            "cluster": {"n": str(min(3, nodes))},
        }
        for section, values in (config or {}).items():
            seed.setdefault(section, {}).update(values)
        self.configs = {name: Config(name, seed) for name in self.node_names}
        self.local_node = self.node_names[0]
        self.open_dbs = OpenDatabases(self.config, shard_open_ms, shard_create_ms)
        self.dbs: dict[str, Database] = {}
        self.doc_listeners: list[DocListener] = []
        self.design = DesignFunctions()
        self.replicator = ReplicatorHooks()
        self.auth = Authenticator(self)
        # /_db_updates rows, "type:dbname" -> seq, kept in seq order; recorded only while _global_changes exists
        self.db_updates: dict[str, int] = {}
        self.db_updates_seq = 0
        # Events heard but not written to _global_changes yet, in the order heard (see db_event)
        self.db_events_heard: dict[str, None] = {}
        self.tasks: set[asyncio.Task] = set()
        for node_config in self.configs.values():
            for name, password in (admins or {}).items():
                node_config.sections.setdefault("admins", {})[name] = self._hashed(node_config, password)
            node_config.listeners.append(self._on_config)
        for name in ("_users", "_replicator"):
            self.create_db(name)
        self._install(self.dbs["_users"], AUTH_DDOC)
        self.peruser = PerUser(self)

    @property
    def config(self) -> Config:
        return self.configs[self.local_node]

    def node_config(self, name: str) -> Config:
        """chttpd_node:call_node/4: `_local`, a member, a down node (412) or no such node (404)."""
        if name == "_local":
            name = self.local_node
        if name in self.configs:
            return self.configs[name]
        if name in KNOWN_NODE_ATOMS:
            raise CouchError(412, "nodedown", f"{name} is down")
        raise CouchError(404, "not_found", f"no such node: {name}")

    # ------------------------------------------------------------------ admins
    @staticmethod
    def _hashed(config: Config, password: str) -> str:
        if is_hashed_admin(password):
            return password
        return hash_admin_password(password, config.get("chttpd_auth", "pbkdf2_prf"),
                                   config.get_int("chttpd_auth", "iterations"))

    def _on_config(self, config: Config, section: str, key: str, old: str | None, new: str | None) -> None:
        if section == "admins" and new is not None and not is_hashed_admin(new):
            # CouchDB hashes a plaintext admin asynchronously: until then it reads back as plaintext and
            # authenticates nobody.
            self.spawn(self._hash_admin(config, key, new))

    async def _hash_admin(self, config: Config, name: str, plaintext: str) -> None:
        hashed = await asyncio.get_running_loop().run_in_executor(None, self._hashed, config, plaintext)
        if config.get_set("admins", name) == plaintext:
            config.set("admins", name, hashed)

    def spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------------ databases
    def default_security(self) -> dict:
        # [couchdb] default_security: admin_only (3.x default) or everyone (the 2.x behaviour: public).
        if self.config.get("couchdb", "default_security") == "everyone":
            return {}
        return ADMIN_ONLY_SECURITY

    def check_new_db(self, name: str) -> None:
        """CouchError unless `name` may be created now (fabric_db_create.erl checks before it makes anything)."""
        if name in self.dbs:
            raise CouchError(412, "file_exists", "The database could not be created, the file already exists.")
        if not valid_db_name(name):
            raise illegal_db_name(name)

    def shards_of_new_db(self, q: int | None) -> int:
        return q or self.config.get_int("cluster", "q")

    def create_db(self, name: str, q: int | None = None, n: int | None = None, partitioned: bool = False) -> Database:
        self.check_new_db(name)
        db = Database(self, name, self.shards_of_new_db(q),
                      n or int(self.config.get("cluster", "n", "3")), partitioned, self.default_security())
        if name == self.config.get("chttpd_auth", "authentication_db"):
            db.behaviour = UsersDbBehaviour()
        elif name == "_replicator" or name.endswith("/_replicator"):
            db.behaviour = ReplicatorDbBehaviour()
        self.dbs[name] = db
        self.open_dbs.created(name, db.q)
        self.db_event(name, "created")
        return db

    def delete_db(self, name: str) -> None:
        db = self.dbs.pop(name, None)
        if db is None:
            raise db_not_found()
        db.wake()  # its open feeds end
        self.open_dbs.closed(name)
        self.replicator.db_deleted(name)
        self.design.invalidate(name)
        if name == "_global_changes":
            self.db_updates.clear()
            self.db_events_heard.clear()
        self.db_event(name, "deleted")

    def get_db(self, name: str) -> Database:
        db = self.dbs.get(name)
        if db is None:
            raise db_not_found()
        return db

    def _install(self, db: Database, doc: dict) -> None:
        """Writes a system design doc directly, as CouchDB's own start-up does (no validation, no user)."""
        db._edit(dict(doc), UserCtx(None, ["_admin"]))

    # ------------------------------------------------------------------ events
    def doc_updated(self, db: Database, entry: DocEntry) -> None:
        if entry.id.startswith("_design/"):
            self.design.invalidate(db.name)
        for listener in self.doc_listeners:
            listener(db, entry)

    def db_event(self, name: str, kind: str) -> None:
        """A database event reaches `/_db_updates` late: CouchDB's listener collects events and its server
        writes them to `_global_changes` in one batch every `[global_changes] max_write_delay` ms
        (src/global_changes/src/global_changes_server.erl `flush_updates`); couchsim writes each batch that
        long after its first event, the latest a real server does. Outside an event loop (start-up) at once."""
        if "_global_changes" not in self.dbs or name == "_global_changes":
            return
        first = not self.db_events_heard
        self.db_events_heard[f"{kind}:{name}"] = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_db_events()
            return
        if first:
            loop.call_later(self.config.get_int("global_changes", "max_write_delay") / 1000, self._write_db_events)

    def _write_db_events(self) -> None:
        updates = self.dbs.get("_global_changes")
        heard, self.db_events_heard = self.db_events_heard, {}
        if updates is None:
            return
        for key in heard:
            self.db_updates.pop(key, None)
            self.db_updates_seq += 1
            self.db_updates[key] = self.db_updates_seq
        updates.notify()


def valid_db_name(name: str) -> bool:
    if name in SYSTEM_DBS:
        return True
    for suffix in ("/_users", "/_replicator", "/_global_changes"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return bool(DB_NAME.match(name)) and len(name) <= 238


def illegal_db_name(name: str) -> CouchError:
    return CouchError(400, "illegal_database_name",
                      f"Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the characters "
                      "_, $, (, ), +, -, and / are allowed. Must begin with a letter.")
