"""`reconcile export` of the documents a deployment is made of: design documents (as couchapp folders) and
`_replicator` documents (as Replication manifests whose passwords are secret references).

Each is exported only when the manifest written for it means exactly the stored document, so that a plan
on the exported folder leaves it alone: a replication is checked with the replication kind's own diff, a
design document by reading its folder back as `reconcile` reads it. What cannot be expressed is listed
with the reason, for the README.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence
from urllib.parse import quote, unquote

from .client import CouchSession, db_path
from .ddoc_folder import ATTACHMENTS, BUILTIN_REDUCERS, content_type, read_folder
from .ddoc_stored import stored_content
from .kinds.replication import (
    BASE_URL_VARIABLE,
    DEFAULT_BASE_URL,
    ENDPOINTS,
    OPTIONS,
    as_endpoint_object,
    fields_to_change,
    replication,
)
from .kinds.design_document import design_docs
from .load import API_VERSION
from .model import DESIGN_DOCUMENT_MANIFEST, REPLICATION_MANIFEST, Source
from .ownership import MARKER

# Where functions live in a design document (couchapp layout): their files keep the `.js` extension, and
# their text byte for byte.
FUNCTION_FIELDS = frozenset({"views", "validate_doc_update", "filters", "updates", "shows", "lists", "lib"})
DESIGN_FOLDER = "design"
MAX_NAME_BYTES = 200  # a file name stays under the 255 bytes file systems allow, with its extension
UNSET = "env:REFERENCED_BELOW"  # a reference in a spec only compared, never resolved


class Secrets:
    """The environment variable each replication credential is referenced by: one per user name and password
    (the same password used by several documents is one variable), never the password itself."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, str], str] = {}
        self.uses: dict[str, list[str]] = {}  # variable -> where it is used

    def reference(self, username: str, password: str, use: str) -> str:
        variable = self._names.get((username, password))
        if variable is None:
            stem = "REPLICATION_" + (re.sub(r"[^A-Za-z0-9]+", "_", username).strip("_").upper() or "USER")
            taken = set(self._names.values())
            variable = next(name for count in range(1, len(taken) + 2)
                            if (name := f"{stem}_PASSWORD" + (f"_{count}" if count > 1 else "")) not in taken)
            self._names[(username, password)] = variable
        self.uses.setdefault(variable, []).append(use)
        return f"env:{variable}"


@dataclass
class Documents:
    design_documents: list[dict] = field(default_factory=list)  # DesignDocument manifests
    folders: dict[str, dict[str, bytes]] = field(default_factory=dict)  # folder -> relative file -> content
    replications: list[dict] = field(default_factory=list)  # Replication manifests
    unexportable: list[str] = field(default_factory=list)  # "`what`: why"


def documents(session: CouchSession, databases: Sequence[str], design_databases: Sequence[str],
              replications: Sequence[Mapping[str, Any]], secrets: Secrets) -> Documents:
    """The design documents of `design_databases` (CouchDB's own, named `_...`, left out) and the
    replications; endpoints on `databases` are written by name."""
    result = Documents()
    for database, docs in zip(design_databases,
                              session.map(lambda database: design_docs(session, database), design_databases)):
        for doc in docs:
            name = doc["_id"].removeprefix("_design/")
            if name.startswith("_"):
                continue
            files = design_folder(session, database, doc)
            if isinstance(files, str):
                result.unexportable.append(f"design document `{database}/_design/{name}`: {files}")
                continue
            folder = folder_name(database, name)
            result.folders[folder] = files
            result.design_documents.append(design_manifest(name, folder, {"database": database}))
    for replication_doc in replications:
        exported = replication_manifest(replication_doc, secrets, databases)
        if isinstance(exported, str):
            result.unexportable.append(f"replication `{replication_doc['_id']}`: {exported}")
        else:
            result.replications.append(exported)
    return result


# Design documents.

def design_folder(session: CouchSession, database: str, doc: Mapping[str, Any]) -> dict[str, bytes] | str:
    """The files of the couchapp folder `reconcile` reads back as `doc` (attachments read from the server), or
    why no folder can hold it."""
    body = {key: value for key, value in stored_content(doc).items() if key not in (MARKER, ATTACHMENTS)}
    files: dict[str, bytes] = {}
    problem = _write_object(body, (), files) or _read_back_problem(files, body)
    if problem:
        return problem
    name = doc["_id"].removeprefix("_design/")
    for attachment, stub in sorted((doc.get(ATTACHMENTS) or {}).items()):
        parts = attachment.split("/")
        if not all(_safe(part) for part in parts):
            return f"attachment `{attachment}` has a name no file can have"
        if content_type(attachment) != stub.get("content_type"):
            return (f"attachment `{attachment}` is stored as {stub.get('content_type')}, while a folder gives a "
                    f"file of that name {content_type(attachment)} (the type comes from the extension)")
        response = session.request("GET", db_path(database, "_design", name, *parts),
                                   what=f"reading attachment {attachment} of {database}/_design/{name}")
        files["/".join((ATTACHMENTS, *parts))] = response.content
    return files


def _safe(key: str) -> bool:
    """A field name that is a file name `reconcile` reads back as that field (hidden files are skipped)."""
    return bool(key) and not key.startswith(".") and "/" not in key and "\\" not in key and "\0" not in key \
        and len(key.encode("utf-8")) <= MAX_NAME_BYTES


def _write_object(value: Mapping[str, Any], path: tuple[str, ...], files: dict[str, bytes]) -> str | None:
    """Files for the fields of `value` (a folder's keys are all file names: the caller checked them)."""
    for key, item in value.items():
        if not path and (not _safe(key) or key.startswith("_")):
            return f"field `{key}` has a name no file can have"
        where = "/".join((*path, key))
        # A folder for what holds text (functions, views); one JSON file for plain values (`options.json`).
        if isinstance(item, dict) and any(isinstance(inner, (str, dict)) for inner in item.values()) \
                and all(_safe(inner) for inner in item):
            problem = _write_object(item, (*path, key), files)
            if problem:
                return problem
        elif isinstance(item, str):
            function = (path[0] if path else key) in FUNCTION_FIELDS and item not in BUILTIN_REDUCERS
            if function or "." in key or item != item.rstrip("\r\n"):
                files[where + ".js"] = item.encode("utf-8")  # kept byte for byte
            else:
                files[where] = (item + "\n").encode("utf-8")  # plain text, read back without the newline
        else:
            files[where + ".json"] = (json.dumps(item, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return None


def folder_name(database: str, name: str) -> str:
    """`design/DATABASE/NAME`, both escaped where a file name cannot hold them (`/` is allowed in both)."""
    return "/".join((DESIGN_FOLDER, quote(database, safe="$()+-_"), quote(name, safe="$()+-_.")))


def _read_back_problem(files: Mapping[str, bytes], body: Mapping[str, Any]) -> str | None:
    """Why the folder would not read back as `body`, as `reconcile` reads it (ddoc_folder), if it would not."""
    with tempfile.TemporaryDirectory() as root:
        for name, content in files.items():
            path = os.path.join(root, "ddoc", *name.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(content)
        os.makedirs(os.path.join(root, "ddoc"), exist_ok=True)
        read = read_folder(os.path.join(root, "ddoc"), root)
    if read.problems:
        return read.problems[0].message
    return None if read.body == body else "its fields would not read back the same from files"


def design_manifest(name: str, folder: str, where: Mapping[str, Any]) -> dict:
    """A DesignDocument for the folder; `where` is `{"database": ...}` or `{"userDatabases": ...}`."""
    return manifest(DESIGN_DOCUMENT_MANIFEST, name, {**where, "path": folder})


# Replications.

def replication_manifest(doc: Mapping[str, Any], secrets: Secrets, databases: Sequence[str]) -> dict | str:
    """The Replication manifest of a `_replicator` document, or why none can say exactly what it holds."""
    spec: dict[str, Any] = {}
    for end in ENDPOINTS:
        endpoint = as_endpoint_object(doc.get(end))
        if not isinstance(endpoint, Mapping) or not isinstance(endpoint.get("url"), str):
            return f"its {end} is not a URL"
        spec[end] = local_name(endpoint["url"], databases)
        basic = (endpoint.get("auth") or {}).get("basic") if isinstance(endpoint.get("auth"), Mapping) else None
        if isinstance(basic, Mapping) and isinstance(basic.get("username"), str):
            if not isinstance(basic.get("password"), str):
                return f"its {end} names user `{basic['username']}` without a password"
            spec[f"{end}Auth"] = {"username": basic["username"], "password": UNSET}
    spec.update({key: doc[key] for key in OPTIONS if key in doc and key != "owner"})
    # Compared without its passwords: they are referenced below, never read or written.
    wanted = replace(replication(doc["_id"], spec, ".", Source("", 0)), secrets={})
    differing = fields_to_change(wanted, doc)
    if differing:
        return "a Replication manifest cannot hold " + ", ".join(f"`{path}`" for path in sorted(set(differing)))
    passwords = {end: as_endpoint_object(doc[end])["auth"]["basic"]["password"]
                 for end in ENDPOINTS if f"{end}Auth" in spec}
    if len(passwords) == 2 and spec["sourceAuth"]["username"] == spec["targetAuth"]["username"] \
            and passwords["source"] == passwords["target"]:
        shared = spec.pop("sourceAuth")
        del spec["targetAuth"]
        spec = {"source": spec.pop("source"), "target": spec.pop("target"), "auth": shared, **spec}
        passwords = {"": passwords["source"]}
    for end, password in passwords.items():
        auth = spec[f"{end}Auth" if end else "auth"]
        auth["password"] = secrets.reference(auth["username"], password,
                                             f"replication/{doc['_id']}" + (f" ({end})" if end else ""))
    return manifest(REPLICATION_MANIFEST, doc["_id"], spec)


def local_name(url: str, databases: Sequence[str]) -> str:
    """A database of this export by name when `url` is where the server reaches it (the replication base URL
    of this environment), else the URL."""
    base = (os.environ.get(BASE_URL_VARIABLE) or DEFAULT_BASE_URL).rstrip("/") + "/"
    name = unquote(url.removeprefix(base))
    return name if url.startswith(base) and name in databases and quote(name, safe="") == url[len(base):] else url


def manifest(kind: str, name: str, spec: Mapping[str, Any]) -> dict:
    """One exported document, as a manifest file holds it."""
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": dict(spec)}
