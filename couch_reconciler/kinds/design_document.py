"""DesignDocument: a design document in one or more databases, from a couchapp folder or inline."""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..client import CouchSession, db_path
from ..databases import planned_database_infos
from ..reads import DATABASES
from ..ddoc_folder import ATTACHMENTS, BUILTIN_REDUCERS, OUTSIDE_HINT, DesignFolder, md5_digest, read_folder
from ..ddoc_staging import STAGED_SUFFIX, delete_if_present, stage
from ..ddoc_stored import as_wanted, stored_content, upload_body
from ..errors import ReconcileError
from ..javascript import AVAILABLE as JAVASCRIPT_CHECKED, UNAVAILABLE_HINT, check_function
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
from ..ownership import MARKER, MARKER_VALUE, is_marked, left_as_found
from ..paths import PathRefused, check
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
        problem = _folder_problem(manifest)
        if problem is not None:
            yield Diagnostic.at(manifest, ("spec", "path"), problem.message, problem.hint)
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


def _folder_problem(manifest: Manifest) -> PathRefused | None:
    """Why `spec.path` cannot be read as a design-document folder (missing, outside the manifest folder...)."""
    folder = os.path.join(manifest.base_dir, manifest.spec["path"])
    if not os.path.lexists(folder):
        return PathRefused(f"folder {os.path.normpath(folder)} does not exist",
                           "give a folder relative to this file, in couchapp layout (views/NAME/map.js...)")
    try:
        check(folder, [manifest.root], folder=True, outside_hint=OUTSIDE_HINT)
    except PathRefused as refused:
        return refused
    return None


def _content_of(manifest: Manifest) -> DesignFolder:
    spec = manifest.spec
    if "path" in spec:
        content = read_folder(os.path.join(manifest.base_dir, spec["path"]), manifest.root)
    else:
        content = DesignFolder(body={field: spec[field] for field in INLINE_FIELDS if field in spec})
    content.body.update({field: spec[field] for field in SPEC_FIELDS if field in spec})
    return content


def _javascript_problems(manifest: Manifest) -> Iterator[Diagnostic]:
    """Problems of the folder, and syntax errors of the functions CouchDB compiles, at their file and line."""
    if "path" in manifest.spec and _folder_problem(manifest) is not None:
        return  # reported by _content
    content = _content_of(manifest)
    for problem in content.problems:
        yield Diagnostic(Source(os.path.normpath(problem.file), problem.line), manifest.subject, problem.message,
                         problem.hint)
    if content.body.get("language", "javascript") != "javascript":
        return  # another query server (Erlang, Mango's "query") compiles its own functions
    functions = list(_functions(content.body))
    if functions and not JAVASCRIPT_CHECKED:
        yield Diagnostic.at(manifest, ("spec",), f"{len(functions)} JavaScript function(s) not checked for syntax "
                            "errors: the quickjs module is not installed", UNAVAILABLE_HINT, severity="warning")
        return
    for path, source in functions:
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
SHOWN_CHARACTERS = 60


class DesignDocumentResource(ResourceKind):
    name = DESIGN_DOCUMENT
    order = 30  # after the database and its security object
    reads = frozenset({DATABASES})  # the rows the database kind read (doc_count)

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
                    held = as_wanted(session, database, doc, by_key[key]) if key in by_key else doc
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
        if live is None:
            after = dict(wanted.body)
            return Create(self.name, wanted.key, wanted.source, after=after, fields=_shown(field_changes({}, after)))
        after = left_as_found(wanted.body, live.body)
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

    def summary_warnings(self, changes: Sequence[Change], live: Mapping[str, Observed],
                         wanted: Mapping[str, Desired]) -> Iterator[str]:
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
        body = upload_body(desired, change.before, subject)
        if change.before is not None:  # a document found on the server keeps its marker, or its lack of one
            body = left_as_found(body, change.before)
        if change.version is not None:
            body["_rev"] = change.version
        response = session.request("PUT", db_path(database, "_design", name), body=body, ok=(409,), what=subject)
        if response.status_code == 409:
            raise ReconcileError(f"{subject}: changed on the server since the plan was made; run plan again")
        if staged:
            delete_if_present(session, database, name + STAGED_SUFFIX, subject)


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


def _observed(key: str, doc: Mapping[str, Any], managed: bool, doc_count: int) -> Observed:
    return Observed(DESIGN_DOCUMENT, key, stored_content(doc), doc.get("_rev"), managed=managed,
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
