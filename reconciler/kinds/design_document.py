"""DesignDocument: a design document in one or more databases, from a couchapp folder or inline."""

from __future__ import annotations

import base64
import functools
import os
import time
import zlib
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..client import CouchSession, db_path
from ..databases import planned_database_infos
from ..ddoc_folder import ATTACHMENTS, BUILTIN_REDUCERS, DesignFolder, md5_digest, read_folder
from ..errors import ReconcileError
from ..javascript import check_function
from ..model import (
    DATABASE,
    DESIGN_DOCUMENT,
    DESIGN_DOCUMENT_MANIFEST,
    USER_DATABASES_MANIFEST,
    Change,
    Create,
    Delete,
    Desired,
    Diagnostic,
    FieldChange,
    Manifest,
    Observed,
    Source,
    Update,
)
from ..ownership import MARKER, MARKER_VALUE, is_marked
from ..secrets import SecretRef
from .base import ManifestKind, ResourceKind
from .checks import closest, undeclared_database
from .fields import field_changes

INLINE_FIELDS = ("views", "validate_doc_update", "filters", "updates", "lib")
# Written beside the folder's content (and winning over it): plain values of the manifest.
SPEC_FIELDS = ("language", "options")


class DesignDocumentManifest(ManifestKind):
    kind = DESIGN_DOCUMENT_MANIFEST
    schema = "design_document.schema.json"
    # The same design document name may live in different databases: duplicates are checked per database below.
    unique_names = False

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        templates = sorted(m.name for m in every if m.kind == USER_DATABASES_MANIFEST)
        first: dict[tuple[str, str], Manifest] = {}
        for manifest in manifests:
            spec = manifest.spec
            if manifest.name.startswith("_design/"):
                yield Diagnostic.at(manifest, ("metadata", "name"), "the name includes the `_design/` prefix",
                                    f"write `name: {manifest.name.removeprefix('_design/')}`")
            if "database" in spec:
                yield from undeclared_database(manifest, ("spec", "database"), spec["database"], every)
            for index, database in enumerate(spec.get("databases", [])):
                yield from undeclared_database(manifest, ("spec", "databases", index), database, every)
            template = spec.get("userDatabases")
            if template is not None and template not in templates:
                yield Diagnostic.at(manifest, ("spec", "userDatabases"),
                                    f"no UserDatabases manifest is named `{template}`",
                                    closest(template, templates, "declared UserDatabases are") if templates
                                    else "declare the template with `kind: UserDatabases`")
            yield from _content(manifest)
            yield from _javascript_problems(manifest)
            for target in _targets(spec):
                earlier = first.setdefault((target, manifest.name), manifest)
                if earlier is not manifest:
                    yield Diagnostic.at(manifest, ("metadata", "name"),
                                        f"_design/{manifest.name} in {target} is also declared at "
                                        f"{earlier.where('metadata', 'name')}", "merge the two or rename one")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        """One design document per database the manifest names. A `userDatabases:` template expands with the
        UserDatabases kind, which knows the users: it calls `for_databases` with their databases."""
        if "userDatabases" in manifest.spec:
            return ()
        return for_databases(manifest, _targets(manifest.spec))


def for_databases(manifest: Manifest, databases: Iterable[str]) -> Iterator[Desired]:
    """The manifest's design document in each of `databases` (the folder is read once for all of them)."""
    body, options = design_document(manifest)
    source = manifest.where("metadata", "name")
    for database in databases:
        yield Desired(DESIGN_DOCUMENT, design_key(database, manifest.name), body=body, source=source, options=options)


def design_document(manifest: Manifest) -> tuple[dict[str, Any], dict[str, Any]]:
    """(body as CouchDB stores it, with attachments as stubs and the ownership marker; Desired options)."""
    content = _content_of(manifest)
    body = {**content.body, MARKER: MARKER_VALUE}
    options: dict[str, Any] = {"staged": bool(manifest.spec.get("staged", False))}
    if ATTACHMENTS in body:
        # Only digests travel in plans; apply reads the bytes from here and checks them against the digest.
        options["attachments"] = os.path.abspath(os.path.join(manifest.base_dir, manifest.spec["path"], ATTACHMENTS))
    return body, options


def design_key(database: str, name: str) -> str:
    return f"{database}/_design/{name}"


def split_key(key: str) -> tuple[str, str]:
    """(database, design document name) of a key made by design_key."""
    database, _, name = key.rpartition("/_design/")
    return database, name


def _targets(spec: Mapping[str, Any]) -> list[str]:
    if "userDatabases" in spec:
        return [f"UserDatabases/{spec['userDatabases']}"]
    return [spec["database"]] if "database" in spec else list(spec["databases"])


def _content(manifest: Manifest) -> Iterator[Diagnostic]:
    spec = manifest.spec
    inline = [field for field in INLINE_FIELDS if field in spec]
    if "path" in spec:
        folder = os.path.join(manifest.base_dir, spec["path"])
        if not os.path.isdir(folder):
            yield Diagnostic.at(manifest, ("spec", "path"), f"folder {os.path.normpath(folder)} does not exist",
                                "give a folder relative to this file, in couchapp layout (views/NAME/map.js...)")
        if inline:
            yield Diagnostic.at(manifest, ("spec", inline[0]), f"`{inline[0]}` is written inline and `path` is given too",
                                "keep the functions either in the folder or inline, not both")
    elif not inline:
        yield Diagnostic.at(manifest, ("spec",), "the design document has no content",
                            "give `path:` (a couchapp folder) or inline `views:` / `validate_doc_update:`")
    for view, functions in spec.get("views", {}).items():
        reduce = functions.get("reduce", "")
        if reduce.startswith("_") and reduce not in BUILTIN_REDUCERS:
            yield Diagnostic.at(manifest, ("spec", "views", view, "reduce"), f"`{reduce}` is not a built-in reducer",
                                closest(reduce, BUILTIN_REDUCERS, "the built-in reducers are"))


def _content_of(manifest: Manifest) -> DesignFolder:
    spec = manifest.spec
    if "path" in spec:
        content = read_folder(os.path.join(manifest.base_dir, spec["path"]))
    else:
        content = DesignFolder(body={field: spec[field] for field in INLINE_FIELDS if field in spec})
    content.body.update({field: spec[field] for field in SPEC_FIELDS if field in spec})
    return content


def _javascript_problems(manifest: Manifest) -> Iterator[Diagnostic]:
    """Problems of the folder, and syntax errors of the functions CouchDB compiles, at their file and line."""
    if "path" in manifest.spec and not os.path.isdir(os.path.join(manifest.base_dir, manifest.spec["path"])):
        return  # reported by _content
    content = _content_of(manifest)
    for problem in content.problems:
        yield Diagnostic(Source(os.path.normpath(problem.file), problem.line), manifest.subject, problem.message,
                         problem.hint)
    if content.body.get("language", "javascript") != "javascript":
        return  # another query server (Erlang, Mango's "query") compiles its own functions
    for path, source in _functions(content.body):
        error = check_function(source)
        if error is None:
            continue
        file = content.files.get(path)
        if file is not None:
            where = Source(os.path.normpath(file), error.line)
        else:
            key = manifest.where("spec", *path)
            # A block scalar (`map: |`) starts on the line after its key; a one-line string on the key's line.
            where = Source(key.file, key.line + error.line - (0 if "\n" in source else 1))
        yield Diagnostic(where, manifest.subject, f"{'.'.join(path)}: JavaScript error: {error.message}",
                         "fix the function (CouchDB would refuse the design document with compilation_error)")


def _functions(body: Mapping[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
    """The functions CouchDB compiles: map and reduce of each view, validate_doc_update, filters, updates,
    shows and lists. `views.lib` and `lib` hold CommonJS modules, not functions."""
    views = body.get("views")
    for view, functions in (views.items() if isinstance(views, Mapping) else ()):
        if view == "lib" or not isinstance(functions, Mapping):
            continue
        for part in ("map", "reduce"):
            source = functions.get(part)
            # A name starting with `_` is a built-in reducer (an unknown one is reported by _content).
            if isinstance(source, str) and not (part == "reduce" and source.strip().startswith("_")):
                yield ("views", view, part), source
    if isinstance(body.get("validate_doc_update"), str):
        yield ("validate_doc_update",), body["validate_doc_update"]
    for group in ("filters", "updates", "shows", "lists"):
        functions = body.get(group)
        for name, source in (functions.items() if isinstance(functions, Mapping) else ()):
            if isinstance(source, str):
                yield (group, name), source


MANIFEST = DesignDocumentManifest()


# Resource side: design documents on the server.
#
# Ownership: documents this tool writes carry MARKER (as databases do in their security object); only those
# are ever deleted, and only with --allow-delete. The marker is not part of a view's signature
# (couch_mrview_util:ddoc_to_mrst hashes views, language, options and views.lib), so it never rebuilds an index.
# couch_mrview_util:ddoc_to_mrst: the view index is keyed by a hash of these fields; changing any rebuilds it.
INDEX_FIELDS = ("views", "language", "options")
# Fields CouchDB keeps about a document, not content a manifest could own.
SERVER_FIELDS = frozenset({"_id", "_rev", "_revisions", "_conflicts", "_deleted_conflicts", "_local_seq"})
STUB_FIELDS = ("content_type", "digest", "length")
STAGED_SUFFIX = "-next"
STAGED_WAIT = 3600.0  # seconds an index build may take before apply stops waiting (a rerun resumes)
STAGED_POLL = 1.0
SHOWN_CHARACTERS = 60
# How CouchDB gzips compressible attachments by default: `[attachments] compression_level = 8`, a gzip stream
# (couch_stream:gzip_init/1: zlib:deflateInit(Z, Level, deflated, 16 + 15, 8, default)).
GZIP_LEVEL = 8
GZIP_WBITS = 16 + 15


class DesignDocumentResource(ResourceKind):
    name = DESIGN_DOCUMENT
    order = 30  # after the database and its security object

    def parent(self, key: str) -> tuple[str, str]:
        return (DATABASE, split_key(key)[0])

    def observe(self, session: CouchSession, wanted: Sequence[Desired], prune: bool = False
                ) -> Mapping[str, Observed]:
        """Every design document of each database that should hold one: one `_all_docs` range read per
        database, attachments as stubs. `prune` finds managed documents no manifest lists, in every
        database when the database kind listed them all (it does when pruning), else in those read."""
        by_key = {desired.key: desired for desired in wanted}
        keys = set(by_key)
        infos = planned_database_infos(session, sorted({split_key(key)[0] for key in keys}), every=prune)
        existing = sorted(infos)
        live: dict[str, Observed] = {}
        for database, docs in zip(existing, session.map(lambda db: design_docs(session, db), existing)):
            # `doc_count` counts design documents too; a view indexes the others.
            documents = max(infos[database].get("doc_count", 0) - len(docs), 0)
            for doc in docs:
                key = f"{database}/{doc['_id']}"
                managed = is_marked(doc)
                if key in keys or (prune and managed):
                    held = _attachments_as_wanted(session, key, doc, by_key[key]) if key in by_key else doc
                    live[key] = _observed(key, held, managed, documents)
        return live

    def reread(self, session: CouchSession, changes: Sequence[Change]) -> Mapping[str, Observed]:
        wanted = {change.key for change in changes}
        databases = sorted({split_key(key)[0] for key in wanted})
        docs = session.map(lambda db: design_docs(session, db), databases)
        return {key: _observed(key, doc, is_marked(doc), 0)
                for database, found in zip(databases, docs) for doc in found
                if (key := f"{database}/{doc['_id']}") in wanted}

    def diff(self, wanted: Desired | None, live: Observed | None) -> Change | None:
        if wanted is None:
            return self.prune(live)
        after = dict(wanted.body)
        if live is None:
            return Create(self.name, wanted.key, wanted.source, after=after, fields=_shown(field_changes({}, after)))
        fields = field_changes(live.body, after)
        if not fields:
            return None
        notes: tuple[str, ...] = ()
        if rebuilds_index(live.body, after):
            notes = (f"changes the view index: CouchDB rebuilds it over {_documents(live.facts['doc_count'])}"
                     + (" as _design/" + split_key(wanted.key)[1] + STAGED_SUFFIX + " first, then swaps"
                        if wanted.options.get("staged") else ""),)
        return Update(self.name, wanted.key, wanted.source, before=dict(live.body), after=after,
                      fields=_shown(fields), version=live.version, notes=notes)

    def summary_warnings(self, changes: Sequence[Change], live: Mapping[str, Observed]) -> Iterator[str]:
        """One warning per design document whose views change, with how many databases and documents the
        rebuild touches (a UserDatabases template may change thousands at once)."""
        rebuilt: dict[str, list[Change]] = {}
        for change in changes:
            if isinstance(change, Update) and rebuilds_index(change.before or {}, change.after or {}):
                rebuilt.setdefault(split_key(change.key)[1], []).append(change)
        for name, group in sorted(rebuilt.items()):
            documents = sum(live[change.key].facts["doc_count"] for change in group)
            staged = all(change.desired is not None and change.desired.options.get("staged") for change in group)
            advice = ("each new index is built as _design/" + name + STAGED_SUFFIX + " before it replaces the old one"
                      if staged else "views answer only once rebuilt; `staged: true` builds the new index first")
            yield (f"{group[0].source}: _design/{name}: the view index is rebuilt in {len(group)} "
                   f"database{'s' if len(group) != 1 else ''} holding {_documents(documents)}; {advice}")

    def apply(self, session: CouchSession, changes: Sequence[Change],
              secrets: Mapping[str, Mapping[str, SecretRef]]) -> None:
        list(session.map(lambda change: self._apply_one(session, change), changes))

    def _apply_one(self, session: CouchSession, change: Change) -> None:
        database, name = split_key(change.key)
        subject = f"{self.name}/{change.key}"
        if isinstance(change, Delete):
            # 404: already gone (an interrupted apply, or someone else), which is what was wanted.
            session.request("DELETE", db_path(database, "_design", name), params={"rev": change.version},
                            ok=(404,), what=subject)
            return
        desired = change.desired
        if desired is None:
            raise ReconcileError(f"{subject}: the plan holds no design document to write; make the plan again")
        staged = desired.options.get("staged") and rebuilds_index(change.before or {}, change.after or {})
        if staged:
            stage(session, database, name, desired, subject)
        body = _upload_body(desired, change.before, subject)
        if change.version is not None:
            body["_rev"] = change.version
        response = session.request("PUT", db_path(database, "_design", name), body=body, ok=(409,), what=subject)
        if response.status_code == 409:
            raise ReconcileError(f"{subject}: changed on the server since the plan was made; run plan again")
        if staged:
            _delete_if_present(session, database, name + STAGED_SUFFIX, subject)


def design_docs(session: CouchSession, database: str) -> list[dict]:
    """The design documents of `database` with their content (attachments as stubs); [] when it is missing."""
    params = {"include_docs": "true", "start_key": '"_design/"', "end_key": '"_design0"'}
    response = session.request("GET", db_path(database, "_all_docs"), params=params, ok=(404,),
                               what=f"reading the design documents of {database}")
    if response.status_code == 404:
        return []
    return [row["doc"] for row in response.json()["rows"] if row.get("doc")]


def rebuilds_index(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """True when the new content has views (not only `views.lib` modules) and a different view signature."""
    views = after.get("views")
    return isinstance(views, Mapping) and any(name != "lib" for name in views) \
        and any(before.get(field) != after.get(field) for field in INDEX_FIELDS)


def stage(session: CouchSession, database: str, name: str, desired: Desired, subject: str,
          timeout: float = STAGED_WAIT) -> None:
    """Build the new index under `_design/NAME-next` before NAME changes, as CouchDB's docs recommend
    (src/docs/src/best-practices/views.rst, "Deploying a view change in a live environment"): index files
    are named by the views' signature, so NAME written with the same views then uses the built index."""
    staged = name + STAGED_SUFFIX
    path = db_path(database, "_design", staged)
    current = session.request("GET", path, ok=(404,), what=subject)
    body = _upload_body(desired, None, subject)
    if current.status_code == 404 or _stored_content(current.json()) != _stored_content(desired.body):
        if current.status_code != 404:
            body["_rev"] = current.json()["_rev"]  # left by an interrupted apply: overwritten
        session.put(path, body, what=f"{subject}: staging as _design/{staged}")
    view = next(view for view in desired.body["views"] if view != "lib")
    target = _sequence_number(session.get(db_path(database), what=subject)["update_seq"])
    deadline = time.monotonic() + timeout
    while True:
        # update=lazy starts the build and answers at once, so no request waits for a long build.
        session.request("GET", db_path(database, "_design", staged, "_view", view),
                        params={"limit": "0", "update": "lazy"}, what=f"{subject}: building _design/{staged}")
        index = session.get(db_path(database, "_design", staged, "_info"), what=subject)["view_index"]
        # fabric_group_info sums the shards' index seqs, the number that starts the database's update_seq.
        if not index.get("updater_running") and _sequence_number(index.get("update_seq")) >= target:
            return
        if time.monotonic() > deadline:
            raise ReconcileError(f"{subject}: the index of _design/{staged} is still building after {timeout:g}s; "
                                 "run apply again to keep waiting (the old version stays live meanwhile)")
        time.sleep(STAGED_POLL)


def _delete_if_present(session: CouchSession, database: str, name: str, subject: str) -> None:
    path = db_path(database, "_design", name)
    current = session.request("GET", path, ok=(404,), what=subject)
    if current.status_code != 404:
        session.request("DELETE", path, params={"rev": current.json()["_rev"]}, ok=(404, 409), what=subject)


def _sequence_number(seq: Any) -> int:
    """The number an update_seq starts with (CouchDB 3.x: `N-opaque`; an index's seq is a plain integer)."""
    head = str(seq if seq is not None else 0).split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def _upload_body(desired: Desired, before: Mapping[str, Any] | None, subject: str) -> dict[str, Any]:
    """The document to PUT: attachments the server already holds with the same digest go as stubs, the
    others with their bytes, read now and checked against the digest the plan was made with."""
    body = {key: value for key, value in desired.body.items() if key != ATTACHMENTS}
    wanted = desired.body.get(ATTACHMENTS) or {}
    if not wanted:
        return body
    held = (before or {}).get(ATTACHMENTS) or {}
    folder = desired.options["attachments"]
    attachments: dict[str, dict[str, Any]] = {}
    for name, stub in wanted.items():
        if held.get(name, {}).get("digest") == stub["digest"]:
            attachments[name] = {"stub": True}
            continue
        try:
            with open(os.path.join(folder, *name.split("/")), "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise ReconcileError(f"{subject}: cannot read attachment {name} ({error.strerror}); "
                                 "run plan again") from None
        if md5_digest(data) != stub["digest"]:
            raise ReconcileError(f"{subject}: attachment {name} changed since the plan was made; run plan again")
        attachments[name] = {"content_type": stub["content_type"], "data": base64.b64encode(data).decode("ascii")}
    body[ATTACHMENTS] = attachments
    return body


def _attachments_as_wanted(session: CouchSession, key: str, doc: Mapping[str, Any], wanted: Desired
                           ) -> Mapping[str, Any]:
    """The document with the digest of each attachment that holds the wanted file replaced by the file's own.

    CouchDB stores attachments whose type is in `[attachments] compressible_types` (text, JavaScript, JSON,
    XML by default) gzip-encoded, and reports the MD5 of the gzip stream as their `digest`, with `length`
    still the file's (couch_db:with_stream/3, couch_att:to_json/4): the file's MD5 never equals it. A stub
    that differs in digest only holds the file when its digest is that of the file gzipped as CouchDB does
    by default (zlib, level 8: couch_stream:gzip_init/1), or, on a server that compresses otherwise, when
    the attachment read back (decoded) has the file's MD5."""
    live, want = doc.get(ATTACHMENTS), wanted.body.get(ATTACHMENTS)
    if not live or not want:
        return doc
    database, name = split_key(key)
    same: dict[str, Any] = {}
    for attachment, stub in live.items():
        file = want.get(attachment)
        if (file is not None and stub.get("digest") != file["digest"]
                and (stub.get("length"), stub.get("content_type")) == (file["length"], file["content_type"])
                and (stub.get("digest") == _gzip_digest(wanted.options["attachments"], attachment, file["digest"])
                     or _read_digest(session, database, name, attachment) == file["digest"])):
            stub = {**stub, "digest": file["digest"]}
        same[attachment] = stub
    return {**doc, ATTACHMENTS: same}


@functools.lru_cache(maxsize=1024)
def _gzip_digest(folder: str, attachment: str, digest: str) -> str | None:
    """The digest CouchDB reports for the file stored gzip-encoded at the default level; None when the file
    changed since it was read for the plan (its MD5 is no longer `digest`)."""
    try:
        with open(os.path.join(folder, *attachment.split("/")), "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    if md5_digest(data) != digest:
        return None
    deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    return md5_digest(deflate.compress(data) + deflate.flush())


def _read_digest(session: CouchSession, database: str, name: str, attachment: str) -> str | None:
    """The MD5 of an attachment's content as CouchDB serves it (decoded); None when it is gone."""
    response = session.request("GET", db_path(database, "_design", name, *attachment.split("/")), ok=(404,),
                               what=f"reading attachment {attachment} of {database}/_design/{name}")
    return None if response.status_code == 404 else md5_digest(response.content)


def _stored_content(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A design document as manifests own it: every field but the server's, attachments as stubs."""
    body = {key: value for key, value in doc.items() if key not in SERVER_FIELDS and key != ATTACHMENTS}
    attachments = doc.get(ATTACHMENTS)
    if attachments:
        body[ATTACHMENTS] = {name: {field: stub.get(field) for field in STUB_FIELDS}
                             for name, stub in attachments.items()}
    return body


def _observed(key: str, doc: Mapping[str, Any], managed: bool, doc_count: int) -> Observed:
    return Observed(DESIGN_DOCUMENT, key, _stored_content(doc), doc.get("_rev"), managed=managed,
                    facts={"doc_count": doc_count})


def _shown(fields: Sequence[FieldChange]) -> tuple[FieldChange, ...]:
    """Functions are long: a plan shows their first line, line count and a digest (a whitespace-only edit
    changes the digest, and it is a change: CouchDB re-indexes on any byte)."""
    return tuple(FieldChange(item.path, _short(item.before), _short(item.after), item.sensitive) for item in fields)


def _short(value: Any) -> Any:
    if not isinstance(value, str) or ("\n" not in value and len(value) <= SHOWN_CHARACTERS):
        return value
    first = value.strip().splitlines()[0] if value.strip() else ""
    lines = value.count("\n") + 1
    digest = md5_digest(value.encode("utf-8"))[4:12]
    return f"{first[:SHOWN_CHARACTERS]}... ({lines} line{'s' if lines != 1 else ''}, md5 {digest})"


def _documents(count: int) -> str:
    return f"{count:,} document{'s' if count != 1 else ''}"


RESOURCE = DesignDocumentResource()
