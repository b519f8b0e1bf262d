"""What the server says about its databases, read in bulk and shared within a plan: which exist (`_all_dbs`,
which opens no database), and `_dbs_info` rows (update_seq, doc_count, q/n, props) where those figures are
needed. The database kind observes from the rows, the security and design document kinds read only the
databases that exist, the template resolution sees which user databases exist.

A row costs a CouchDB server about what a `GET db/_security` does (both open the database, and the server
keeps only `[couchdb] max_dbs_open`, 500, open), so existence comes from `_all_dbs`, rows are read only
where their figures are used, and a database's row right after its `_security` read.
"""

from __future__ import annotations

import json
from typing import Any, Collection, Mapping, Sequence

from .client import CouchSession, batched, db_path, decode
from .reads import shared

# `POST /_dbs_info` takes at most 100 keys (`[chttpd] max_db_number_for_dbs_info_req`); 101 is a 400.
INFO_KEYS_PER_REQUEST = 100
INFO_PAGE = 1000  # `GET /_dbs_info` pages like `_all_dbs`, with no cap on `limit`
# Names looked up per `_all_dbs?start_key=..&end_key=..` range: the range between the first and last of that
# many sorted wanted names, paged by INFO_PAGE when other databases lie between them (one fewer than a page,
# so that a range holding only wanted databases is one short page, not a full one and an empty one).
NAMES_PER_RANGE = INFO_PAGE - 1


def seq_number(seq: Any) -> int:
    """The number an update_seq starts with (CouchDB 3.x: `N-opaque`; an index's seq is a plain integer): the
    sum of the seqs of the shard copies that answered, which the opaque rest names. Every update moves it, but
    on a cluster two reads can take a range from two copies that count differently (`moved_since`): whether a
    database moved is for `moved_since` to say, not for this number."""
    head = str(seq if seq is not None else 0).split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def moved_since(session: CouchSession, pairs: Sequence[tuple[str, Mapping[str, Any], Any]]) -> list[bool]:
    """For each (database name, its `_dbs_info` row now, the update_seq recorded then or None when none
    was), whether the database took an update after the recorded one.

    Equal texts name the same copies at the same seqs: nothing moved. Where each shard range has one copy
    (`cluster.n` 1) the same copy answered both times, so different texts mean an update. On a cluster,
    fabric_db_info takes each range from the copy that answers first, and copies count differently
    (internal replication brings a copy only a document's latest revision: one update where its origin
    counted two), so neither the texts nor their numbers say whether a database moved. Its feed does:
    `_changes?since=<recorded>` resumes each range at the copy the recorded seq names
    (fabric_view_changes.erl `send_changes/6`), and one row after it is an update. Those are asked over the
    session's pool, one request per such database."""
    moved: list[bool] = []
    ask: list[int] = []
    for index, (_, row, recorded) in enumerate(pairs):
        same_text = recorded is not None and str(row.get("update_seq")) == str(recorded)
        moved.append(recorded is None or not same_text)
        if not same_text and recorded is not None and (row.get("cluster") or {}).get("n") != 1:
            ask.append(index)
    answers = session.map(lambda index: _updated_after(session, pairs[index][0], str(pairs[index][2])), ask)
    for index, updated in zip(ask, answers):
        moved[index] = updated
    return moved


def _updated_after(session: CouchSession, name: str, recorded: str) -> bool:
    """Whether `name`'s feed has a row after `recorded`: a deleted database has none; a seq the server cannot
    read (400: not one of this database's) tells nothing, so it counts as moved."""
    response = session.request("GET", db_path(name, "_changes"), params={"since": recorded, "limit": "1"},
                               ok=(400, 404), what=f"reading {name}/_changes for a write since the seq recorded")
    if response.status_code == 404:
        return False
    return response.status_code == 400 or bool(decode(response, None).get("results"))


def database_infos(session: CouchSession, names: Sequence[str]) -> dict[str, dict]:
    """`_dbs_info` rows of the existing databases among `names`, 100 per request over the session's pool."""
    pages = session.map(lambda keys: info_rows(session, keys), batched(names, INFO_KEYS_PER_REQUEST))
    return {name: info for page in pages for name, info in page.items()}


def info_rows(session: CouchSession, names: Sequence[str]) -> dict[str, dict]:
    """One `POST /_dbs_info` (at most INFO_KEYS_PER_REQUEST names): the rows of those that exist."""
    rows = session.post("_dbs_info", {"keys": list(names)}, what="reading _dbs_info")
    return {row["key"]: row["info"] for row in rows if "info" in row}


# What the database kind read in the plan being made: kinds observed after it (design documents, which need
# each database's doc_count to say what a view rebuild costs; security objects, read only for databases that
# exist) take the rows from here instead of reading `_dbs_info` again. The rows live as long as the plan's
# `observation`, so a long-lived session (watch) never sees old ones.
def seen_rows(session: CouchSession) -> dict[str, dict | None]:
    """Row per database name (None: seen missing) read during the current observation; empty outside one."""
    return shared(session, "database kind: _dbs_info rows", dict)


def planned_database_infos(session: CouchSession, names: Sequence[str], every: bool = False) -> dict[str, dict]:
    """`_dbs_info` rows of the existing databases among `names`: those the database kind has just observed
    in this session as it saw them, the others read now. `every` adds every database seen in this plan
    (all of them when the database kind was pruning)."""
    seen = seen_rows(session)
    missing = [name for name in names if name not in seen]
    if missing:
        seen.update({**dict.fromkeys(missing), **database_infos(session, missing)})
    return {name: info for name in (seen if every else names) if (info := seen[name]) is not None}


def existing_databases(session: CouchSession, names: Collection[str]) -> set[str]:
    """Which of `names` exist, known for the rest of the plan. A few are asked for with one `_dbs_info`
    (whose rows are kept too); many with `_all_dbs` ranges over the pool, which open no database."""
    known = shared(session, "databases: existence", dict)
    rows = seen_rows(session)
    unknown = sorted({name for name in names if name not in known and name not in rows})
    if len(unknown) <= INFO_KEYS_PER_REQUEST:
        planned_database_infos(session, unknown)
    else:
        ranges = session.map(lambda keys: all_database_names(session, keys[0], keys[-1]),
                             batched(unknown, NAMES_PER_RANGE))
        found = {name for listed in ranges for name in listed}
        known.update({name: name in found for name in unknown})
    return {name for name in names if known.get(name) or rows.get(name) is not None}


def all_database_infos(session: CouchSession) -> dict[str, dict]:
    """`_dbs_info` rows of every database, a page at a time (`GET /_dbs_info`, CouchDB 3.2+; before 3.2 only
    POST exists, so the names come from `_all_dbs` pages and the rows 100 at a time)."""
    infos: dict[str, dict] = {}
    params = {"limit": str(INFO_PAGE)}
    while True:
        response = session.request("GET", "_dbs_info", params=params, ok=(400, 404, 405),
                                   what="listing databases (_dbs_info)")
        if response.status_code != 200:
            return database_infos(session, all_database_names(session))
        rows = response.json()
        infos.update({row["key"]: row["info"] for row in rows if "info" in row})
        if len(rows) < INFO_PAGE:
            return infos
        params = {"limit": str(INFO_PAGE), "start_key": json.dumps(rows[-1]["key"]), "skip": "1"}


def all_database_names(session: CouchSession, first: str | None = None, last: str | None = None) -> list[str]:
    """Every database (or every one whose name sorts from `first` to `last`), a page of `_all_dbs` at a time."""
    names: list[str] = []
    bounds = {"start_key": json.dumps(first), "end_key": json.dumps(last)} if first is not None else {}
    params = {**bounds, "limit": str(INFO_PAGE)}
    while True:
        page = session.get("_all_dbs", params=params, what="listing databases (_all_dbs)")
        names.extend(page)
        if len(page) < INFO_PAGE:
            return names
        params = {**params, "start_key": json.dumps(page[-1]), "skip": "1"}


def every_database_info(session: CouchSession) -> dict[str, dict]:
    """`all_database_infos`, read once per plan: the template resolution and the database kind share it."""
    return shared(session, "_dbs_info", lambda: all_database_infos(session))
