"""Manifests and helpers shared by the replication and status tests.

Replications run as a dedicated member of both databases, never as the server admin: a wrong password
tried again and again could lock the account out (CouchDB 3.4 locks a user after 5 failed logins).
"""

from __future__ import annotations

import os
from urllib.parse import quote

from waiting import copies


def base_url(couch) -> str:
    """The URL the server reaches itself at: couchsim's own; for a real server (in Docker, say) it may
    differ from the client's COUCHDB_URL, hence COUCHDB_REPLICATION_URL (the variable the tool reads too)."""
    return os.environ.get("COUCHDB_REPLICATION_URL", couch.url) if couch.real else couch.url


def members_and_databases(user: str, *databases: str) -> str:
    """The databases, each with `user` as its only member, and the user (password: env:REPLICATOR_PASSWORD)."""
    members = f"{{members: {{names: [{user}]}}}}"
    documents = [f"""
    apiVersion: reconciler/v1
    kind: Database
    metadata: {{name: {database}}}
    spec: {{security: {members}}}
    """ for database in databases]
    documents.append(f"""
    apiVersion: reconciler/v1
    kind: User
    metadata: {{name: {user}}}
    spec: {{password: env:REPLICATOR_PASSWORD}}
    """)
    return "---".join(documents)


def replication(couch, name: str, source: str, target: str, user: str, extra: str = "") -> str:
    """A continuous Replication running as `user` (password: env:REPLICATION_PASSWORD); `extra` adds spec lines."""
    return f"""
    apiVersion: reconciler/v1
    kind: Replication
    metadata: {{name: {name}}}
    spec:
      source: {source}
      target: {target}
      continuous: true
      replicationBaseUrl: {base_url(couch)}
      auth: {{username: {user}, password: env:REPLICATION_PASSWORD}}
    {extra}"""


def replication_manifests(couch, source: str, target: str, user: str, name: str, extra: str = "") -> str:
    return members_and_databases(user, source, target) + "---" + replication(couch, name, source, target, user, extra)


def scheduler_doc(couch, http, doc_id: str) -> dict:
    answer = http.get(f"{couch.url}/_scheduler/docs/_replicator/{quote(doc_id, safe='')}")
    return answer.json() if answer.status_code == 200 else {}


def conflict(couch, http, doc_id: str, wins: bool = False) -> str:
    """A second live branch of `_replicator` document `doc_id`, as CouchDB makes one on a cluster: its replicator
    writes a document's `_replication_state` into the shard copy on the node running the job
    (src/couch_replicator/src/couch_replicator_docs.erl `save_rep_doc`: couch_db:update_doc on the shard) while the
    tool writes another copy from the same parent, and internal replication keeps both. Here a sibling of the
    current revision with the same body, grafted as replication writes (`_bulk_docs` new_edits=false, CouchDB's
    docs api/database/bulk-api.rst), on any server. It wins or loses as said: CouchDB picks the greater revision
    id among leaves of the same generation (couch_doc:to_doc_info). Returns its revision.
    Both branches go to every copy (w = n): a prune reads `_all_docs`, which takes each shard range from one copy
    (fabric_view_all_docs.erl), and watch reads the document from a quorum of copies, and each must see both. The
    current revision may still be on one copy only (the replicator's `completed`, as above): it is read from every
    copy (r = n: fabric_doc_open.erl answers the newest once all have replied) and stored on each, as internal
    replication would a few seconds later."""
    url = f"{couch.url}/_replicator/{quote(doc_id, safe='')}"
    every_copy = copies(http, couch.url, "_replicator")
    current = http.get(url, params={"revs": "true", "r": every_copy}).json()
    digest = ("f" if wins else "0") * 32
    start = current["_revisions"]["start"]
    sibling = {**{key: value for key, value in current.items() if key not in ("_rev", "_revisions")},
               "_rev": f"{start}-{digest}", "_revisions": {"start": start, "ids": [digest, *current["_revisions"]["ids"][1:]]}}
    answer = http.post(f"{couch.url}/_replicator/_bulk_docs", json={"docs": [current, sibling], "new_edits": False},
                       params={"w": every_copy})
    # 202: a loaded cluster stored it on fewer copies in time; internal replication brings it to the others.
    assert answer.status_code in (201, 202) and answer.json() == [], answer.text
    return sibling["_rev"]


def live_leaves(couch, http, doc_id: str) -> list[dict]:
    """The live leaves of `_replicator` document `doc_id` (`open_revs=all` also lists the deleted ones)."""
    answer = http.get(f"{couch.url}/_replicator/{quote(doc_id, safe='')}", params={"open_revs": "all"},
                      headers={"Accept": "application/json"})
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.text
    return [leaf["ok"] for leaf in answer.json() if "ok" in leaf and not leaf["ok"].get("_deleted")]

