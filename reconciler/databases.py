"""What the server says about its databases (`_dbs_info` rows: existence, update_seq, doc_count, q/n),
read in bulk and shared within a plan: the database kind observes from these rows, the security and design
document kinds read only the databases that exist, the template resolution sees which user databases exist.
"""

from __future__ import annotations

import json
from typing import Sequence

from .client import CouchSession, batched
from .reads import shared

# `POST /_dbs_info` takes at most 100 keys (`[chttpd] max_db_number_for_dbs_info_req`); 101 is a 400.
INFO_KEYS_PER_REQUEST = 100
INFO_PAGE = 1000  # `GET /_dbs_info` pages like `_all_dbs`, with no cap on `limit`


def database_infos(session: CouchSession, names: Sequence[str]) -> dict[str, dict]:
    """`_dbs_info` rows of the existing databases among `names`, 100 per request over the session's pool."""
    batches = batched(names, INFO_KEYS_PER_REQUEST)
    pages = session.map(lambda keys: session.post("_dbs_info", {"keys": keys}, what="reading _dbs_info"), batches)
    return {row["key"]: row["info"] for page in pages for row in page if "info" in row}


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


def all_database_names(session: CouchSession) -> list[str]:
    names: list[str] = []
    params = {"limit": str(INFO_PAGE)}
    while True:
        page = session.get("_all_dbs", params=params, what="listing databases (_all_dbs)")
        names.extend(page)
        if len(page) < INFO_PAGE:
            return names
        params = {"limit": str(INFO_PAGE), "start_key": json.dumps(page[-1]), "skip": "1"}


def every_database_info(session: CouchSession) -> dict[str, dict]:
    """`all_database_infos`, read once per plan: the template resolution and the database kind share it."""
    return shared(session, "_dbs_info", lambda: all_database_infos(session))
