"""What marks an object as made by this tool. The tool keeps no local state: the mark lives on the server,
beside the object, and only marked objects are ever deleted (docs/architecture.md, Ownership).

- databases: MARKER in their `_security` object (CouchDB keeps top-level keys beside `members`/`admins`:
  couch_db.erl `validate_security_object` checks only those two);
- design documents and `_replicator` documents: MARKER in the document;
- users: OWNER_FIELD in the `_users` document;
- server admins, which are config keys with no document: a key of their own in MARKER_SECTION of each node
  the admin was written to, one key per admin so that two applies never race on a shared list. CouchDB has
  no request that writes both keys, so the admin's own value carries a sign too: the salt of every hash
  the tool writes starts with ADMIN_SALT_PREFIX (CouchDB's own salts are 32 hex digits,
  couch_uuids:random), and a rerun restores the marker of an admin whose hash has it.
"""

from __future__ import annotations

from typing import Any, Mapping

OWNER = "couch-reconciler"
MARKER = "couch_reconciler"
MARKER_VALUE = {"created_by": OWNER}
OWNER_FIELD = "created_by"
MARKER_SECTION = "couch_reconciler_admins"
ADMIN_MARKER_VALUE = OWNER
ADMIN_SALT_PREFIX = "couch-reconciler-"


def is_marked(doc: Mapping[str, Any]) -> bool:
    """A `_security` object, design document or `_replicator` document this tool created."""
    return doc.get(MARKER) == MARKER_VALUE


def left_as_found(wanted: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The body to write over an existing design or `_replicator` document: the marker as the live document
    holds it (or not). The tool marks what it creates; a document it finds, exported from a live server or
    written by hand, stays unmarked when a manifest takes it over, so it is never deleted (a database or user
    it finds is never marked either)."""
    body = {key: value for key, value in wanted.items() if key != MARKER}
    if MARKER in live:
        body[MARKER] = live[MARKER]
    return body


def is_marker_path(path: str) -> bool:
    """A plan field that is the marker itself, or inside it."""
    return path == MARKER or path.startswith(MARKER + ".")
