"""couch_peruser: with `[couch_peruser] enable = true`, every user in the authentication database gets a
database `<database_prefix><hex of the UTF-8 name>` whose security adds the user's name to `members` and
`admins` (the user administers her own database). Deleting the user deletes the database when
`delete_dbs = true`, otherwise removes her name from its security. Like CouchDB it works asynchronously,
after the write that triggered it, and only while its listener runs (see PerUser)."""

from __future__ import annotations

import asyncio
import copy
from typing import Callable, Mapping, Protocol

from .config import Config
from .database import Database
from .revisions import DocEntry
from .users import USER_PREFIX


class PerUserHost(Protocol):
    """What couch_peruser uses of the cluster."""

    config: Config
    dbs: Mapping[str, Database]
    doc_listeners: list[Callable[[Database, DocEntry], None]]

    def create_db(self, name: str, q: int | None = None, n: int | None = None,
                  partitioned: bool = False) -> Database: ...

    def delete_db(self, name: str) -> None: ...


def user_db_name(prefix: str, user: str) -> str:
    """couch_peruser.erl `user_db_name/1`: `string:to_lower(integer_to_list(X, 16))` per byte of the UTF-8
    name, so a byte below 0x10 (a control character) is one digit, not two."""
    return prefix + "".join(format(byte, "x") for byte in user.encode("utf-8"))


def with_user(security: dict, user: str) -> dict:
    """couch_peruser:add_user/3: the name goes first in `admins.names` and `members.names`."""
    updated = copy.deepcopy(security)
    for group in ("admins", "members"):
        names = updated.setdefault(group, {}).setdefault("names", [])
        if user not in names:
            names.insert(0, user)
    return updated


def without_user(security: dict, user: str) -> dict:
    updated = copy.deepcopy(security)
    for group in ("members", "admins"):
        names = updated.get(group, {}).get("names")
        if names and user in names:
            names.remove(user)
    return updated


class PerUser:
    """couch_peruser's gen_server. It listens only once "the cluster is stable": `cluster_start_period`
    seconds (5) after it starts (mem3_cluster), and it starts again on every change of its config section
    or of the authentication database; each start replays the users' changes from the first one
    (couch_changes from since 0, one listener per shard of the users' database), so users written meanwhile
    are handled then, and existing users whose database is missing get it again. A deleted user whose
    database is gone, with `delete_dbs = false`, makes her shard's listener end
    (fabric:get_all_security/2 throws database_does_not_exist, which init_changes_handler/1 catches);
    couch_peruser stops on its 'DOWN', its supervisor starts it again, and that listener reaches the same
    change every start period: while it loops, no later user of that shard gets a database (the other
    shards' listeners get through their changes)."""

    def __init__(self, cluster: PerUserHost):
        self.cluster = cluster
        self.listening = False
        self.timer: asyncio.TimerHandle | None = None
        cluster.doc_listeners.append(self.on_doc)
        cluster.config.listeners.append(self.on_config)

    @property
    def enabled(self) -> bool:
        return self.cluster.config.get_bool("couch_peruser", "enable")

    def start(self) -> None:
        """couch_peruser:init_state/0 (at node start, after a config change, after a crash)."""
        self.listening = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.enabled:
            period = abs(self.cluster.config.get_int("couch_peruser", "cluster_start_period"))
            self.timer = asyncio.get_running_loop().call_later(period, self.start_listening)

    def on_config(self, config: Config, section: str, key: str, old: str | None, new: str | None) -> None:
        # couch_peruser:subscribe_for_changes/0: its own section, and the authentication database.
        if section == "couch_peruser" or (section in ("chttpd_auth", "couch_httpd_auth")
                                          and key == "authentication_db"):
            self.start()

    def users_db(self) -> Database | None:
        return self.cluster.dbs.get(self.cluster.config.get("chttpd_auth", "authentication_db"))

    def on_doc(self, db: Database, entry: DocEntry) -> None:
        if self.listening and db is self.users_db() and entry.id.startswith(USER_PREFIX):
            asyncio.get_running_loop().call_soon(self.handle_live, entry)

    def handle_live(self, entry: DocEntry) -> None:
        if self.listening and not self.handle(entry):
            self.start()  # couch_peruser stops on the listener's 'DOWN': restarted by its supervisor

    def start_listening(self) -> None:
        """start_listening/1: every shard's listener follows its changes from the first one; one that ends
        stops only its own shard's replay, then couch_peruser starts again."""
        self.timer = None
        db = self.users_db()
        if db is None or not self.enabled:
            return
        self.listening = True
        ended: set[int] = set()
        for entry in db.changes_since(0):
            if entry.shard not in ended and entry.id.startswith(USER_PREFIX) and not self.handle(entry):
                ended.add(entry.shard)
        if ended:
            self.start()

    def handle(self, entry: DocEntry) -> bool:
        """changes_handler/3 for one user document; False when it ended its shard's listener."""
        config = self.cluster.config
        name = entry.id[len(USER_PREFIX):]
        db_name = user_db_name(config.get("couch_peruser", "database_prefix"), name)
        existing = self.cluster.dbs.get(db_name)
        if entry.deleted:
            if config.get_bool("couch_peruser", "delete_dbs"):
                if existing is not None:
                    self.cluster.delete_db(db_name)
            elif existing is None:
                return False
            else:
                existing.set_security(without_user(existing.security, name))
            return True
        if existing is None:
            existing = self.cluster.create_db(db_name, q=config.get_int("couch_peruser", "q"))
        wanted = with_user(existing.security, name)
        if wanted != existing.security:
            existing.set_security(wanted)
        return True
