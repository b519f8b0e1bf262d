"""`reconcile export` of the database-per-user pattern: with couch_peruser on, one UserDatabases template
stands for every signed-up user's database, security, role grants, design documents and replications, so the
export stays the same size whether 10 or 100,000 users signed up.

The template holds only what every user has: the roles all of them hold (`grantRoles`), the security roles
all their databases have (merged, as couch_peruser and login services add names), the design documents
every user database holds identically, and the replications the tool's template made for each of them
(ids `TEMPLATE.DATABASE.to.TARGET`), each checked with the replication kind's own diff. A plan on it
therefore changes nothing; what most but not all users have is said in the README instead (adding it
would make the plan give it to the others).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import quote

from .client import CouchSession
from .ddoc_stored import stored_content
from .export_documents import UNSET, Secrets, design_folder, design_manifest, folder_name, manifest
from .kinds.design_document import design_docs
from .kinds.replication import (
    BASE_URL_VARIABLE,
    DEFAULT_BASE_URL,
    TRIGGER_FIELD,
    as_endpoint_object,
    fields_to_change,
)
from .kinds.security import read_securities
from .kinds.user_databases import UserTemplate, entry_replications, provenance_selector, user_database
from .model import USER_DATABASES_MANIFEST, Manifest, Source
from .ownership import MARKER, OWNER, OWNER_FIELD

DEFAULT_NAME = "per-user"


@dataclass
class TemplateExport:
    manifest: dict
    covered: set[str]  # users the template accounts for: users.yaml leaves them out
    design_documents: list[dict] = field(default_factory=list)
    folders: dict[str, dict[str, bytes]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what most users have but not all, for the README
    replication_ids: set[str] = field(default_factory=set)  # the template's own `_replicator` documents


def user_template(session: CouchSession, prefix: str, users: Sequence[Mapping[str, Any]], admins: set[str],
                  existing: set[str], replications: Sequence[Mapping[str, Any]], secrets: Secrets) -> TemplateExport:
    """The UserDatabases template describing the users in `users` (their `_users` documents) and their
    databases among `existing` (names under `prefix`)."""
    selected = {doc["name"]: list(doc.get("roles") or []) for doc in users
                if doc.get("type", "user") == "user" and doc["name"] not in admins}
    databases = {user_database(prefix, name): name for name in selected if user_database(prefix, name) in existing}
    name = _template_name(prefix, replications)
    result = TemplateExport({}, set())
    spec: dict[str, Any] = {"prefix": prefix}
    grant, common = _grant(selected.values(), result.notes)
    if grant:
        spec["grantRoles"] = grant
    security = _security(session, databases)
    if security:
        spec["security"] = security
    entries = _replicate_to(name, databases, replications, secrets, result)
    if entries:
        spec["replicateTo"] = entries
    _design_documents(session, name, sorted(databases), result)
    result.manifest = manifest(USER_DATABASES_MANIFEST, name, spec)
    created = {doc["name"] for doc in users if doc.get(OWNER_FIELD) == OWNER}
    result.covered = {user for user, roles in selected.items() if user not in created and set(roles) <= common}
    return result


def _grant(roles: Iterable[list[str]], notes: list[str]) -> tuple[list[str], set[str]]:
    """(the roles every user holds, the roles at least half of them hold); a note for each of the latter that
    not every user holds. System roles (`_admin`) are CouchDB's, never granted."""
    held = [set(user) for user in roles]
    counts = Counter(role for user in held for role in user if not role.startswith("_"))
    every = sorted(role for role, count in counts.items() if count == len(held))
    most = {role for role, count in counts.items() if 2 * count >= len(held)}
    notes += [f"role `{role}` is held by {counts[role]} of {len(held)} users, so the template does not grant it; "
              "add it to `grantRoles` if every user should hold it (the plan then gives it to the others)"
              for role in sorted(most - set(every))]
    return every, most


def _security(session: CouchSession, databases: Mapping[str, str]) -> dict[str, Any]:
    """The names and roles every user database's `_security` holds besides its user, to be merged (the
    template's default mode: names couch_peruser and login services add stay)."""
    objects = read_securities(session, sorted(databases))
    spec: dict[str, Any] = {}
    for group in ("members", "admins"):
        principals = {}
        for kind in ("names", "roles"):
            held = [{item for item in (objects[database].get(group) or {}).get(kind) or [] if item != user}
                    for database, user in databases.items() if database in objects]
            every = sorted(set.intersection(*held)) if held else []
            if every:
                principals[kind] = every
        if principals:
            spec[group] = principals
    return spec


def _template_name(prefix: str, replications: Sequence[Mapping[str, Any]]) -> str:
    """The name a template of this tool gave its replications (`NAME.DATABASE.to.TARGET`), else per-user."""
    pattern = re.compile(rf"(.+?)\.{re.escape(prefix)}[0-9a-f]*\.to\..+")
    names = Counter(match.group(1) for doc in replications if (match := pattern.fullmatch(doc["_id"])))
    return names.most_common(1)[0][0] if names else DEFAULT_NAME


def _replicate_to(name: str, databases: Mapping[str, str], replications: Sequence[Mapping[str, Any]],
                  secrets: Secrets, result: TemplateExport) -> list[dict]:
    """One `replicateTo` entry per target every user database replicates to under the template's ids, when
    the entry makes exactly those documents (as the UserDatabases kind makes them)."""
    pattern = re.compile(rf"{re.escape(name)}\.(?P<database>.+?)\.to\.(?P<target>.+)")
    by_target: dict[str, dict[str, Mapping[str, Any]]] = {}
    for doc in replications:
        match = pattern.fullmatch(doc["_id"])
        if match:
            result.replication_ids.add(doc["_id"])
            by_target.setdefault(match["target"], {})[match["database"]] = doc
    entries = []
    for target, docs in sorted(by_target.items()):
        sample = min(databases.keys() & docs.keys(), default=None)
        entry, password = _entry(target, sample, databases[sample], docs[sample]) if sample else (None, None)
        by_id = {doc["_id"]: doc for doc in docs.values()}
        # Each user database's document as the template would make it; a triggered one exists only once
        # `reconcile watch` ran its database's replication.
        if entry is None or not all(
                not fields_to_change(replace(wanted, secrets={}), by_id[wanted.key]) if wanted.key in by_id
                else wanted.options.get("triggered") for wanted in entry_replications(_template(name, entry), 0,
                                                                                     databases)):
            result.notes.append(f"the replications to `{target}` are not the same for every user database "
                                f"({len(docs)} documents for {len(databases)} databases): no `replicateTo` entry "
                                "was written for them; write it by hand")
            continue
        if "auth" in entry and password is not None:
            entry["auth"]["password"] = secrets.reference(entry["auth"]["username"], password,
                                                          f"UserDatabases/{name} replicateTo {target}")
        entries.append(entry)
    return entries


def _template(name: str, entry: Mapping[str, Any]) -> UserTemplate:
    """A template holding only `entry`, to have the UserDatabases kind say what it makes of it."""
    return UserTemplate(Manifest(USER_DATABASES_MANIFEST, name, {"replicateTo": [entry]}, Source("", 0), ".", "."))


def _entry(target: str, database: str, user: str, doc: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the entry one user database's document was made from, its password); no entry when the document's
    source is not that database's URL."""
    source = as_endpoint_object(doc.get("source"))
    suffix = "/" + quote(database, safe="")
    if not isinstance(source, Mapping) or not str(source.get("url", "")).endswith(suffix):
        return None, None
    entry: dict[str, Any] = {"target": target,
                             "fanIn": "triggered" if TRIGGER_FIELD in doc or doc.get("continuous") is not True
                             else "continuous"}
    base = source["url"][:-len(suffix)]
    if base != (os.environ.get(BASE_URL_VARIABLE) or DEFAULT_BASE_URL).rstrip("/"):
        entry["replicationBaseUrl"] = base
    owner = _owner_field(doc.get("selector"), user)
    if owner is not None:
        entry["ownerField"] = owner
    basic = (source.get("auth") or {}).get("basic") or {}
    if "username" not in basic:
        return entry, None
    if "password" not in basic:
        return None, None
    entry["auth"] = {"username": basic["username"], "password": UNSET}
    return entry, basic["password"]


def _owner_field(selector: Any, user: str) -> str | None:
    """The `ownerField` whose provenance selector is `selector`, if it is one."""
    clauses = selector.get("$or") if isinstance(selector, Mapping) else None
    first = clauses[0] if isinstance(clauses, list) and clauses and isinstance(clauses[0], Mapping) else {}
    field = next(iter(first), None)
    return field if field is not None and selector == provenance_selector(user, field) else None


def _design_documents(session: CouchSession, name: str, databases: Sequence[str], result: TemplateExport) -> None:
    """A DesignDocument for the template for each design document every user database holds identically."""
    if not databases:
        return
    contents: dict[str, list[dict]] = {}
    for held in session.map(lambda database: design_docs(session, database), databases):
        for doc in held:
            contents.setdefault(doc["_id"], []).append(doc)
    for doc_id, docs in sorted(contents.items()):
        ddoc = doc_id.removeprefix("_design/")
        bodies = [{key: value for key, value in stored_content(doc).items() if key != MARKER} for doc in docs]
        if len(docs) < len(databases) or any(body != bodies[0] for body in bodies):
            result.notes.append(f"design document `{ddoc}` is in {len(docs)} of {len(databases)} user databases"
                                f"{'' if len(docs) < len(databases) else ', not the same in all'}: not exported")
            continue
        files = design_folder(session, databases[0], docs[0])
        if isinstance(files, str):
            result.notes.append(f"design document `{ddoc}` of the user databases: {files}; not exported")
            continue
        folder = folder_name(f"UserDatabases-{name}", ddoc)
        result.folders[folder] = files
        result.design_documents.append(design_manifest(ddoc, folder, {"userDatabases": name}))
