"""A design document from a folder in the layout couchapp and couchdb-compile users know.

    views/NAME/map.js, views/NAME/reduce.js (a function, or a built-in name such as `_count`)
    views/lib/MODULE.js          CommonJS modules for map functions (`views.lib`)
    validate_doc_update.js, filters/NAME.js, updates/NAME.js, shows/, lists/, lib/ (CommonJS)
    language, options.json       plain text / JSON values
    _attachments/...             files, content type from the extension

The mapping is the general couchapp one: a folder is an object, `NAME.js` is the
string `NAME` (its bytes exactly: CouchDB re-indexes on any byte change, so the
tool never reformats a function), `NAME.json` is parsed JSON, any other file is
its text without the trailing newline editors add (`language`, or a `reduce`
naming a built-in). Hidden files are skipped. Attachments are kept as CouchDB
reports them in a stub (`content_type`, `digest` as `md5-<base64>`, `length`), so
they compare by digest and their bytes are read again only to upload them.

Every entry is checked before it is opened (paths.check): links must resolve inside the
manifest folder, and what is not a regular file or folder (a FIFO, a device) is a problem.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
from dataclasses import dataclass, field
from typing import Any

from .paths import PathRefused, check

ATTACHMENTS = "_attachments"
BUILTIN_REDUCERS = ("_count", "_sum", "_stats", "_approx_count_distinct")
# A design document is one CouchDB document: beyond [couchdb] max_document_size (8,000,000 bytes by default,
# rel/overlay/etc/default.ini) CouchDB refuses it, so a bigger file is never worth reading.
MAX_FIELD_BYTES = 8_000_000
# Attachments are stored beside the document, up to [couchdb] max_attachment_size (1 GiB by default).
MAX_ATTACHMENT_BYTES = 1024 ** 3
OUTSIDE_HINT = "keep the design document's files inside the manifest folder (copy them instead of linking)"


@dataclass(frozen=True)
class FolderProblem:
    file: str
    line: int
    message: str
    hint: str


@dataclass
class DesignFolder:
    body: dict[str, Any] = field(default_factory=dict)  # the fields as CouchDB stores them; attachments as stubs
    files: dict[tuple[str, ...], str] = field(default_factory=dict)  # field path -> the file it was read from
    problems: list[FolderProblem] = field(default_factory=list)


def read_folder(folder: str, root: str) -> DesignFolder:
    """The design document in `folder`, which the caller checked resolves inside `root` (the manifest folder)."""
    result = DesignFolder()
    result.body = _read_object(folder, (), result, root)
    attachments = os.path.join(folder, ATTACHMENTS)
    if os.path.isdir(attachments) and _usable(attachments, root, result, folder=True):
        result.body[ATTACHMENTS] = {name: attachment_stub(path)
                                    for name, path in attachment_files(attachments, root, result)}
    return result


def attachment_files(folder: str, root: str, result: DesignFolder) -> list[tuple[str, str]]:
    """(attachment name, file) for every file under `_attachments/`, names with `/` as CouchDB keeps them."""
    found, pending = [], [folder]
    while pending:
        current = pending.pop()
        for entry in sorted(os.listdir(current), reverse=True):
            path = os.path.join(current, entry)
            if entry.startswith("."):
                continue
            if os.path.isdir(path):
                if _usable(path, root, result, folder=True):
                    pending.append(path)
            elif _usable(path, root, result, max_bytes=MAX_ATTACHMENT_BYTES):
                found.append((os.path.relpath(path, folder).replace(os.sep, "/"), path))
    return sorted(found)


def _usable(path: str, root: str, result: DesignFolder, *, folder: bool = False,
            max_bytes: int | None = None) -> bool:
    """Whether `path` may be read; otherwise a problem in `result`."""
    try:
        check(path, [root], folder=folder, outside_hint=OUTSIDE_HINT, max_bytes=max_bytes, in_checked_folder=True)
    except PathRefused as refused:
        result.problems.append(FolderProblem(path, 1, refused.message, refused.hint))
        return False
    return True


def attachment_stub(path: str) -> dict[str, Any]:
    with open(path, "rb") as handle:
        data = handle.read()
    return {"content_type": content_type(path), "digest": md5_digest(data), "length": len(data)}


def md5_digest(data: bytes) -> str:
    """The digest CouchDB reports in an attachment stub (couch_att: `md5-` + base64 of the MD5)."""
    return "md5-" + base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def content_type(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


def _read_object(folder: str, path: tuple[str, ...], result: DesignFolder, root: str) -> dict[str, Any]:
    value: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for entry in sorted(os.listdir(folder)):
        full = os.path.join(folder, entry)
        if entry.startswith(".") or (not path and entry == ATTACHMENTS):
            continue
        if os.path.isdir(full):
            if not _usable(full, root, result, folder=True):
                continue
            key, item = entry, _read_object(full, path + (entry,), result, root)
        elif not _usable(full, root, result, max_bytes=MAX_FIELD_BYTES):
            continue
        else:
            name, item = _read_file(full, path, result)
            if name is None:
                continue
            key = name
        if not path and key.startswith("_"):
            result.problems.append(FolderProblem(full, 1, f"`{entry}` would be the field `{key}`, which CouchDB "
                                                 "reserves", "rename or remove it (the name comes from metadata.name)"))
            continue
        if key in value:
            result.problems.append(FolderProblem(full, 1, f"`{entry}` and {os.path.basename(origin[key])} both "
                                                 f"give the field `{key}`", "keep one of them"))
            continue
        value[key], origin[key] = item, full
    return value


def _read_file(file: str, path: tuple[str, ...], result: DesignFolder) -> tuple[str | None, Any]:
    stem, extension = os.path.splitext(os.path.basename(file))
    try:
        with open(file, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError:
        result.problems.append(FolderProblem(file, 1, "not UTF-8 text", "save it as UTF-8, or move a binary "
                                             f"file under {ATTACHMENTS}/"))
        return None, None
    if extension == ".json":
        try:
            return stem, json.loads(text)
        except json.JSONDecodeError as error:
            result.problems.append(FolderProblem(file, error.lineno, f"not valid JSON ({error.msg})", "fix the JSON"))
            return None, None
    result.files[path + (stem,)] = file
    if extension == ".js" and text.strip() not in BUILTIN_REDUCERS:
        return stem, text
    return stem, text.rstrip("\r\n")
