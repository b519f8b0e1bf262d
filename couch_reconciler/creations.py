"""Creation records: the databases this tool is creating, written on the server before their `PUT`.

CouchDB creates a database from a body-less `PUT /db`, so the ownership marker (in its `_security`,
ownership.py) takes a second write, and CouchDB keeps no creator of its own. A `PUT /db` that got no answer in
time may still create the database after apply gave up, and a marker write may fail: either leaves a database
this tool made that nothing marks. So, before the `PUT`s of a batch, one `_bulk_docs` writes one record per
database, `_users/_local/couch-reconciler-creating:NAME`; once a database holds its marker (or is deleted), its
record is removed, one `_bulk_docs` per batch. A record still there names a database whose `PUT` this tool
sent: where that database exists without its marker, the next plan restores the marker (or, when no manifest
lists it, `--allow-delete` prunes it). Records are read in one request per plan.

Why `_local` documents in `_users`: `_users` exists on every set-up CouchDB 3.x (watch keeps its checkpoint
there too); `_local` documents are not replicated, so a copy of `_users` never carries them; they stay out of
`_all_docs` and `_changes`, so the user kind and watch's feeds never see them, and they skip validation
functions; `GET /{db}/_local_docs` lists a range of them with their bodies in one request. A `_local` document
has no revision check: a record an earlier run left is simply written again, and removed without a rev
(docs/couchdb.md, "Local documents").

A server without `_users` (not set up yet) gets no records, and its creations go unrecorded (the database
kind then deletes a database whose marker write failed). A record outlives its purpose only when the apply
that would remove it fails, or when its database is neither created nor marked later (it left the manifests
after its `PUT` was lost): it then names a database no plan touches until one of that name appears unmarked.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Collection

from .client import CouchSession, bulk_failure, db_path, decode
from .ownership import OWNER
from .reads import shared

RECORDS_DB = "_users"
RECORD_PREFIX = "_local/couch-reconciler-creating:"


def recorded_creations(session: CouchSession) -> frozenset[str]:
    """The databases named by a creation record: one `_local_docs` range read, once per plan."""
    return shared(session, "creation records", lambda: _read(session))


def _read(session: CouchSession) -> frozenset[str]:
    params = {"start_key": json.dumps(RECORD_PREFIX), "end_key": json.dumps(RECORD_PREFIX + "\ufff0")}
    response = session.request("GET", db_path(RECORDS_DB, "_local_docs"), params=params, ok=(404,),
                               what="reading the creation records")
    if response.status_code == 404:
        return frozenset()
    rows = decode(response, "reading the creation records")["rows"]
    return frozenset(row["id"].removeprefix(RECORD_PREFIX) for row in rows)


def record_creations(session: CouchSession, names: Collection[str]) -> bool:
    """Write a record for each database of `names` before it is created; False when the server has no
    `_users` to hold them."""
    sent_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    docs = [{"_id": RECORD_PREFIX + name, "database": name, "created_by": OWNER, "sent_at": sent_at}
            for name in names]
    return _write(session, docs, "recording the databases about to be created")


def forget_creations(session: CouchSession, names: Collection[str]) -> None:
    """Remove the records of databases now marked, or deleted."""
    if names:
        _write(session, [{"_id": RECORD_PREFIX + name, "_deleted": True} for name in names],
               "removing the creation records of databases now marked")


def _write(session: CouchSession, docs: list[dict], what: str) -> bool:
    response = session.request("POST", db_path(RECORDS_DB, "_bulk_docs"), body={"docs": docs}, ok=(404,),
                               what=what)
    if response.status_code == 404:
        return False
    refused = [row for row in decode(response, what) if "error" in row]
    if refused:
        raise bulk_failure(lambda id: f"{what}: {RECORDS_DB}/{id}", refused, advice="run apply again")
    return True
