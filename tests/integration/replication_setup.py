"""Manifests and helpers shared by the replication and status tests.

Replications run as a dedicated member of both databases, never as the server admin: a wrong password
tried again and again could lock the account out (CouchDB 3.4 locks a user after 5 failed logins).
"""

from __future__ import annotations

import os
from urllib.parse import quote


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
