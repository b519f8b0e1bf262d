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
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
from dataclasses import dataclass, field
from typing import Any

ATTACHMENTS = "_attachments"
BUILTIN_REDUCERS = ("_count", "_sum", "_stats", "_approx_count_distinct")


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


def read_folder(folder: str) -> DesignFolder:
    result = DesignFolder()
    result.body = _read_object(folder, (), result)
    attachments = os.path.join(folder, ATTACHMENTS)
    if os.path.isdir(attachments):
        result.body[ATTACHMENTS] = {name: attachment_stub(path) for name, path in attachment_files(attachments)}
    return result


def attachment_files(folder: str) -> list[tuple[str, str]]:
    """(attachment name, file) for every file under `_attachments/`, names with `/` as CouchDB keeps them."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                path = os.path.join(root, name)
                found.append((os.path.relpath(path, folder).replace(os.sep, "/"), path))
    return found


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


def _read_object(folder: str, path: tuple[str, ...], result: DesignFolder) -> dict[str, Any]:
    value: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for entry in sorted(os.listdir(folder)):
        full = os.path.join(folder, entry)
        if entry.startswith(".") or (not path and entry == ATTACHMENTS):
            continue
        if os.path.isdir(full):
            key, item = entry, _read_object(full, path + (entry,), result)
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
