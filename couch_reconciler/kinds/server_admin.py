"""ServerAdmin: a server admin in the [admins] config section of every node, and its ownership marker in
[couch_reconciler_admins] beside it."""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping, Sequence

from .. import nodes
from ..client import CouchSession
from ..errors import ReconcileError
from ..model import (
    SERVER_ADMIN,
    SERVER_ADMIN_MANIFEST,
    USER_MANIFEST,
    Change,
    Create,
    Delete,
    Desired,
    Diagnostic,
    FieldChange,
    Manifest,
    Observed,
    Update,
)
from ..ownership import ADMIN_MARKER_VALUE, MARKER_SECTION
from ..reads import CLUSTER_CONFIG
from ..passwords import (
    DEFAULT_ITERATIONS,
    DEFAULT_PRF,
    admin_hash,
    hash_admin_password,
    verify_all,
    written_by_this_tool,
)
from ..secrets import SecretRef
from .base import ManifestKind, ResourceKind


class ServerAdminManifest(ManifestKind):
    kind = SERVER_ADMIN_MANIFEST
    schema = "server_admin.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        users = {m.name: m for m in every if m.kind == USER_MANIFEST}
        for manifest in manifests:
            if ":" in manifest.name:
                yield Diagnostic.at(manifest, ("metadata", "name"), "an admin name cannot hold `:`",
                                    "HTTP basic auth splits the name at `:`: choose another name")
            if manifest.name in users:
                yield Diagnostic.at(manifest, ("metadata", "name"),
                                    f"also declared as a User (at {users[manifest.name].where('metadata', 'name')}); "
                                    "the server admin shadows the user at login",
                                    "use different names for users and server admins", severity="warning")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        yield Desired(SERVER_ADMIN, manifest.name, body={}, source=manifest.where("metadata", "name"),
                      secrets={"password": SecretRef.parse(manifest.spec["password"], manifest.base_dir)},
                      options={"nodes": manifest.spec.get("nodes", "all")})


MANIFEST = ServerAdminManifest()


SECTION = "admins"
# Ownership (couch_reconciler/ownership.py): `[couch_reconciler_admins] NAME = couch-reconciler` on each node the tool
# wrote the admin to. Only admins marked on some node are pruned.
LOCKOUT = ("reconcile is connected as this admin with another password: changing it mid-run would lock this "
           "run out (nodes change one by one, behind any load balancer)")
PASSWORD = FieldChange("password", None, None, sensitive=True)
# An admin this tool wrote (its hash's salt says so) whose marker an interrupted apply did not write.
RESTORE_MARKER = FieldChange(MARKER_SECTION, None, ADMIN_MARKER_VALUE)


class ServerAdminResource(ResourceKind):
    """`[admins]` on every target node, all holding ONE hash the tool computed: nodes agree, and an
    unchanged secret is recognised by verifying it against that hash (never by logging in)."""

    name = SERVER_ADMIN
    # Before every kind that may use an admin (a replication running as her). Writes that depend on a new
    # admin need no wait for her to authenticate: a precomputed hash is usable as soon as each node's PUT
    # has answered (docs/couchdb.md, "Security and users": chttpd_node.erl answers after config:set stored
    # it, and couch_auth_cache:get_admin/1 reads it at every request), and apply writes the next kind only
    # once this one's writes have all answered.
    order = 4
    reads = frozenset({CLUSTER_CONFIG})

    def observe(self, session: CouchSession, wanted: Sequence[Desired], prune: bool = False
                ) -> Mapping[str, Observed]:
        cluster = nodes.cluster(session)
        wanted_by_name = {desired.key: desired for desired in wanted}
        names = set(wanted_by_name)
        if prune:
            names |= {name for node in cluster.nodes for name in cluster.config[node].get(SECTION, {})}
        targets = {name: cluster.targets(wanted_by_name[name].options.get("nodes"), f"server_admin/{name}")
                   if name in wanted_by_name else cluster.nodes for name in names}
        values = {name: {node: cluster.value(node, SECTION, name) for node in targets[name]} for name in names}
        # Nodes normally share one value: each distinct (name, value) is verified once, all in parallel.
        pairs = sorted({(name, value) for name in names & wanted_by_name.keys() for value in values[name].values()
                        if value is not None})
        # A password that cannot be read (a plan run without it) is not checked: no change is claimed for it.
        readable = {name: secret for name, _ in pairs
                    if (secret := wanted_by_name[name].secrets["password"].resolve_if_readable())}
        checked = [(name, value) for name, value in pairs if name in readable]
        results = verify_all((admin_hash(value), readable[name]) for name, value in checked)
        verified = {pair for pair, ok in zip(checked, results) if ok} | {p for p in pairs if p[0] not in readable}
        observed = {}
        for name in names:
            present = [node for node, value in values[name].items() if value is not None]
            if not present:
                continue
            facts = {"nodes": list(targets[name]),
                     "agree": len(set(values[name].values())) == 1,
                     "verifies": [node for node, value in values[name].items() if (name, value) in verified],
                     "locks_out": name in wanted_by_name and _locks_out(session, name, wanted_by_name[name])}
            marked = any(cluster.value(node, MARKER_SECTION, name) == ADMIN_MARKER_VALUE for node in cluster.nodes)
            facts["unmarked_own"] = not marked and any(written_by_this_tool(values[name][node] or "")
                                                              for node in present)
            observed[name] = Observed(self.name, name, {"nodes": present}, nodes.digest(values[name]),
                                      managed=marked and name != session.connection.user, facts=facts)
        return observed

    def diff(self, wanted: Desired | None, live: Observed | None) -> Change | None:
        if wanted is None:  # the admin this tool is connected as is never managed (observe), so never pruned
            return self.prune(live)
        if live is None:
            return Create(self.name, wanted.key, wanted.source, after={"nodes": wanted.options.get("nodes", "all")},
                          fields=(PASSWORD,))
        facts = live.facts
        missing = [node for node in facts["nodes"] if node not in live.body["nodes"]]
        wrong = [node for node in live.body["nodes"] if node not in facts["verifies"]]
        rehash = bool(missing or wrong or not facts["agree"])
        if not rehash and not facts.get("unmarked_own"):
            return None
        notes: tuple[str, ...] = ()
        if rehash:
            problems = ([f"missing on {', '.join(missing)}"] if missing else []) + \
                ([f"the secret does not verify on {', '.join(wrong)}"] if wrong else [])
            note = "; ".join(problems) or "nodes hold different hashes of the secret"
            notes = (f"{note}: one new hash is written to every node",)
            if facts["locks_out"]:
                notes += (f"{LOCKOUT}; apply refuses it",)
        if facts.get("unmarked_own"):
            notes += (f"restores its ownership marker in [{MARKER_SECTION}], which an interrupted apply left out "
                      "(its hash's salt shows this tool wrote it)",)
        fields = ((PASSWORD,) if rehash else ()) + ((RESTORE_MARKER,) if facts.get("unmarked_own") else ())
        return Update(self.name, wanted.key, wanted.source, before=dict(live.body), after={"nodes": facts["nodes"]},
                      fields=fields, version=live.version, notes=notes)

    def apply(self, session: CouchSession, changes: Sequence[Change],
              secrets: Mapping[str, Mapping[str, SecretRef]]) -> None:
        cluster = nodes.cluster(session)
        writes: list[tuple[str, str, str, str | None]] = []
        # Ordered so that an interrupted apply errs towards an unmarked admin (never pruned) rather than a
        # marker without its admin (which would make a hand-made admin of that name prunable later):
        # markers of deleted admins go first, markers of created ones last.
        unmark: list[tuple[str, str, str, str | None]] = []
        mark: list[tuple[str, str, str, str | None]] = []
        for change in changes:
            if isinstance(change, Delete):
                if change.key == session.connection.user:
                    raise ReconcileError(f"server_admin/{change.key}: refusing to delete the admin this tool is "
                                         "connected as; connect as another admin to remove it")
                writes += [(node, SECTION, change.key, None) for node in (change.before or {})["nodes"]]
                unmark += [(node, MARKER_SECTION, change.key, None) for node in cluster.nodes]
                continue
            targets = cluster.targets((change.after or {})["nodes"], f"server_admin/{change.key}")
            if PASSWORD in change.fields:
                if change.desired is not None and _locks_out(session, change.key, change.desired):
                    raise ReconcileError(f"server_admin/{change.key}: {LOCKOUT}; run apply with another admin's "
                                         "credentials (COUCHDB_USER), then use the new password")
                auth = cluster.config[targets[0]].get("chttpd_auth", {})  # where CouchDB reads its own settings
                value = hash_admin_password(secrets[change.key]["password"].resolve(),
                                            int(auth.get("iterations", DEFAULT_ITERATIONS)),
                                            auth.get("pbkdf2_prf", DEFAULT_PRF))
                writes += [(node, SECTION, change.key, value) for node in targets]
            if isinstance(change, Create) or RESTORE_MARKER in change.fields:
                mark += [(node, MARKER_SECTION, change.key, ADMIN_MARKER_VALUE) for node in targets]
        for phase in (unmark, writes, mark):
            list(session.map(lambda write: _write(session, *write), phase))


def _locks_out(session: CouchSession, name: str, desired: Desired) -> bool:
    """Writing this admin's secret would change the password this very session authenticates with."""
    return name == session.connection.user and desired.secrets["password"].resolve() != session.connection.password


def _write(session: CouchSession, node: str, section: str, name: str, value: str | None) -> None:
    path = nodes.config_path(node, section, name)
    what = f"server_admin/{name} on {node}" + (": its ownership marker" if section == MARKER_SECTION else "")
    if value is None:
        session.request("DELETE", path, ok=(404,), what=what, retry=True)
    else:
        # raw=true: stored as given, so CouchDB neither re-hashes the admin's hash nor serves plaintext meanwhile.
        session.request("PUT", path, params={"raw": "true"}, body=value, what=what, retry=True)


RESOURCE = ServerAdminResource()
