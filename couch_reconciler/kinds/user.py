"""User: a document in `_users` (its password from a secret reference)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..client import CouchSession, batched, bulk_failure
from ..errors import ReconcileError
from ..model import (
    USER,
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
from ..ownership import OWNER, OWNER_FIELD
from ..passwords import user_hash, verify_all
from ..reads import USER_DOCUMENTS, shared
from ..secrets import SecretRef
from .base import ManifestKind, ResourceKind
from .checks import user_name_problem
from .fields import field_changes

# `_users` refuses roles starting with `_`, except this one (its _auth validate_doc_update).
_ALLOWED_SYSTEM_ROLES = ("_metrics",)


class UserManifest(ManifestKind):
    kind = USER_MANIFEST
    schema = "user.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        for manifest in manifests:
            problem = user_name_problem(manifest.name)
            if problem:
                yield Diagnostic.at(manifest, ("metadata", "name"), problem, "choose another user name")
            for index, role in enumerate(manifest.spec.get("roles", [])):
                if role.startswith("_") and role not in _ALLOWED_SYSTEM_ROLES:
                    yield Diagnostic.at(manifest, ("spec", "roles", index),
                                        f"role `{role}` is a system role, which `_users` refuses in user documents",
                                        "grant server-admin rights with `kind: ServerAdmin` instead")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        spec = manifest.spec
        secrets = {"password": SecretRef.parse(spec["password"], manifest.base_dir)} if "password" in spec else {}
        options = {"prune": spec["prune"]} if "prune" in spec else {}
        yield Desired(USER, manifest.name, body={"roles": sorted(spec.get("roles", [])), **spec.get("fields", {})},
                      source=manifest.where("metadata", "name"), secrets=secrets, options=options)


MANIFEST = UserManifest()


USERS_DB = "_users"
ID_PREFIX = "org.couchdb.user:"
# CouchDB writes these (or they identify the doc), as it does every `_`-field (_rev, _attachments...):
# never drift, and kept as they are on every write.
SERVER_FIELDS = frozenset({"name", "type", "password", "derived_key", "salt", "iterations", "password_scheme",
                           "pbkdf2_prf", "password_sha", OWNER_FIELD})
# CouchDB hashes each `password` it receives one after another inside a _bulk_docs request
# (~240 ms each at 600k rounds). The pool sends batches at once and they share the server's
# cores: 16 batches of 5 on 2 cores answer in ~10 s, well inside the 30 s timeout (of 20: ~40 s).
PASSWORD_BATCH = 5
PLAIN_BATCH = 500
AUTH_DDOC_WAIT = 30.0


class UserResource(ResourceKind):
    name = USER
    order = 40
    reads = frozenset({USER_DOCUMENTS})

    def merge(self, first: Desired, second: Desired) -> Desired:
        """A User manifest and Role memberships for one user: the roles are the union (the User's first).

        The User manifest, if any, gives the password, extra fields and source; without one the
        result stays a membership (`mode: merge`): roles added to a user that exists on the server.
        """
        declared, other = (second, first) if _is_membership(first) and not _is_membership(second) else (first, second)
        if not _is_membership(other):
            raise ReconcileError(f"user/{declared.key} is declared twice (also at {declared.source})")
        roles = list(declared.body.get("roles", []))
        roles += [role for role in other.body.get("roles", []) if role not in roles]
        return replace(declared, body={**declared.body, "roles": roles})

    def observe(self, session: CouchSession, wanted: Sequence[Desired], prune: bool = False
                ) -> Mapping[str, Observed]:
        wanted_by_name = {desired.key: desired for desired in wanted}
        live = {name: doc for doc in users_on_server(session)
                if (name := _name(doc)) in wanted_by_name or (prune and _is_managed(doc))}
        checks = {name: (stored, wanted_by_name[name].secrets["password"]) for name, doc in live.items()
                  if name in wanted_by_name and "password" in wanted_by_name[name].secrets
                  and (stored := user_hash(doc)) is not None}
        # A password that cannot be read (a plan run without it) is not checked: no change is claimed for it.
        readable = {name: value for name, (_, ref) in checks.items() if (value := ref.resolve_if_readable())}
        # Only users whose secret is managed pay for a check (600k PBKDF2 rounds each on 3.4), in parallel.
        results = verify_all((checks[name][0], value) for name, value in readable.items())
        verifies = {**dict.fromkeys(checks, True), **dict(zip(readable, results))}
        return {name: _observed(doc, {"password_verifies": verifies.get(name, False)}) for name, doc in live.items()}

    def reread(self, session: CouchSession, changes: Sequence[Change]) -> Mapping[str, Observed]:
        keys = [change.key for change in changes]
        return {name: _observed(doc, {}) for name, doc in _read_docs(session, keys).items()}

    def diff(self, wanted: Desired | None, live: Observed | None) -> Change | None:
        if wanted is None:
            return self.prune(live)
        password = (FieldChange("password", None, None, sensitive=True),) if "password" in wanted.secrets else ()
        if live is None:
            if _is_membership(wanted):
                return None  # a Role names a user that exists nowhere: never created (see `warnings`)
            return Create(self.name, wanted.key, wanted.source, after=dict(wanted.body),
                          fields=field_changes(None, wanted.body) + password)
        after = _owned(wanted, live)
        fields = field_changes({path: live.body.get(path) for path in after}, after, sets=("roles",))
        if password and live.facts.get("password_verifies"):
            password = ()
        if not fields and not password:
            return None
        return Update(self.name, wanted.key, wanted.source, before=dict(live.body), after=after,
                      fields=fields + password, version=live.version)

    def warnings(self, wanted: Desired | None, live: Observed | None) -> Iterable[str]:
        if wanted is not None and live is None and _is_membership(wanted):
            yield (f"{wanted.source}: user/{wanted.key} is given a role but exists neither in the manifests "
                   "nor on the server, so it is not created; add a User manifest or fix the name")

    def apply(self, session: CouchSession, changes: Sequence[Change],
              secrets: Mapping[str, Mapping[str, SecretRef]]) -> None:
        creates = [change for change in changes if isinstance(change, Create)]
        others = [change for change in changes if not isinstance(change, Create)]
        current = _read_docs(session, [change.key for change in others])
        docs = []
        for change in others:
            doc = current.get(change.key)
            if doc is None or doc.get("_rev") != change.version:
                raise ReconcileError(f"user/{change.key} changed on the server since it was planned; run plan again")
            if isinstance(change, Delete):
                docs.append({"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True})
            else:  # the whole stored doc, so the hash and fields no manifest names survive the write
                docs.append({**doc, **(change.after or {}), **_new_password(change, secrets)})
        if creates:
            wait_for_auth_ddoc(session)
        docs += [{**(change.after or {}), "_id": ID_PREFIX + change.key, "name": change.key, "type": "user",
                  OWNER_FIELD: OWNER, **_new_password(change, secrets)} for change in creates]
        _bulk_write(session, docs)


def all_user_docs(session: CouchSession) -> Iterator[dict]:
    """Every user document, a page at a time (never one GET per user)."""
    return session.all_docs(USERS_DB, what="reading _users", start_key=ID_PREFIX, end_key=ID_PREFIX + "\ufff0")


def users_on_server(session: CouchSession) -> list[dict]:
    """Every user document, read once per plan: the template resolution and this kind share the read."""
    return shared(session, USERS_DB, lambda: list(all_user_docs(session)))


def user_body(doc: Mapping[str, Any]) -> dict:
    """What manifests may own in a user document: its roles and extra fields."""
    return {"roles": list(doc.get("roles") or []),
            **{key: value for key, value in doc.items()
               if key not in SERVER_FIELDS and key != "roles" and not key.startswith("_")}}


def wait_for_auth_ddoc(session: CouchSession, timeout: float = AUTH_DDOC_WAIT) -> None:
    """CouchDB installs `_users/_design/_auth` asynchronously after start-up and until then accepts
    invalid user documents (docs/couchdb.md): users are created only once it is there."""
    deadline = time.monotonic() + timeout
    while session.request("GET", f"{USERS_DB}/_design/_auth", ok=(404,)).status_code == 404:
        if time.monotonic() > deadline:
            raise ReconcileError(f"_users/_design/_auth did not appear within {timeout:g}s: CouchDB is still "
                                 "starting; run apply again when it is up")
        time.sleep(0.25)


def _observed(doc: Mapping[str, Any], facts: Mapping[str, Any]) -> Observed:
    return Observed(USER, _name(doc), user_body(doc), doc.get("_rev"), managed=_is_managed(doc), facts=facts)


def _read_docs(session: CouchSession, names: Sequence[str]) -> dict[str, dict]:
    docs = session.docs_by_id(USERS_DB, [ID_PREFIX + name for name in names], what="reading _users")
    return {_name(doc): doc for doc in docs.values()}


def _bulk_write(session: CouchSession, docs: Sequence[dict]) -> None:
    batches = batched([doc for doc in docs if "password" in doc], PASSWORD_BATCH)
    batches += batched([doc for doc in docs if "password" not in doc], PLAIN_BATCH)
    failures = session.bulk_docs(USERS_DB, batches, what="writing _users")
    if failures:
        raise bulk_failure(lambda id: f"{USER}/{id.removeprefix(ID_PREFIX)}", failures)


def _owned(wanted: Desired, live: Observed) -> dict:
    """The fields the manifests own; Role memberships alone only add roles to what the user holds."""
    if not _is_membership(wanted):
        return dict(wanted.body)
    roles = list(live.body.get("roles", []))
    return {"roles": roles + [role for role in wanted.body.get("roles", []) if role not in roles]}


def _new_password(change: Change, secrets: Mapping[str, Mapping[str, SecretRef]]) -> dict:
    """The plaintext CouchDB hashes itself on write; read from its reference only now, never stored."""
    if not any(field.path == "password" for field in change.fields):
        return {}
    return {"password": secrets[change.key]["password"].resolve()}


def _name(doc: Mapping[str, Any]) -> str:
    return doc.get("name") or doc["_id"].removeprefix(ID_PREFIX)


def _is_managed(doc: Mapping[str, Any]) -> bool:
    return doc.get(OWNER_FIELD) == OWNER


def _is_membership(desired: Desired) -> bool:
    return desired.options.get("mode") == "merge"


RESOURCE = UserResource()
