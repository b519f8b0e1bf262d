"""Leaving a shared (possibly real) server as a test found it, without upsetting couch_peruser."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator
from urllib.parse import quote

import requests

from couch_reconciler.client import batched
from waiting import copies

# A cluster's copies of a document agree within seconds when loaded (delete_everywhere).
DELETE_WAIT = 60.0
SETTLED_ROUNDS = 2
SETTLE_INTERVAL = 1.0
# Concurrent reads of documents' leaves, so that a module's thousand users are forgotten in seconds.
READERS = 8
# [purge] max_document_id_number (rel/overlay/etc/default.ini): the ids one `_purge` request may name.
PURGED_PER_REQUEST = 100
USER_PREFIX = "org.couchdb.user:"
AUTH_DESIGN = "_design/_auth"
# The system databases a test may give another `_security` (and must give back).
SYSTEM_DBS = ("_users", "_replicator")


def forget_users(http: requests.Session, url: str, names: Iterable[str]) -> None:
    """Delete the `_users` docs of `names` that exist, then purge their tombstones.

    couch_peruser replays `_users` from seq 0 whenever its config changes; the tombstone of a user whose
    database is gone (deleted before her, or never made) makes it crash on ensure_security and restart every
    5 s for ever, so no later sign-up on that shard gets a database (src/couch_peruser/src/couch_peruser.erl).
    A purged tombstone is no longer in the feed. A server without `_purge` (couchsim) keeps the tombstone:
    harmless there, as each test or module gets a couchsim of its own."""
    delete_everywhere(http, url, "_users", [USER_PREFIX + name for name in names], purge=True)


def delete_everywhere(http: requests.Session, url: str, database: str, doc_ids: Iterable[str],
                      purge: bool = False) -> None:
    """Delete every live leaf of `doc_ids` in `database` (and, with `purge`, purge their tombstones) until every
    copy agrees that none is left.

    Every leaf, not only the winner: on a cluster the replicator writes a job's `_replication_state` into its
    shard copy of the document (couch_replicator_docs.erl save_rep_doc/2), so a document a test also wrote can
    hold conflicting branches, and deleting the winner alone brings a losing branch back as the document.
    Every copy is asked (r = n), and an answer without the document must hold in two rounds: on a 3-node 3.4.3
    a purge answered 201 while a copy still lacked the tombstone it purged; internal replication then brought
    the tombstone back to every copy after a quorum had read 404 (mem3_rep pushes the documents a copy holds)."""
    unseen = {doc_id: 0 for doc_id in doc_ids}
    if not unseen:
        return
    every = copies(http, url, database)
    base = f"{url}/{quote(database, safe='')}"

    def leaves(doc_id: str) -> list[dict] | None:
        """The document's leaves on every copy ([] when none knows it); None for an answer that is neither."""
        answer = http.get(f"{base}/{quote(doc_id, safe=':')}",
                          params={"open_revs": "all", "r": every}, headers={"Accept": "application/json"})
        if answer.status_code == 404:
            return []
        found = answer.json() if answer.status_code == 200 else None
        return [leaf["ok"] for leaf in found if "ok" in leaf] if isinstance(found, list) else None

    settled_at = time.monotonic()
    with ThreadPoolExecutor(READERS) as readers:
        while unseen:
            live, dead = [], {}
            for doc_id, found in zip(list(unseen), readers.map(leaves, list(unseen))):
                left = found if purge or found is None else [leaf for leaf in found if not leaf.get("_deleted")]
                if left is None or (not left and (every == 1 or unseen[doc_id] + 1 == SETTLED_ROUNDS)):
                    del unseen[doc_id]
                    settled_at = time.monotonic()
                    continue
                unseen[doc_id] = 0 if left else unseen[doc_id] + 1
                live += [{"_id": doc_id, "_rev": leaf["_rev"], "_deleted": True}
                         for leaf in left if not leaf.get("_deleted")]
                if revs := [leaf["_rev"] for leaf in left if leaf.get("_deleted")]:
                    dead[doc_id] = revs
            if live:
                http.post(f"{base}/_bulk_docs", json={"docs": live})
                settled_at = time.monotonic()
            for batch in batched(sorted(dead), PURGED_PER_REQUEST):
                purged = http.post(f"{base}/_purge", json={doc_id: dead[doc_id] for doc_id in batch})
                if purged.status_code >= 300:
                    for doc_id in batch:  # a server without `_purge` keeps the tombstone (forget_users)
                        del unseen[doc_id]
            if unseen and time.monotonic() - settled_at > DELETE_WAIT:
                raise AssertionError(f"{len(unseen)} documents, {sorted(unseen)[0]} first, still live on a copy of "
                                     f"{database} after {DELETE_WAIT:g}s of deleting"
                                     + ("; a tombstone left behind stops couch_peruser for every later test"
                                        if purge else ""))
            if unseen:
                time.sleep(SETTLE_INTERVAL)


# Keys a running CouchDB applies when they are set but not when they are removed: couch_replicator_scheduler.erl
# handle_config_change/5 reads the new value with list_to_integer/1, so a deletion crashes its config listener and
# the scheduler keeps the last value set (a suite that lowered max_jobs and deleted it again left a real 3.4.3
# running one job at a time). Removing one sets CouchDB's default (rel/overlay/etc/default.ini) first.
APPLIED_ONLY_WHEN_SET = {("replicator", "max_jobs"): "500", ("replicator", "max_churn"): "20",
                         ("replicator", "interval"): "60000", ("replicator", "max_history"): "20"}


def remove_config(http, path: str, section: str, key: str) -> None:
    """DELETE the config key at `path` (`.../_node/NODE/_config/SECTION/KEY`) as a running server takes it."""
    default = APPLIED_ONLY_WHEN_SET.get((section, key))
    if default is not None:
        http.put(path, json=default)
    http.delete(path)


def appeared_on_its_own(database: str) -> bool:
    """A system database CouchDB creates by itself when first used (`_users` by chttpd_auth_cache, say): never
    deleted by a test that saw it appear. `_global_changes` is not one: only a cluster setup or a manifest makes it."""
    return database.startswith("_") and database != "_global_changes"


@dataclass
class Snapshot:
    databases: set[str]
    users: set[str]  # every id `_users/_changes` lists: users, design documents, tombstones
    designs: set[str]  # the `_users` design documents that are not deleted
    replications: set[str]
    security: dict[str, object]
    config: dict[str, dict]


def snapshot(http: requests.Session, url: str) -> Snapshot:
    nodes = http.get(f"{url}/_membership").json()["cluster_nodes"]
    changes = http.get(f"{url}/_users/_changes").json()["results"]
    users = {row["id"] for row in changes}
    # A design document made again under the id of one an earlier test deleted has a tombstone in `before`.
    designs = {row["id"] for row in changes if row["id"].startswith("_design/") and not row.get("deleted")}
    replications = {row["id"] for row in http.get(f"{url}/_replicator/_all_docs").json()["rows"]}
    return Snapshot(set(http.get(f"{url}/_all_dbs").json()), users, designs, replications,
                    {db: http.get(f"{url}/{db}/_security").json() for db in SYSTEM_DBS},
                    {node: http.get(f"{url}/_node/{node}/_config").json() for node in nodes})


def restore(http: requests.Session, url: str, before: Snapshot) -> None:
    """Undo what was added since `before`, in the order CouchDB tolerates: `_replicator` documents first (a
    running job could create its target again), then users (tombstones purged) before their databases, then
    the system databases' security, then every node's config (couch_peruser, CORS, server admins...)."""
    now = snapshot(http, url)
    delete_everywhere(http, url, "_replicator", sorted(now.replications - before.replications))
    forget_users(http, url, sorted(doc_id.removeprefix(USER_PREFIX) for doc_id in now.users - before.users
                                   if doc_id.startswith(USER_PREFIX)))
    # CouchDB's own `_design/_auth` (chttpd_auth_cache.erl `listen_for_changes`, once `_users` exists) stays
    # even when it appeared during the test, as on a cluster that has just been set up: later user writes need it.
    for doc_id in sorted(now.designs - before.designs - {AUTH_DESIGN}):
        doc = f"{url}/_users/{quote(doc_id, safe='/')}"
        current = http.get(doc)
        if current.status_code == 200:
            http.delete(doc, params={"rev": current.json()["_rev"]})
    for database in sorted(now.databases - before.databases):
        if not appeared_on_its_own(database):
            http.delete(f"{url}/{quote(database, safe='')}")
    for database, security in before.security.items():
        if now.security[database] != security:
            http.put(f"{url}/{database}/_security", json=security)
    for node, config in now.config.items():
        old_config = before.config.get(node, {})
        for section in config.keys() | old_config.keys():
            values, old_values = config.get(section, {}), old_config.get(section, {})
            for key in values.keys() | old_values.keys():
                old = old_values.get(key)
                if old == values.get(key):
                    continue
                path = f"{url}/_node/{node}/_config/{quote(section, safe='')}/{quote(key, safe='')}"
                if old is None:
                    remove_config(http, path, section, key)
                else:  # an admin's stored hash is put back as it is, not hashed again
                    http.put(path, json=old, params={"raw": "true"} if section == "admins" else None)

@contextmanager
def left_as_found(url: str, admin: tuple[str, str]) -> Iterator[None]:
    """Whatever the block adds to the server at `url` goes afterwards (see `restore`), so that the next test
    (or module, or a second run of the suite) finds the server as this one did."""
    with requests.Session() as http:
        http.auth = admin
        before = snapshot(http, url)
        try:
            yield
        finally:
            restore(http, url, before)
