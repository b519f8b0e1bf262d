"""Database: a CouchDB database and its `_security` object."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Collection, Iterable, Iterator, Mapping, Sequence

from requests import Response

from ..client import CouchSession, batched, db_path
from ..creations import RECORDS_DB, forget_creations, record_creations, recorded_creations, settle_record
from ..databases import (
    INFO_KEYS_PER_REQUEST,
    database_infos,
    every_database_info,
    existing_databases,
    info_rows,
    seen_rows,
    seq_number,
)
from ..errors import ReconcileError, ServerError
from ..model import (
    DATABASE,
    DATABASE_MANIFEST,
    NODE_CONFIG_MANIFEST,
    SECURITY,
    USER_DATABASES_MANIFEST,
    Change,
    Create,
    Delete,
    Desired,
    Diagnostic,
    FieldChange,
    Manifest,
    Observed,
    Replace,
    Update,
)
from ..ownership import MARKER, MARKER_VALUE, is_marked
from ..reads import DATABASES, is_remembering, wanted_in_plan
from ..secrets import SecretRef
from .base import ManifestKind, ResourceKind
from .checks import USER_DATABASE_PREFIX, database_name_problem, role_diagnostics
from .fields import field_changes
from .security import (
    ADMIN_ONLY,
    compose,
    groups,
    read_observed,
    read_securities,
    read_security,
    read_with_databases,
)


class DatabaseManifest(ManifestKind):
    kind = DATABASE_MANIFEST
    schema = "database.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        templates = [m for m in every if m.kind == USER_DATABASES_MANIFEST]  # once, not once per database
        for manifest in manifests:
            problem = database_name_problem(manifest.name)
            if problem:
                yield Diagnostic.at(manifest, ("metadata", "name"), problem, "rename it")
            for template in templates:
                prefix = template.spec.get("prefix", USER_DATABASE_PREFIX)
                if manifest.name.startswith(prefix):
                    # The template owns every database under its prefix (security, deletion with the user).
                    yield Diagnostic.at(manifest, ("metadata", "name"),
                                        f"the name starts with `{prefix}`, the prefix of the user databases "
                                        f"{template.subject} manages (at {template.where('metadata', 'name')}): "
                                        "both would manage it",
                                        "rename the database, or leave user databases to the template")
            security = manifest.spec.get("security")
            if security is None:
                continue
            if security.get("public") and "members" in security:
                yield Diagnostic.at(manifest, ("spec", "security", "members"),
                                    "`public: true` with `members`: a public database has no members",
                                    "remove `members`, or remove `public: true` to keep the database to its members")
            if security.get("public") and security.get("mode") == "merge":
                yield Diagnostic.at(manifest, ("spec", "security", "mode"),
                                    "`public: true` with `mode: merge`: merge keeps the member names other "
                                    "writers add, which would make the database private again",
                                    "remove `mode: merge` (a public database's members are owned exactly)")
            for group in ("members", "admins"):
                roles = security.get(group, {}).get("roles", [])
                yield from role_diagnostics(manifest, ("spec", "security", group, "roles"), roles, every)
            if manifest.name == "_users" and not _users_security_editable(every):
                # CouchDB answers 403 to any _users/_security write unless this is on (default false).
                yield Diagnostic.at(manifest, ("spec", "security"),
                                    "CouchDB refuses changes to _users/_security",
                                    "remove `security`, or also declare a NodeConfig setting "
                                    "[couchdb] users_db_security_editable to true")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        spec = manifest.spec
        # `partitioned` among the options too when written: only then is it compared with the server's.
        options = {key: spec[key] for key in ("partitioned", "q", "n", "prune") if key in spec}
        yield Desired(DATABASE, manifest.name, body={"partitioned": spec.get("partitioned", False)},
                      source=manifest.where("metadata", "name"), options=options)
        security = spec.get("security")
        if security is not None:
            body = {group: {"names": list(security.get(group, {}).get("names", [])),
                            "roles": list(security.get(group, {}).get("roles", []))}
                    for group in ("members", "admins")}
            options = {"mode": security.get("mode", "exact"), **({"public": True} if security.get("public") else {})}
            yield Desired(SECURITY, manifest.name, body=body, source=manifest.where("spec", "security"),
                          options=options)


def _users_security_editable(every: Sequence[Manifest]) -> bool:
    return any(m.kind == NODE_CONFIG_MANIFEST and m.spec["section"] == "couchdb"
               and str(m.spec["values"].get("users_db_security_editable")).lower() == "true" for m in every)


MANIFEST = DatabaseManifest()


# Resource side: a database's existence and its creation-time properties.
#
# Ownership lives on the server, in the database's own `_security` object (couch_reconciler/ownership.py):
# databases this tool created carry MARKER there, and a creation record (couch_reconciler/creations.py) names those
# whose marker may be missing. Hand-made databases and couch_peruser's carry neither, so they are never pruned.
class DatabaseResource(ResourceKind):
    name = DATABASE
    order = 10  # first: everything else lives in a database
    reads = frozenset({DATABASES})

    def observe(self, session: CouchSession, wanted: Sequence[Desired], prune: bool = False
                ) -> Mapping[str, Observed]:
        names = {desired.key for desired in wanted}
        if prune:
            # The template resolution may have read these rows already in this plan (kinds/user_databases.py).
            infos = every_database_info(session)
            existing = set(infos)
        else:
            existing = existing_databases(session, names)
        # Only a database that exists may be one whose marker is missing.
        recorded = recorded_creations(session) if existing else {}
        if not prune:
            # A row costs the server about what a `_security` read does: read only those whose figures the
            # plan uses (update_seq in watch, which skips unchanged databases' reads by it; what the manifest
            # compares or warns about; the version of a marker to restore), not one per database.
            figures = names if is_remembering(session) else {d.key for d in wanted if FIGURES & set(d.options)}
            infos = _rows_opening_once(session, existing & (figures | recorded.keys()))
        # None records a database seen missing, so that nobody asks for it again.
        seen_rows(session).update({**dict.fromkeys(names - existing), **infos})
        live = {name: _observed(name, infos.get(name)) for name in names & existing}
        # A recorded database this tool sent the creation of: its marker may be missing (one read each; a
        # record outlives only a failed apply, so there are few).
        for name, security in read_securities(session, sorted(recorded.keys() & names & existing)).items():
            if not is_marked(security):
                live[name] = _observed(name, infos.get(name), managed=True, record=recorded[name])
        if prune:
            # Only an unlisted database can be pruned, and only when this tool made it: one `_security` read
            # each (no bulk read exists), system databases never.
            unlisted = sorted(name for name in infos if name not in names and not name.startswith("_"))
            for name, security in read_securities(session, unlisted).items():
                if is_marked(security) or name in recorded:
                    live[name] = _observed(name, infos[name], managed=True,
                                           record=None if is_marked(security) else recorded[name])
        return live

    def reread(self, session: CouchSession, changes: Sequence[Change]) -> Mapping[str, Observed]:
        keys = [change.key for change in changes]
        return {name: _observed(name, info) for name, info in database_infos(session, keys).items()}

    def diff(self, wanted: Desired | None, live: Observed | None) -> Change | None:
        if wanted is None:
            return self.prune(live, destroys=_documents)
        after = {"partitioned": bool(wanted.body.get("partitioned", False)),
                 **{key: wanted.options[key] for key in ("q", "n") if key in wanted.options},
                 **wanted.options.get("creation", {})}
        if live is None:
            owner = wanted.options.get("owner")
            notes = (f"{owner} creates it too: created as {owner} does and left {owner}'s (no ownership marker), "
                     "so that this apply completes it",) if owner else ()
            return Create(self.name, wanted.key, wanted.source, after=after, fields=field_changes({}, after),
                          notes=notes)
        # `partitioned` unwritten is left to the creation, as q and n are: not read (observe), nothing to compare.
        # q and n are creation parameters only (see warnings); `partitioned` changes what documents are.
        fields = field_changes(live.body, {"partitioned": after["partitioned"]}) if "partitioned" in wanted.options \
            else ()
        if not fields:
            return _marker_restored(wanted, live) if live.facts.get("record") else None
        return Replace(self.name, wanted.key, wanted.source, before=dict(live.body), after=after, fields=fields,
                       version=live.version, destroys=_documents(live),
                       notes=("`partitioned` is fixed when a database is created",))

    def warnings(self, wanted: Desired | None, live: Observed | None) -> Iterator[str]:
        if wanted is None or live is None:
            return
        for key in ("q", "n"):
            if key in wanted.options and live.facts.get(key) not in (None, wanted.options[key]):
                yield (f"{wanted.source}: database/{wanted.key}: {key} is {live.facts[key]} on the server, "
                       f"{wanted.options[key]} in the manifest; {key} applies only when a database is created "
                       "(split shards with CouchDB's /_reshard, or recreate the database)")

    def apply(self, session: CouchSession, changes: Sequence[Change],
              secrets: Mapping[str, Mapping[str, SecretRef]]) -> None:
        created = [change.key for change in changes if _made_here(change)]
        record = record_creations(session, created) if created else None

        def attempt(change: Change) -> ReconcileError | None:
            try:
                self._apply_one(session, change, record)
            except ReconcileError as error:
                return error
            return None

        # Every change of the batch runs to its end, so that the records of those done can be settled even when
        # one fails: this batch's, and those naming the databases a plan marks or prunes.
        failures = list(session.map(attempt, changes))
        done = {change.key for change, failure in zip(changes, failures) if failure is None}
        failure = next((failure for failure in failures if failure is not None), None)
        try:
            if record is not None:
                settle_record(session, record, [name for name in created if name not in done])
            forget_creations(session, [change.key for change in changes
                                       if change.key in done and isinstance(change, (Update, Delete))])
        except ReconcileError:
            if failure is None:
                raise
            # the failure below is the one to tell; a record naming a marked database changes nothing
        if failure is not None:
            raise failure

    def _apply_one(self, session: CouchSession, change: Change, record: str | None) -> None:
        subject = f"database/{change.key}"
        if isinstance(change, Update):
            _restore_marker(session, subject, change.key)
            return
        if isinstance(change, (Delete, Replace)):
            # 404: already gone (an interrupted apply, or someone else): what was wanted.
            session.request("DELETE", db_path(change.key), ok=(404,), what=subject)
        if isinstance(change, (Create, Replace)):
            after = change.after or {}
            params = {key: str(after[key]) for key in ("q", "n") if key in after}
            if after.get("partitioned"):
                params["partitioned"] = "true"
            options = change.desired.options if change.desired is not None else {}
            response = _create(session, change.key, params, subject, racing=bool(options.get("exists_ok")))
            if response.status_code == 412:
                if not options.get("exists_ok"):
                    raise ReconcileError(f"{subject}: someone created it since the plan was made; run plan again")
                _merge_founded(session, subject, change.key, after.get("security"), change.desired)
                return
            # CouchDB 3.x creates it admin-only; the marker beside that makes it this tool's to prune later. When
            # the plan also sets its security, the engine hands that object over (the security kind's `founding`)
            # and this one PUT writes both.
            security = after.get("security", ADMIN_ONLY)
            if options.get("owner"):  # another's database (couch_peruser's): no marker, no record, nothing to undo
                if "security" in after:
                    session.request("PUT", db_path(change.key, "_security"), body=security, retry=True,
                                    what=f"{subject}: writing its _security")
                return
            try:
                session.request("PUT", db_path(change.key, "_security"), body={**security, MARKER: MARKER_VALUE},
                                retry=True, what=f"{subject}: writing its _security and ownership marker")
            except ReconcileError as error:
                if record is not None:
                    raise ReconcileError(f"{error}; {subject} was created without it: the next apply writes it "
                                         f"(a creation record, {RECORDS_DB}/{record}, says this tool created "
                                         "it)") from None
                raise _unmade(session, subject, change.key, error) from None


def _made_here(change: Change) -> bool:
    """A creation that makes the database this tool's (recorded, then marked): not one made for another
    owner (couch_peruser's database, created as couch_peruser creates it)."""
    owner = change.desired.options.get("owner") if change.desired is not None else None
    return isinstance(change, (Create, Replace)) and owner is None


def _merge_founded(session: CouchSession, subject: str, name: str, founded: Mapping | None,
                   desired: Desired | None) -> None:
    """A database someone else created first (couch_peruser, a concurrent apply), which the plan accepts as it
    is: not this tool's (no marker), and the security object its creation was to write is merged into what
    that creator wrote (its names and roles stay)."""
    if founded is None or desired is None:
        return
    current = read_security(session, name)
    if current is None:
        raise ReconcileError(f"{subject}: deleted again while this apply created it; run plan again")
    wanted = compose(current, replace(desired, kind=SECURITY, body=founded, options={"mode": "merge"}))
    if groups(wanted) != groups(current):
        session.request("PUT", db_path(name, "_security"), body=wanted, retry=True,
                        what=f"{subject}: merging its _security into the one its creator wrote")


# The plan field of a marker restored (shown as adopting the database, couch_reconciler/render.py).
RESTORE_MARKER = FieldChange(MARKER, None, MARKER_VALUE)


def _marker_restored(wanted: Desired, live: Observed) -> Update:
    return Update(DATABASE, wanted.key, wanted.source, before=dict(live.body), after=dict(live.body),
                  fields=(RESTORE_MARKER,), version=live.version,
                  notes=(f"restores its ownership marker in _security, which an interrupted apply left out (a "
                         f"creation record, {RECORDS_DB}/{live.facts['record']}, shows this tool sent the "
                         "request that created it)",))


def _restore_marker(session: CouchSession, subject: str, name: str) -> None:
    """The marker added to the `_security` object as it is now: every other key stays (another writer's
    names, couch_peruser's), as the security kind's merge does."""
    current = read_security(session, name)
    if current is None:
        raise ReconcileError(f"{subject}: deleted since the plan was made; run plan again")
    if not is_marked(current):
        session.request("PUT", db_path(name, "_security"), body={**current, MARKER: MARKER_VALUE}, retry=True,
                        what=f"{subject}: restoring its ownership marker")


def _unmade(session: CouchSession, subject: str, name: str, error: ReconcileError) -> ReconcileError:
    """Without a creation record (a server with no `_users`), nothing on the server would say this tool created
    a database whose marker write failed (it would never be pruned). The database, created a moment ago and
    empty, is deleted again: a rerun creates it with its marker."""
    try:
        session.request("DELETE", db_path(name), ok=(404,), retry=True, what=subject)
    except ReconcileError:
        return ReconcileError(f"{error}; {subject} was created but neither its ownership marker could be written "
                              "nor the database deleted again: it stays unmanaged (never pruned) unless you delete "
                              "it (it is empty) before the next apply")
    return ReconcileError(f"{error}; {subject} was deleted again (it was empty) so that the next apply creates it "
                          "with its marker")


# The options whose check needs the database's `_dbs_info` row (props.partitioned, cluster.q and .n).
FIGURES = frozenset({"partitioned", "q", "n"})
# Chunks of databases read at once: while one chunk's rows are read, the next chunk's `_security` reads keep
# the pool busy.
CHUNKS_IN_FLIGHT = 2


def _rows_opening_once(session: CouchSession, names: Collection[str]) -> dict[str, dict]:
    """`_dbs_info` rows of `names` (databases that exist), each read just after the `_security` object
    the security kind wants of that database, which opens it: so the server opens each database once per
    plan, not once for the row and again for its security (couch_reconciler/databases.py says why that matters).
    The objects are kept for the security kind (`security.read_with_databases`). In `reconcile watch` they
    are not read ahead: there the security kind reads only those whose database's update_seq moved."""
    seen = seen_rows(session)
    unread = sorted(name for name in names if name not in seen)
    ahead = set() if is_remembering(session) else set(wanted_in_plan(session, SECURITY))
    store = read_with_databases(session)

    def chunk(keys: list[str]) -> dict[str, dict]:
        securities = [key for key in keys if key in ahead]
        read = read_observed(session, securities)
        store.update({key: read.get(key) for key in securities})
        return info_rows(session, keys)

    with ThreadPoolExecutor(CHUNKS_IN_FLIGHT, thread_name_prefix="database-chunk") as chunks:
        rows = {name: info for found in chunks.map(chunk, batched(unread, INFO_KEYS_PER_REQUEST))
                for name, info in found.items()}
    return {**{name: info for name in names if (info := seen.get(name)) is not None}, **rows}


# Attempts at a database another creator may make at the same moment (couch_peruser): CouchDB answers the
# loser of that race 500 `{"error":"error","reason":"conflict"}` while the winner's shard map is written but
# not yet seen (fabric_db_create.erl go/2), and 412 a moment later.
RACE_ATTEMPTS = 4


def _create(session: CouchSession, name: str, params: dict[str, str], subject: str, racing: bool) -> Response:
    """PUT /db (a 412 is the caller's to read); with `racing`, a lost creation race is asked again."""
    def put() -> Response:
        return session.request("PUT", db_path(name), params=params, ok=(412,), what=subject)

    for attempt in range(1, RACE_ATTEMPTS):
        try:
            return put()
        except ServerError as error:
            if not racing or (error.status, error.reason) != (500, "conflict"):
                raise
        time.sleep(0.1 * 2 ** attempt)
    return put()


def _observed(name: str, info: Mapping | None, managed: bool = False, record: str | None = None) -> Observed:
    """The database as its `_dbs_info` row shows it; without a row (not read), only that it exists. `record`:
    the creation record that shows this tool created it, when its marker is missing."""
    flag = {"record": record} if record else {}
    if info is None:
        return Observed(DATABASE, name, {}, None, managed=managed, facts=flag)
    cluster = info.get("cluster") or {}
    # The version: how many updates (`seq_number`: copies of a cluster may count one apart, which only makes a
    # saved plan be made again) of which instance of the database (`instance_start_time`, its creation).
    version = f"{seq_number(info.get('update_seq'))}@{info.get('instance_start_time')}"
    return Observed(DATABASE, name, {"partitioned": bool((info.get("props") or {}).get("partitioned", False))},
                    version, managed=managed,
                    facts={"doc_count": info.get("doc_count", 0), "q": cluster.get("q"), "n": cluster.get("n"), **flag})


def _documents(live: Observed) -> str | None:
    count = live.facts.get("doc_count") or 0
    return f"{count} document{'s' if count != 1 else ''}" if count else None


RESOURCE = DatabaseResource()
