"""Database: a CouchDB database and its `_security` object."""

from __future__ import annotations

import json
from typing import Iterable, Iterator, Mapping, Sequence

from ..client import CouchSession, batched, db_path
from ..diff import Change, Create, Delete, Replace, field_changes, prune
from ..errors import ReconcileError
from ..expand import Desired
from ..load import Manifest
from ..observe import Observed, shared
from ..secrets import SecretRef
from ..validate import Diagnostic, database_name_problem, role_diagnostics
from .security import ADMIN_ONLY, read_securities


class DatabaseManifest:
    kind = "Database"
    schema = "database.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        for manifest in manifests:
            problem = database_name_problem(manifest.name)
            if problem:
                yield Diagnostic.at(manifest, ("metadata", "name"), problem, "rename it")
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
        options = {key: spec[key] for key in ("q", "n", "prune") if key in spec}
        yield Desired("database", manifest.name, body={"partitioned": spec.get("partitioned", False)},
                      source=manifest.where("metadata", "name"), options=options)
        security = spec.get("security")
        if security is not None:
            body = {group: {"names": list(security.get(group, {}).get("names", [])),
                            "roles": list(security.get(group, {}).get("roles", []))}
                    for group in ("members", "admins")}
            options = {"mode": security.get("mode", "exact"), **({"public": True} if security.get("public") else {})}
            yield Desired("security", manifest.name, body=body, source=manifest.where("spec", "security"),
                          options=options)


def _users_security_editable(every: Sequence[Manifest]) -> bool:
    return any(m.kind == "NodeConfig" and m.spec["section"] == "couchdb"
               and str(m.spec["values"].get("users_db_security_editable")).lower() == "true" for m in every)


MANIFEST = DatabaseManifest()


# Resource side (issue 5): a database's existence and its creation-time properties.
#
# Ownership lives on the server, in the database's own `_security` object (CouchDB keeps top-level keys
# beside `members`/`admins`; see kinds/security.py): databases this tool created carry MARKER there.
# Hand-made databases and couch_peruser's never do, so they are never pruned.
MARKER = "couch_reconciler"
MARKER_VALUE = {"created_by": "couch-reconciler"}
# `POST /_dbs_info` takes at most 100 keys (`[chttpd] max_db_number_for_dbs_info_req`); 101 is a 400.
INFO_KEYS_PER_REQUEST = 100
INFO_PAGE = 1000  # `GET /_dbs_info` pages like `_all_dbs`, with no cap on `limit`


def database_infos(session: CouchSession, names: Sequence[str]) -> dict[str, dict]:
    """`_dbs_info` rows of the existing databases among `names`, 100 per request over the session's pool."""
    batches = batched(names, INFO_KEYS_PER_REQUEST)
    pages = session.map(lambda keys: session.post("_dbs_info", {"keys": keys}, what="reading _dbs_info"), batches)
    return {row["key"]: row["info"] for page in pages for row in page if "info" in row}


# What the database kind read in the plan being made: kinds observed after it (design documents, which need
# each database's doc_count to say what a view rebuild costs; security objects, read only for databases that
# exist) take the rows from here instead of reading `_dbs_info` again. The rows live as long as the plan's
# `observation`, so a long-lived session (watch) never sees old ones.
def _seen(session: CouchSession) -> dict[str, dict | None]:
    """Row per database name (None: seen missing) read during the current observation; empty outside one."""
    return shared(session, "database kind: _dbs_info rows", dict)


def planned_database_infos(session: CouchSession, names: Sequence[str], every: bool = False) -> dict[str, dict]:
    """`_dbs_info` rows of the existing databases among `names`: those the database kind has just observed
    in this session as it saw them, the others read now. `every` adds every database seen in this plan
    (all of them when the database kind was pruning)."""
    seen = _seen(session)
    missing = [name for name in names if name not in seen]
    if missing:
        seen.update({**dict.fromkeys(missing), **database_infos(session, missing)})
    return {name: info for name in (seen if every else names) if (info := seen[name]) is not None}


def all_database_infos(session: CouchSession) -> dict[str, dict]:
    """`_dbs_info` rows of every database, a page at a time (`GET /_dbs_info`, CouchDB 3.2+; before 3.2 only
    POST exists, so the names come from `_all_dbs` pages and the rows 100 at a time)."""
    infos: dict[str, dict] = {}
    params = {"limit": str(INFO_PAGE)}
    while True:
        response = session.request("GET", "_dbs_info", params=params, ok=(400, 404, 405),
                                   what="listing databases (_dbs_info)")
        if response.status_code != 200:
            return database_infos(session, all_database_names(session))
        rows = response.json()
        infos.update({row["key"]: row["info"] for row in rows if "info" in row})
        if len(rows) < INFO_PAGE:
            return infos
        params = {"limit": str(INFO_PAGE), "start_key": json.dumps(rows[-1]["key"]), "skip": "1"}


def all_database_names(session: CouchSession) -> list[str]:
    names: list[str] = []
    params = {"limit": str(INFO_PAGE)}
    while True:
        page = session.get("_all_dbs", params=params, what="listing databases (_all_dbs)")
        names.extend(page)
        if len(page) < INFO_PAGE:
            return names
        params = {"limit": str(INFO_PAGE), "start_key": json.dumps(page[-1]), "skip": "1"}


class DatabaseResource:
    name = "database"
    order = 10  # first: everything else lives in a database

    def observe(self, session: CouchSession, wanted: Sequence[Desired], prune: bool = False
                ) -> Mapping[str, Observed]:
        names = {desired.key for desired in wanted}
        # The template resolution may have read these rows already in this plan (reconciler/templates.py).
        infos = (shared(session, "_dbs_info", lambda: all_database_infos(session)) if prune
                 else planned_database_infos(session, sorted(names)))
        # None records a database seen missing, so that nobody asks for it again.
        _seen(session).update({**dict.fromkeys(names), **infos})
        live = {name: _observed(name, info) for name, info in infos.items() if name in names}
        if prune:
            # Only an unlisted database can be pruned, and only when this tool made it: one `_security` read
            # each (no bulk read exists), system databases never.
            unlisted = sorted(name for name in infos if name not in names and not name.startswith("_"))
            for name, security in read_securities(session, unlisted).items():
                if security.get(MARKER) == MARKER_VALUE:
                    live[name] = _observed(name, infos[name], managed=True)
        return live

    def reread(self, session: CouchSession, keys: Sequence[str]) -> Mapping[str, Observed]:
        return {name: _observed(name, info) for name, info in database_infos(session, list(keys)).items()}

    def diff(self, wanted: Desired | None, live: Observed | None) -> Change | None:
        if wanted is None:
            return prune(self.name, live, destroys=_documents)
        after = {"partitioned": bool(wanted.body.get("partitioned", False)),
                 **{key: wanted.options[key] for key in ("q", "n") if key in wanted.options}}
        if live is None:
            return Create(self.name, wanted.key, wanted.source, after=after, fields=field_changes({}, after))
        # q and n are creation parameters only (see warnings); `partitioned` changes what documents are.
        fields = field_changes(live.body, {"partitioned": after["partitioned"]})
        if not fields:
            return None
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
        list(session.map(lambda change: self._apply_one(session, change), changes))

    def _apply_one(self, session: CouchSession, change: Change) -> None:
        subject = f"database/{change.key}"
        if isinstance(change, (Delete, Replace)):
            # 404: already gone (an interrupted apply, or someone else): what was wanted.
            session.request("DELETE", db_path(change.key), ok=(404,), what=subject)
        if isinstance(change, (Create, Replace)):
            params = {key: str(change.after[key]) for key in ("q", "n") if key in change.after}
            if change.after.get("partitioned"):
                params["partitioned"] = "true"
            response = session.request("PUT", db_path(change.key), params=params, ok=(412,), what=subject)
            if response.status_code == 412:
                raise ReconcileError(f"{subject}: someone created it since the plan was made; run plan again")
            # CouchDB 3.x creates it admin-only; the marker beside that makes it this tool's to prune later. When
            # the plan also sets its security, the engine hands that object over (the security kind's `founding`)
            # and this one PUT writes both.
            security = change.after.get("security", ADMIN_ONLY)
            session.request("PUT", db_path(change.key, "_security"), body={**security, MARKER: MARKER_VALUE},
                            retry=True, what=f"{subject}: writing its _security and ownership marker")


def _observed(name: str, info: Mapping, managed: bool = False) -> Observed:
    cluster = info.get("cluster") or {}
    return Observed("database", name, {"partitioned": bool((info.get("props") or {}).get("partitioned", False))},
                    str(info.get("update_seq")), managed=managed,
                    facts={"doc_count": info.get("doc_count", 0), "q": cluster.get("q"), "n": cluster.get("n")})


def _documents(live: Observed) -> str | None:
    count = live.facts.get("doc_count") or 0
    return f"{count} document{'s' if count != 1 else ''}" if count else None


RESOURCE = DatabaseResource()
