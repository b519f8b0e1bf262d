"""Creation records: the databases this tool is creating, written on the server before their `PUT`.

CouchDB creates a database from a body-less `PUT /db`, so the ownership marker (in its `_security`,
ownership.py) takes a second write, and CouchDB keeps no creator of its own. A `PUT /db` that got no answer in
time may still create the database after apply gave up, and a marker write may fail: either leaves a database
this tool made that nothing marks. So, before the `PUT`s of a batch, one record naming the batch's databases
is written, `_users/_local/couch-reconciler-creating:ID`; once they hold their marker (or are deleted), the
record goes, or is written again naming those that do not. A database a record names is one whose `PUT` this
tool sent: where it exists without its marker, the next plan restores the marker (or, when no manifest lists
it, `--allow-delete` prunes it). Records are read in one request per plan.

One record per batch, not per database: a first apply of 100,000 databases then writes 1,000 small `_local`
documents to `_users` and removes them, not 100,000 of each, and each batch costs two requests.

Why `_local` documents in `_users`: `_users` exists on every set-up CouchDB 3.x (watch keeps its checkpoint
there too); `_local` documents are not replicated, so a copy of `_users` never carries them; they stay out of
`_all_docs` and `_changes`, so the user kind and watch's feeds never see them, and they skip validation
functions; `GET /{db}/_local_docs?include_docs=true` lists a range of them with their bodies in one request. A
`_local` document has no revision check: a record is written again, or removed, without a rev
(docs/couchdb.md, "Local documents").

A server without `_users` (not set up yet) gets no records, and its creations go unrecorded (the database
kind then deletes a database whose marker write failed). A record outlives its purpose only when the apply
that would settle it fails, or when a database it names is neither created nor marked later (it left the
manifests after its `PUT` was lost): it then names a database no plan touches until one of that name appears
unmarked.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from typing import Collection, Mapping
from uuid import uuid4

from .client import CouchSession, bulk_failure, db_path, decode
from .ownership import OWNER
from .reads import shared

RECORDS_DB = "_users"
RECORD_PREFIX = "_local/couch-reconciler-creating:"


def recorded_creations(session: CouchSession) -> Mapping[str, str]:
    """Each database a creation record names -> the id of a record naming it: one `_local_docs` range read,
    once per plan."""
    return shared(session, "creation records", lambda: _named(_read(session)))


def record_creations(session: CouchSession, names: Collection[str]) -> str | None:
    """Write one record naming the databases `names`, before they are created: its id, or None when the server
    has no `_users` to hold it."""
    record = RECORD_PREFIX + uuid4().hex
    return record if _write(session, [_record(record, names)], "recording the databases about to be created") \
        else None


def settle_record(session: CouchSession, record: str, left: Collection[str]) -> None:
    """The batch's record once its databases are written: removed, or naming only those `left` unmarked."""
    _write(session, [_settled(record, left)], "removing the creation record of databases now marked")


# Records rewritten by one apply at a time: two batches that each drop names from the same record would
# otherwise each write it back with the other's names still in it.
_REWRITING = threading.Lock()


def forget_creations(session: CouchSession, names: Collection[str]) -> None:
    """No record names the databases `names` any more (marked since, or deleted): each record naming one is
    written again without them, or removed."""
    gone = set(names)
    if not gone:
        return
    with _REWRITING:
        settled = [_settled(record, named - gone) for record, named in _read(session).items() if named & gone]
        if settled:
            _write(session, settled, "removing the creation records of databases now marked")


def _record(record: str, names: Collection[str]) -> dict:
    return {"_id": record, "databases": sorted(names), "created_by": OWNER,
            "sent_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _settled(record: str, left: Collection[str]) -> dict:
    """The record written again naming only the databases `left`, or removed when none is."""
    return _record(record, left) if left else {"_id": record, "_deleted": True}


def _read(session: CouchSession) -> dict[str, set[str]]:
    """Each record's id -> the databases it names."""
    params = {"start_key": json.dumps(RECORD_PREFIX), "end_key": json.dumps(RECORD_PREFIX + "\ufff0"),
              "include_docs": "true"}
    response = session.request("GET", db_path(RECORDS_DB, "_local_docs"), params=params, ok=(404,),
                               what="reading the creation records")
    if response.status_code == 404:
        return {}
    rows = decode(response, "reading the creation records")["rows"]
    return {row["id"]: set(row["doc"].get("databases", ())) for row in rows}


def _named(records: Mapping[str, set[str]]) -> dict[str, str]:
    return {name: record for record, named in sorted(records.items()) for name in named}


def _write(session: CouchSession, docs: list[dict], what: str) -> bool:
    response = session.request("POST", db_path(RECORDS_DB, "_bulk_docs"), body={"docs": docs}, ok=(404,),
                               what=what)
    if response.status_code == 404:
        return False
    refused = [row for row in decode(response, what) if "error" in row]
    if refused:
        raise bulk_failure(lambda id: f"{what}: {RECORDS_DB}/{id}", refused, advice="run apply again")
    return True
