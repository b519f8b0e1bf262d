"""UserDatabases: the database-per-user template (a database, security, design documents and replications per user).

A UserDatabases manifest wants a database for every user in `_users`, and most of those users signed up
at run time: what it wants is known only once the server has been read. So it expands to no object: it
is a template (`UserTemplate`, with the DesignDocument manifests that name it), and its `resolve`, called
by the resolve stage inside the plan's observation, reads every `_users` document (through
`reads.shared`: the user kind then observes from the same read, so `_users` is read once per plan) and
each node's config (the cache the config kinds share), selects the users, and adds for each of them
ordinary objects of the database, security, design_document, replication and user kinds. Those kinds
never learn a template was involved: a user's database is a database.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .. import nodes
from ..client import CouchSession
from ..databases import every_database_info
from ..errors import ReconcileError
from ..model import (
    CONFIG,
    DATABASE,
    DESIGN_DOCUMENT_MANIFEST,
    REPLICATION,
    SECURITY,
    USER,
    USER_DATABASES_MANIFEST,
    Desired,
    DesiredState,
    Diagnostic,
    Manifest,
    Template,
)
from .base import ManifestKind, ResourceKind
from .checks import DATABASE_NAME_MAX_BYTES, role_diagnostics, undeclared_database
from .checks import USER_DATABASE_PREFIX as DEFAULT_PREFIX
from .design_document import for_databases
from .replication import replication, template_ids
from .user import ID_PREFIX, users_on_server

DEFAULT_MAX_JOBS = 500  # [replicator] max_jobs when a node does not set it
PERUSER_Q = 1  # [couch_peruser] q when a node does not set it (couch_peruser.erl)
SHOWN = 10  # users named in a warning before "and N more"


def user_database(prefix: str, user: str) -> str:
    """The database couch_peruser gives `user`: couch_peruser.erl `user_db_name` writes each byte of the
    UTF-8 name as `string:to_lower(integer_to_list(Byte, 16))`, lowercase hex with no zero padding (a
    byte below 0x10, only in control characters, is one digit)."""
    return prefix + "".join(format(byte, "x") for byte in user.encode("utf-8"))


def database_user(prefix: str, database: str) -> str | None:
    """The user whose database this is: the hex read back, checked by writing it again (couch_peruser's
    hex has no zero padding, so a name with a byte below 0x10 may not read back: it is then not known)."""
    try:
        name = bytes.fromhex(database.removeprefix(prefix)).decode("utf-8")
    except ValueError:
        return None
    return name if user_database(prefix, name) == database else None


def provenance_selector(user: str, owner_field: str) -> dict[str, Any]:
    """The selector of a replicateTo entry with `ownerField`: only her documents leave her database, those
    whose `_id` starts with `NAME:` (no user name holds `:`, so that namespace is hers alone and ids never
    collide across users in the target) and that name her in the owner field, plus the deletions of such ids
    (a tombstone keeps no body: docs/couchdb.md, "Replication"). It lives in `_replicator`, which only server
    admins write, where a validate_doc_update in her database could be removed by her: she administers it
    (docs/couchdb.md, "couch_peruser"). Design documents never match, so none of hers reaches the target."""
    return {"_id": {"$beginsWith": f"{user}:"}, "$or": [{owner_field: user}, {"_deleted": True}]}


class UserTemplate(Template):
    """A UserDatabases manifest and the DesignDocument manifests that name it as their `userDatabases`."""

    @property
    def design_documents(self) -> tuple[Manifest, ...]:
        return self.parts

    @property
    def prefix(self) -> str:
        prefix: str = self.manifest.spec.get("prefix", DEFAULT_PREFIX)
        return prefix

    @property
    def attributes_owners(self) -> bool:
        """Some replication of this template passes only documents that name their user."""
        return any("ownerField" in entry for entry in self.manifest.spec.get("replicateTo", []))

    def selects(self, name: str, roles: Iterable[str]) -> bool:
        select = self.manifest.spec.get("select", {})
        if "roles" in select and not set(select["roles"]) & set(roles):
            return False
        pattern = select.get("namePattern")
        return pattern is None or re.fullmatch(pattern, name) is not None
class UserDatabasesManifest(ManifestKind):
    kind = USER_DATABASES_MANIFEST
    schema = "user_databases.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        for index, manifest in enumerate(manifests):
            spec = manifest.spec
            prefix = spec.get("prefix", DEFAULT_PREFIX)
            for earlier in manifests[:index]:
                other = earlier.spec.get("prefix", DEFAULT_PREFIX)
                if prefix.startswith(other) or other.startswith(prefix):
                    # Both would claim (and keep, or delete) the same databases.
                    yield Diagnostic.at(manifest, ("spec", "prefix"),
                                        f"prefix `{prefix}` overlaps `{other}` of {earlier.subject} "
                                        f"({earlier.where('spec', 'prefix')})",
                                        "give each template a prefix that does not start with another's, "
                                        "or select users in one template")
            select = spec.get("select", {})
            pattern = select.get("namePattern")
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as error:
                    yield Diagnostic.at(manifest, ("spec", "select", "namePattern"),
                                        f"namePattern is not a valid regular expression ({error})", "fix the expression")
            yield from role_diagnostics(manifest, ("spec", "select", "roles"), select.get("roles", []), every)
            yield from role_diagnostics(manifest, ("spec", "grantRoles"), spec.get("grantRoles", []), every)
            for index, role in enumerate(spec.get("grantRoles", [])):
                if role.startswith("_"):
                    yield Diagnostic.at(manifest, ("spec", "grantRoles", index),
                                        f"role `{role}` is a system role, which `_users` refuses in user documents",
                                        "grant a role declared by a Role manifest")
            for group in ("members", "admins"):
                roles = spec.get("security", {}).get(group, {}).get("roles", [])
                yield from role_diagnostics(manifest, ("spec", "security", group, "roles"), roles, every)
            for index, replication in enumerate(spec.get("replicateTo", [])):
                yield from undeclared_database(manifest, ("spec", "replicateTo", index, "target"),
                                               replication["target"], every)

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        """No object of its own: `resolve` turns the template into per-user objects."""
        return ()

    def template(self, manifest: Manifest, every: Sequence[Manifest]) -> UserTemplate:
        return UserTemplate(manifest, tuple(m for m in every if m.kind == DESIGN_DOCUMENT_MANIFEST
                                            and m.spec.get("userDatabases") == manifest.name))

    def resolve(self, session: CouchSession, templates: Sequence[Template], state: DesiredState,
                kinds: Mapping[str, ResourceKind], prune: bool) -> list[str]:
        """Add to `state` every object the templates want for the users on the server (and those the manifests
        create); the plan warnings: users who cannot get a database, and more continuous replications than
        the cluster runs at once."""
        user_templates = [template for template in templates if isinstance(template, UserTemplate)]
        cluster = nodes.cluster(session)
        selected = selected_users(session, user_templates, state)
        conflicts_before = len(state.diagnostics)
        warnings: list[str] = []
        for template in user_templates:
            if any(entry.get("prune", True) for entry in template.manifest.spec.get("replicateTo", [])):
                # Also when no user is left: the last deleted user's replication goes too. Only the documents under
                # this template's own ids (replication_id): a hand-written Replication removed from the manifests
                # is deleted only with --allow-delete.
                state.prune_prefixes.setdefault(REPLICATION, set()).add(template_ids(template.name))
            users = selected[template.name]
            databases, refused = _databases(template, users)
            warnings += refused
            for desired in _objects(template, users, databases, _couch_peruser_q(cluster, state, template.prefix)):
                state.add(desired, template.manifest.subject, kinds)
            if any(entry.get("fanIn") == "triggered" for entry in template.manifest.spec.get("replicateTo", [])):
                warnings.append(f"{template.manifest.where('spec', 'replicateTo')}: {template.manifest.subject}: "
                                "`fanIn: triggered` replications are started by `reconcile watch`, not by apply")
        # A conflict with a manifest (a Database manifest naming a user's database with its own security): the
        # manifest's object stays, and the plan says so rather than failing for one user.
        warnings += [str(diagnostic) for diagnostic in state.diagnostics[conflicts_before:]]
        del state.diagnostics[conflicts_before:]
        warnings += _replicator_capacity(cluster, state)
        if prune:
            _keep_databases_of_gone_users(session, user_templates, state)
        return warnings


MANIFEST = UserDatabasesManifest()


def _keep_databases_of_gone_users(session: CouchSession, templates: Sequence[UserTemplate],
                                  state: DesiredState) -> None:
    """With deletions allowed, a database this tool created for a user who is gone would be pruned like
    any managed database nothing wants: unless its template says `deleteWithUser: true`, it is wanted
    as it is."""
    keeping = [template for template in templates if not template.manifest.spec.get("deleteWithUser", False)]
    if not keeping:
        return
    for name, info in every_database_info(session).items():
        template = next((t for t in keeping if name.startswith(t.prefix)), None)
        if template is not None and (DATABASE, name) not in state.objects:
            partitioned = bool((info.get("props") or {}).get("partitioned", False))
            state.add(Desired(DATABASE, name, body={"partitioned": partitioned},
                              source=template.manifest.where("spec", "deleteWithUser")), template.manifest.subject, {})


def selected_users(session: CouchSession, templates: Sequence[UserTemplate], state: DesiredState
                   ) -> dict[str, list[str]]:
    """Template name -> the users it selects, sorted: every user on the server and every user the manifests
    create, with the roles this plan gives them, server admins (never selected) left out. Reads `_users` and
    the nodes' config through the plan's shared reads."""
    cluster = nodes.cluster(session)
    admins = {name for node in cluster.nodes for name in cluster.config[node].get("admins", {})}
    candidates = _candidates(users_on_server(session), state)
    return {template.name: sorted(name for name, roles in candidates.items()
                                  if name not in admins and template.selects(name, roles)) for template in templates}


def _candidates(docs: Iterable[Mapping[str, Any]], state: DesiredState) -> dict[str, list[str]]:
    """User name -> roles, for every user on the server and every user the manifests create, with the roles
    this plan gives them (so a role-based selection sees a role granted in the same apply)."""
    users = {doc.get("name") or doc["_id"].removeprefix(ID_PREFIX): list(doc.get("roles") or [])
             for doc in docs if doc.get("type", "user") == "user"}
    for (kind, name), desired in state.objects.items():
        if kind != USER or (name not in users and desired.options.get("mode") == "merge"):
            continue  # a Role naming a user that exists nowhere creates no user, hence no database
        users[name] = users.get(name, []) + list(desired.body.get("roles", []))
    return users


def _databases(template: UserTemplate, users: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Database -> user for the users who can have one, and a warning for those who cannot (one user's
    name never fails the whole plan)."""
    too_long: list[str] = []
    unreadable: list[str] = []
    owners: dict[str, list[str]] = {}
    for user in users:
        database = user_database(template.prefix, user)
        if len(database.encode()) > DATABASE_NAME_MAX_BYTES:
            too_long.append(user)
        elif template.attributes_owners and database_user(template.prefix, database) != user:
            unreadable.append(user)
        else:
            owners.setdefault(database, []).append(user)
    where = f"{template.manifest.where('metadata', 'name')}: {template.manifest.subject}"
    warnings = []
    if too_long:
        warnings.append(f"{where}: {_listing(too_long)} get no database: the name {template.prefix}<hex of the "
                        f"UTF-8 name> would pass CouchDB's {DATABASE_NAME_MAX_BYTES}-byte limit (a name of at "
                        f"most {(DATABASE_NAME_MAX_BYTES - len(template.prefix.encode())) // 2} bytes fits); "
                        "give them shorter names or a shorter `prefix`")
    if unreadable:
        # `reconcile watch` names a triggered run's user from its database (database_user): it could not say
        # whose documents the run may carry.
        warnings.append(f"{where}: {_listing(unreadable)} get no database: a character below U+0010 in the "
                        "name makes couch_peruser's unpadded hex ambiguous, so the owner its replications admit "
                        "(`ownerField`) could not be told from the database; rename them")
    clashing = sorted(user for names in owners.values() if len(names) > 1 for user in names)
    if clashing:
        warnings.append(f"{where}: {_listing(clashing)} get no database: couch_peruser's unpadded hex gives "
                        "two of them the same database name; rename one of each pair")
    return {database: names[0] for database, names in owners.items() if len(names) == 1}, warnings


def _couch_peruser_q(cluster: nodes.Cluster, state: DesiredState, prefix: str) -> int | None:
    """couch_peruser's `q` when it makes this template's databases once this plan is applied (it is on, or the
    manifests turn it on, on every node, with this prefix); None when it does not."""
    def after(node: str, key: str) -> str | None:
        desired = state.objects.get((CONFIG, f"couch_peruser/{key}"))
        targets = None if desired is None else desired.options.get("nodes", "all")
        if desired is not None and (targets in (None, "all") or node in targets):
            value: str | None = desired.body.get("value")
            return value
        return cluster.value(node, "couch_peruser", key)

    if not all(after(node, "enable") == "true" and (after(node, "database_prefix") or DEFAULT_PREFIX) == prefix
               for node in cluster.nodes):
        return None
    # couch_peruser.erl creates them with `config:get_integer("couch_peruser", "q", 1)` shards.
    q = after(cluster.nodes[0], "q") if cluster.nodes else None
    return int(q) if q is not None and q.isdigit() and int(q) > 0 else PERUSER_Q


def _listing(users: Sequence[str]) -> str:
    """`N users (`a`, `b`… and M more)`, each name cut at 40 characters, control characters escaped."""
    def shown_name(user: str) -> str:
        printable = user if user.isprintable() else user.encode("unicode_escape").decode("ascii")
        return f"`{printable[:40]}{'…' if len(printable) > 40 else ''}`"

    shown = ", ".join(shown_name(user) for user in users[:SHOWN])
    more = f" and {len(users) - SHOWN} more" if len(users) > SHOWN else ""
    return f"{len(users)} user{'s' if len(users) != 1 else ''} ({shown}{more})"


def _objects(template: UserTemplate, users: Sequence[str], databases: Mapping[str, str],
             peruser_q: int | None) -> Iterator[Desired]:
    """What the template wants: its roles for every selected user (a user without a database still uses
    the shared ones), then each database with its security, design documents and replications.

    Every selected user's database is wanted, whether or not it exists yet, so that one apply completes
    every user. Where couch_peruser makes them (`peruser_q`: on, or turned on by these manifests), a
    missing one is created as couch_peruser creates it (its `q`, the user as member and admin) and left
    couch_peruser's, unmarked: whichever of the two creates it first, the database is the same and its
    owner too. couch_peruser adds the user's name only where it is missing (couch_peruser.erl
    `add_user`), so once the tool's object names her, couch_peruser writes no security of its own there.
    A database that exists by the time the apply creates it (couch_peruser, a concurrent apply) is
    accepted as it is (`exists_ok`): the template compares nothing a database is created with."""
    manifest, spec = template.manifest, template.manifest.spec
    security = spec.get("security", {})
    mode = security.get("mode", "merge")
    created: dict[str, Any] = {"exists_ok": True}
    if peruser_q is not None:
        created.update(owner="couch_peruser", creation={"q": peruser_q})
    # In merge mode the user is also an admin of her database, as couch_peruser makes her; exact mode says
    # the admins exactly (couch_peruser adds her again at its next replay: docs/reference-architecture.md).
    admin = peruser_q is not None and mode == "merge"
    grant = list(spec.get("grantRoles", []))
    if grant:
        # A merge into the user's roles, as a Role membership: roles given by others stay.
        for user in users:
            yield Desired(USER, user, body={"roles": grant}, source=manifest.where("spec", "grantRoles"),
                          options={"mode": "merge"})
    for database, user in sorted(databases.items()):
        yield Desired(DATABASE, database, body={"partitioned": False}, source=manifest.where("metadata", "name"),
                      options=created)
        yield Desired(SECURITY, database, body=_security(security, user, admin),
                      source=manifest.where("spec", "security"), options={"mode": mode})
    for design in template.design_documents:
        yield from for_databases(design, sorted(databases))  # reads the folder once for every database
    for index in range(len(spec.get("replicateTo", []))):
        yield from entry_replications(template, index, databases)


def entry_replications(template: UserTemplate, index: int, databases: Mapping[str, str]) -> Iterator[Desired]:
    """The `_replicator` document replicateTo entry `index` wants for each of `databases` (database -> user)."""
    manifest = template.manifest
    entry = manifest.spec["replicateTo"][index]
    for database, user in sorted(databases.items()):
        if entry.get("fanIn", "continuous") == "continuous":
            yield replication(replication_id(template, database, entry), _replication_spec(database, user, entry),
                              manifest.base_dir, manifest.where("spec", "replicateTo", index))
        else:
            yield triggered_replication(template, database, entry)


def replication_id(template: UserTemplate, database: str, entry: Mapping[str, Any]) -> str:
    """The `_replicator` document id of one user's replication: the same on every run, so it is updated in
    place, and naming the template, so a reader knows who made it."""
    return f"{template_ids(template.name)}{database}.to.{entry['target']}"


def triggered_replication(template: UserTemplate, database: str, entry: Mapping[str, Any]) -> Desired:
    """The one-shot document `reconcile watch` writes for a triggered fan-in entry. It carries the ownership
    marker, so once its user is gone it is pruned as the continuous ones are; while she exists it is wanted
    with the `triggered` option, which tells the replication kind that watch, not apply, writes it (each run
    rewrites it, so its content is never drift)."""
    index = list(template.manifest.spec.get("replicateTo", [])).index(entry)
    desired = replication(replication_id(template, database, entry),
                          {**_replication_spec(database, database_user(template.prefix, database), entry),
                           "continuous": False},
                          template.manifest.base_dir, template.manifest.where("spec", "replicateTo", index))
    return replace(desired, options={**desired.options, "triggered": True})


def _replication_spec(database: str, user: str | None, entry: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"source": database, "target": entry["target"], "continuous": True}
    spec.update({key: entry[key] for key in ("auth", "replicationBaseUrl") if key in entry})
    if "ownerField" in entry:
        if user is None:  # _databases gives such a user no database: nothing may replicate it unfiltered
            raise ReconcileError(f"{database}: its user cannot be read back from the name, so its replication "
                                 f"to {entry['target']} cannot admit only her documents")
        spec["selector"] = provenance_selector(user, entry["ownerField"])
    return spec


def _security(security: Mapping[str, Any], user: str, admin: bool) -> dict[str, dict[str, list[str]]]:
    """The user first among the members (and the admins with `admin`), then the template's names and roles."""
    def names(group: str, first: bool) -> list[str]:
        written = list(security.get(group, {}).get("names", []))
        return [user] + [name for name in written if name != user] if first else written

    return {group: {"names": names(group, first), "roles": list(security.get(group, {}).get("roles", []))}
            for group, first in (("members", True), ("admins", admin))}


def _replicator_capacity(cluster: nodes.Cluster, state: DesiredState) -> list[str]:
    """CouchDB runs at most `[replicator] max_jobs` replications per node and rotates the rest
    (`max_churn` per `interval`), so beyond that a continuous fan-in goes stale (docs/couchdb.md: ~23
    minutes at 1,000 users)."""
    settings = (str(cluster.value(node, "replicator", "max_jobs") or "") for node in cluster.nodes)
    capacity = sum(int(value) if value.isdigit() else DEFAULT_MAX_JOBS for value in settings)
    continuous = sum(1 for (kind, _), desired in state.objects.items()
                     if kind == REPLICATION and desired.body.get("continuous") is True)
    if continuous <= capacity:
        return []
    return [f"{continuous} continuous replications would run but the cluster runs at most {capacity} at once "
            f"([replicator] max_jobs x {len(cluster.nodes)} node(s)): the rest wait and rotate, and documents "
            "reach their targets late; use `fanIn: triggered` with `reconcile watch`, or raise max_jobs"]
