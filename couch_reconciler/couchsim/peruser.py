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
    shards' listeners get through their changes).

    Each enabled start begins a mem3_cluster of its own whose one stability check calls the cluster stable
    `cluster_start_period` later (mem3_cluster:init/1, handle_info(stability_check, ...)). A config change
    starts couch_peruser again in the same process without stopping the earlier ones (handle_cast(update_config,
    ...) stops only the listeners), so the listener starts with the earliest check still pending: up to a start
    period after an earlier enabled start, not after the latest change. One that fires while couch_peruser is
    disabled crashes it (start_listening/1 asks mem3 for the shards of an undefined database); after a crash its
    supervisor starts a new process, which no earlier check reaches."""

    def __init__(self, cluster: PerUserHost):
        self.cluster = cluster
        self.listening = False
        self.stability_checks: list[asyncio.TimerHandle] = []
        cluster.doc_listeners.append(self.on_doc)
        cluster.config.listeners.append(self.on_config)

    @property
    def enabled(self) -> bool:
        return self.cluster.config.get_bool("couch_peruser", "enable")

    def start(self, crashed: bool = False) -> None:
        """couch_peruser:init_state/0: at node start and after a config change in the same process; in a new
        one after a crash."""
        self.listening = False
        if crashed:
            for check in self.stability_checks:
                check.cancel()
            self.stability_checks.clear()
        if self.enabled:
            period = abs(self.cluster.config.get_int("couch_peruser", "cluster_start_period"))
            check = asyncio.get_running_loop().call_later(period, lambda: self.cluster_stable(check))
            self.stability_checks.append(check)

    def cluster_stable(self, check: asyncio.TimerHandle) -> None:
        self.stability_checks.remove(check)
        if not self.enabled:
            self.start(crashed=True)
        elif not self.listening:
            self.start_listening()

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
            self.start(crashed=True)  # couch_peruser stops on the listener's 'DOWN': restarted by its supervisor

    def start_listening(self) -> None:
        """start_listening/1: every shard's listener follows its changes from the first one; one that ends
        stops only its own shard's replay, then couch_peruser starts again."""
        db = self.users_db()
        if db is None:
            return
        self.listening = True
        ended: set[int] = set()
        for entry in db.changes_since(0):
            if entry.shard not in ended and entry.id.startswith(USER_PREFIX) and not self.handle(entry):
                ended.add(entry.shard)
        if ended:
            self.start(crashed=True)

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
