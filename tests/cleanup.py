"""Removing what a test made on a shared (possibly real) server without upsetting couch_peruser."""

from __future__ import annotations

from urllib.parse import quote

import requests


def forget_user(http: requests.Session, url: str, name: str) -> None:
    """Delete the `_users` doc of `name` if it exists, then purge its tombstones.

    couch_peruser replays `_users` from seq 0 whenever its config changes; the tombstone of a user whose
    database is gone (deleted before her, or never made) makes it crash on ensure_security and restart every
    5 s for ever, so no later sign-up gets a database (src/couch_peruser/src/couch_peruser.erl). A purged
    tombstone is no longer in the feed. A server without `_purge` (couchsim) keeps the tombstone: harmless
    there, as its couch_peruser does not replay."""
    doc_id = "org.couchdb.user:" + name
    path = f"{url}/_users/{quote(doc_id, safe=':')}"
    current = http.get(path)
    if current.status_code == 200:
        http.delete(path, params={"rev": current.json()["_rev"]})
    leaves = http.get(path, params={"open_revs": "all"}, headers={"Accept": "application/json"})
    if leaves.status_code != 200 or not isinstance(leaves.json(), list):
        return
    deleted = [leaf["ok"]["_rev"] for leaf in leaves.json() if leaf.get("ok", {}).get("_deleted")]
    if deleted:
        http.post(f"{url}/_users/_purge", json={doc_id: deleted})


def appeared_on_its_own(database: str) -> bool:
    """A system database CouchDB creates by itself when first used (`_users` by chttpd_auth_cache, say): never
    deleted by a test that saw it appear. `_global_changes` is not one: only a cluster setup or a manifest makes it."""
    return database.startswith("_") and database != "_global_changes"
