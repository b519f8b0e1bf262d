"""couch_peruser: with `[couch_peruser] enable = true`, every user in the authentication database gets a
database `<database_prefix><hex of the UTF-8 name>` whose security adds the user's name to `members` and
`admins` (the user administers her own database). Deleting the user deletes the database when
`delete_dbs = true`, otherwise removes her name from its security. Like CouchDB it works asynchronously,
after the write that triggered it; turning it on (or changing its settings) covers the users that exist."""

from __future__ import annotations

import asyncio
import copy
from typing import Callable, Mapping, Protocol

from .config import Config
from .database import Database
from .revisions import DESIGN_PREFIX, DocEntry
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
    def __init__(self, cluster: PerUserHost):
        self.cluster = cluster
        cluster.doc_listeners.append(self.on_doc)
        cluster.config.listeners.append(self.on_config)

    @property
    def enabled(self) -> bool:
        return self.cluster.config.get_bool("couch_peruser", "enable")

    def on_config(self, config: Config, section: str, key: str, old: str | None, new: str | None) -> None:
        # couch_peruser restarts on any change of its section and replays the users' changes feed from the
        # start: turning it on, or changing database_prefix or q, covers every existing user.
        if section == "couch_peruser" and self.enabled:
            asyncio.get_running_loop().call_soon(self.sync_all)

    def on_doc(self, db: Database, entry: DocEntry) -> None:
        if (self.enabled and db.name == self.cluster.config.get("chttpd_auth", "authentication_db")
                and entry.id.startswith(USER_PREFIX)):
            asyncio.get_running_loop().call_soon(self.sync_user, entry)

    def sync_all(self) -> None:
        db = self.cluster.dbs.get(self.cluster.config.get("chttpd_auth", "authentication_db"))
        if db is None or not self.enabled:
            return
        for entry in list((db.docs or {}).values()):
            if not entry.id.startswith(DESIGN_PREFIX):
                self.sync_user(entry)

    def sync_user(self, entry: DocEntry) -> None:
        config = self.cluster.config
        name = entry.id[len(USER_PREFIX):]
        db_name = user_db_name(config.get("couch_peruser", "database_prefix"), name)
        existing = self.cluster.dbs.get(db_name)
        if entry.deleted:
            if existing is None:
                return
            if config.get_bool("couch_peruser", "delete_dbs"):
                self.cluster.delete_db(db_name)
            else:
                existing.set_security(without_user(existing.security, name))
            return
        if existing is None:
            q = config.get("couch_peruser", "q")
            existing = self.cluster.create_db(db_name, q=int(q) if q else None)
        wanted = with_user(existing.security, name)
        if wanted != existing.security:
            existing.set_security(wanted)
