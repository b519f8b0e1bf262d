"""Replication: a document in `_replicator`."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import quote, unquote, urlsplit

from ..client import CouchSession, batched, bulk_failure
from ..databases import moved_since, planned_database_infos
from ..errors import ReconcileError
from ..model import (
    REPLICATION,
    REPLICATION_MANIFEST,
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
from ..reads import DATABASES, REPLICATION_DOCUMENTS
from ..replicator import REPLICATOR, replicator_docs, replicator_docs_by_id
from ..secrets import SecretRef
from .base import ManifestKind, ResourceKind
from .checks import undeclared_database
from .fields import field_changes

# CouchDB refuses a replication that combines these (couch_replicator_docs / the 3.x replicator API).
EXCLUSIVE_FILTERS = ("doc_ids", "filter", "selector")


def is_url(endpoint: str) -> bool:
    return "://" in endpoint


def template_ids(template: str) -> str:
    """The start of every `_replicator` id the UserDatabases template named `template` makes: what it may
    delete without --allow-delete once their user is gone, so no Replication manifest may name one so."""
    return f"{template}."


class ReplicationManifest(ManifestKind):
    kind = REPLICATION_MANIFEST
    schema = "replication.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        templates = [m.name for m in every if m.kind == USER_DATABASES_MANIFEST]
        for manifest in manifests:
            spec = manifest.spec
            owner = next((name for name in templates if manifest.name.startswith(template_ids(name))), None)
            if owner is not None:
                yield Diagnostic.at(manifest, ("metadata", "name"),
                                    f"the name starts with `{template_ids(owner)}`, which names the replications of "
                                    f"UserDatabases `{owner}` (deleted once their user is gone)",
                                    "choose a name that does not start with a UserDatabases template's name and a dot")
            for end in ("source", "target"):
                endpoint = spec[end]
                if not is_url(endpoint):
                    yield from undeclared_database(manifest, ("spec", end), endpoint, every)
                elif urlsplit(endpoint).password is not None:
                    # Not repeating the URL: it holds a password.
                    yield Diagnostic.at(manifest, ("spec", end), f"the {end} URL holds a password",
                                        f"remove it from the URL and give `{end}Auth:` with a password reference")
            if endpoint_url(spec, "source").rstrip("/") == endpoint_url(spec, "target").rstrip("/"):
                # Not repeating a URL: it may hold a password (reported above).
                yield Diagnostic.at(manifest, ("spec", "target"), "the target is the source database: the "
                                    "replication would copy the database onto itself",
                                    "name another target database (or URL)")
            given = [key for key in EXCLUSIVE_FILTERS if key in spec]
            if len(given) > 1:
                yield Diagnostic.at(manifest, ("spec", given[1]), f"`{given[0]}` and `{given[1]}` cannot be combined",
                                    "keep one of doc_ids, filter and selector")
            if "auth" in spec:
                for specific in ("sourceAuth", "targetAuth"):
                    if specific in spec:
                        yield Diagnostic.at(manifest, ("spec", specific), f"`auth` and `{specific}` are both given",
                                            "use `auth` for both endpoints, or sourceAuth/targetAuth for each")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        yield replication(manifest.name, manifest.spec, manifest.base_dir, manifest.where("metadata", "name"))


MANIFEST = ReplicationManifest()


# Resource side: documents in `_replicator`.
#
# The document's `_id` is the manifest's metadata.name (a UserDatabases template names its own, one per
# user), so the same manifest always means the same document. Ownership: MARKER in the document, as for
# databases and design documents. CouchDB 3.x needs full URLs (local names are refused with
# `local_endpoints_not_supported`), so database names resolve against the URL the *server* reaches itself
# at; credentials go in `auth.basic` (docs/couchdb.md), filled from their secret only when written.
# That URL belongs to the deployment, not to the layout (staging and production differ, a container
# reaches itself at another address than the CI runner does), so a manifest may leave it to the
# environment, as it leaves passwords.
DEFAULT_BASE_URL = "http://127.0.0.1:5984"  # where a CouchDB with default settings reaches itself
BASE_URL_VARIABLE = "COUCHDB_REPLICATION_URL"
ENDPOINTS = ("source", "target")
# Written by CouchDB (owner: the writer's name; _replication_*: the scheduler's verdict), never drift.
SERVER_FIELDS = frozenset({"_id", "_rev", "_revisions", "_conflicts", "owner", "_replication_state",
                           "_replication_state_time", "_replication_state_reason", "_replication_id",
                           "_replication_stats", "_replication_start_time"})
# The options couch_replicator_parse:convert_options/1 reads (it skips any other field silently).
OPTIONS = ("continuous", "create_target", "create_target_params", "selector", "doc_ids", "filter", "query_params",
           "since_seq", "use_checkpoints", "checkpoint_interval", "worker_processes", "worker_batch_size",
           "http_connections", "connection_timeout", "retries_per_request", "winning_revs_only", "use_bulk_get",
           "owner")
HIDDEN = "(sensitive)"
# In a one-shot document `reconcile watch` writes for `fanIn: triggered`: the source's update_seq its run
# started at. Its run is behind once the source's update_seq moved and watch has not started the next one.
TRIGGER_FIELD = "couch_reconciler_trigger"
STALE_AFTER = 60.0  # seconds after a run ended before a source written since counts as not delivered
WRITE_BATCH = 500


def endpoint_url(spec: Mapping[str, Any], end: str) -> str:
    """The URL of the spec's `source` or `target`: a database name is joined to the URL the server reaches
    itself at."""
    endpoint = spec[end]
    if is_url(endpoint):
        return endpoint
    base = (spec.get("replicationBaseUrl") or os.environ.get(BASE_URL_VARIABLE) or DEFAULT_BASE_URL).rstrip("/")
    return f"{base}/{quote(endpoint, safe='')}"


def replication(doc_id: str, spec: Mapping[str, Any], base_dir: str, source: Source) -> Desired:
    """The `_replicator` document a Replication spec (or a template's per-user one) stands for."""
    body: dict[str, Any] = {}
    secrets: dict[str, SecretRef] = {}
    for end in ENDPOINTS:
        body[end] = {"url": endpoint_url(spec, end)}
        auth = spec.get(f"{end}Auth") or spec.get("auth")
        if auth is not None:
            body[end]["auth"] = {"basic": {"username": auth["username"]}}
            secrets[end] = SecretRef.parse(auth["password"], base_dir)
    body.update({key: spec[key] for key in OPTIONS if key in spec})
    body[MARKER] = MARKER_VALUE
    return Desired(REPLICATION, doc_id, body=body, source=source, secrets=secrets)


class ReplicationResource(ResourceKind):
    name = REPLICATION
    order = 50  # after the databases it connects and the users it may run as
    # The databases' rows too: a triggered run's source update_seq, from those the database kind read (`_behind`).
    reads = frozenset({REPLICATION_DOCUMENTS, DATABASES})

    def observe(self, session: CouchSession, wanted: Sequence[Desired], prune: bool = False
                ) -> Mapping[str, Observed]:
        """Pruning must see every document (the managed ones nothing wants): all of `_replicator`, a page at a
        time. Otherwise only the wanted ones, by id: a targeted `watch` run wants a handful of the 10,000."""
        by_id = {desired.key: desired for desired in wanted}
        docs = list(replicator_docs(session) if prune else replicator_docs_by_id(session, list(by_id)).values())
        kept = [doc for doc in docs if doc["_id"] in by_id or (prune and is_marked(doc))]
        behind = _behind(session, kept)
        return {doc["_id"]: _observed(doc, by_id.get(doc["_id"]), doc["_id"] in behind) for doc in kept}

    def reread(self, session: CouchSession, changes: Sequence[Change]) -> Mapping[str, Observed]:
        keys = [change.key for change in changes]
        return {doc_id: _observed(doc, None) for doc_id, doc in replicator_docs_by_id(session, keys).items()}

    def diff(self, wanted: Desired | None, live: Observed | None) -> Change | None:
        if wanted is None:
            return self.prune(live)
        if wanted.options.get("triggered"):
            # `reconcile watch` writes it on each run (kinds/user_databases.triggered_replication). A continuous
            # one (the entry's fanIn was switched) is watch's to switch too: it deletes them together and starts
            # the one-shot runs, at most --max-triggered at once, each marked with the update_seq it starts at,
            # where rewriting them all here would start every one at once in CouchDB's scheduler and have watch
            # trigger each again. The plan says how many wait for that (summary_warnings).
            return None
        with_secret = [end for end in ENDPOINTS if end in wanted.secrets]
        if live is None:
            return Create(self.name, wanted.key, wanted.source, after=dict(wanted.body),
                          fields=field_changes({}, wanted.body) + _password_fields(with_secret))
        before = dict(live.body)
        if "owner" in wanted.body:  # owned by the manifest only when it names one
            before["owner"] = live.facts.get("owner")
        after = left_as_found(wanted.body, live.body)
        fields = field_changes(before, after)
        passwords = _password_fields(end for end in with_secret if not live.facts["password_matches"].get(end))
        if not fields and not passwords:
            return None
        notes: tuple[str, ...] = ()
        if live.facts.get("state") == "failed":
            notes = (f"CouchDB marked it failed ({live.facts.get('reason')}); writing it makes CouchDB start it again",)
        losing = live.facts.get("conflicts", ())
        if losing:
            notes += (f"{len(losing)} conflicting revision(s) of it on the server (written on another copy at the "
                      "same time): the update deletes them, so it is the one revision left",)
        return Update(self.name, wanted.key, wanted.source, before=before, after=after,
                      fields=fields + passwords, version=live.version, notes=notes, losing_versions=losing)

    def prune(self, live: Observed | None, destroys: Callable[[Observed], str | None] = lambda live: None
              ) -> Delete | None:
        change = super().prune(live, destroys)
        return None if change is None or live is None else _every_branch(change, live.facts.get("conflicts", ()))

    def warnings(self, wanted: Desired | None, live: Observed | None) -> Iterator[str]:
        if wanted is not None and live is not None and live.facts.get("state") == "failed" \
                and not wanted.options.get("triggered") and self.diff(wanted, live) is None:
            yield (f"{wanted.source}: replication/{wanted.key}: CouchDB marked it failed "
                   f"({live.facts.get('reason')}); fix the manifest, and apply writes it again")

    def summary_warnings(self, changes: Sequence[Change], live: Mapping[str, Observed],
                         wanted: Mapping[str, Desired]) -> Iterator[str]:
        # Per fan-in (the template's replicateTo line and its target): the user databases whose one-shot run
        # is due, written since their last run or never replicated at all, which only watch starts.
        stale: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        for key, desired in wanted.items():
            observed = live.get(key)
            if not desired.options.get("triggered") or (observed is not None and not observed.facts.get("behind")):
                continue
            ended, never = stale.setdefault((str(desired.source), local_database(desired.body["target"]) or ""),
                                            ([], []))
            if observed is None:
                never.append(key)
            else:
                ended.append(str(observed.facts["state_time"]))
        for (source, target), (ended, never) in sorted(stale.items()):
            parts = ([f"{len(ended)} written since their last run (the oldest ended {min(ended)})"] if ended else []) \
                + ([f"{len(never)} never replicated"] if never else [])
            yield (f"{source}: fanIn triggered into {target} is stale: {len(ended) + len(never)} user database(s) "
                   f"wait for `reconcile watch`, which starts their one-shot runs; is it running? "
                   f"({'; '.join(parts)})")
        switching = sum(1 for observed in live.values() if observed.facts.get("switching"))
        if switching:
            yield (f"{switching} continuous replication(s) of a `fanIn: triggered` entry switch to one-shot runs: "
                   "`reconcile watch` deletes them in bulk at its next full reconcile (CouchDB's scheduler drops "
                   "their jobs) and replicates each database once by a one-shot run, at most --max-triggered at "
                   "once; apply leaves them as they are (they keep replicating continuously until then)")

    def apply(self, session: CouchSession, changes: Sequence[Change],
              secrets: Mapping[str, Mapping[str, SecretRef]]) -> None:
        """Each change, and a deletion of every losing revision it saw, in one `_bulk_docs`: the resolution of
        CouchDB's docs (replication/conflicts.rst: update one revision and delete the others in a single
        POST to `_bulk_docs`). Otherwise a Delete would remove the winning revision only, a losing one would
        win, and the replication would come back."""
        batches = []
        for chunk in batched(changes, WRITE_BATCH):
            docs = []
            for change in chunk:
                doc: dict[str, Any] = {"_id": change.key}
                if change.version is not None:
                    doc["_rev"] = change.version
                if isinstance(change, Delete):
                    doc["_deleted"] = True
                else:
                    doc.update(_with_passwords(change.after or {}, secrets.get(change.key, {})))
                docs.append(doc)
                docs.extend({"_id": change.key, "_rev": rev, "_deleted": True} for rev in change.losing_versions)
            batches.append(docs)
        losing = {(change.key, rev) for change in changes for rev in change.losing_versions}
        failures = session.bulk_docs(REPLICATOR, batches, what="writing _replicator",
                                     settled=lambda doc, row: _resolved_meanwhile(doc, row, losing))
        if failures:
            raise bulk_failure(lambda id: f"{REPLICATION}/{id}", failures)


def deletion(doc: Mapping[str, Any]) -> Delete:
    """The Delete of a `_replicator` document as read (`replicator.py`): every revision of it."""
    return _every_branch(Delete(REPLICATION, doc["_id"], None, version=doc["_rev"]), doc.get("_conflicts", ()))


def _every_branch(change: Delete, losing: Sequence[str]) -> Delete:
    """`change` deleting the document's losing revisions `losing` too (`ReplicationResource.apply`)."""
    if not losing:
        return change
    note = (f"its {len(losing)} conflicting revision(s) (written on another copy at the same time) go too, "
            "so it does not come back")
    return replace(change, losing_versions=tuple(losing), notes=change.notes + (note,))


def _resolved_meanwhile(doc: Mapping[str, Any], row: Mapping[str, Any], losing: set[tuple[str, str]]) -> bool:
    """A losing revision that is no longer a leaf (`conflict`: someone deleted or extended it since it was read)
    or gone (`not_found`) needs nothing more from this write."""
    return (doc["_id"], doc.get("_rev")) in losing and row.get("error") in ("conflict", "not_found")


def fields_to_change(wanted: Desired, doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields a plan would change to make the stored document `wanted` (none: it leaves it alone); a
    password counts only when its secret is readable and differs."""
    change = RESOURCE.diff(wanted, _observed(doc, wanted))
    return () if change is None else tuple(item.path for item in change.fields)


def _observed(doc: Mapping[str, Any], wanted: Desired | None, behind: bool = False) -> Observed:
    """The document without what CouchDB adds and without any credential (an admin reads the stored
    passwords in clear: they are compared here, with the wanted secrets, and dropped)."""
    body = {key: value for key, value in doc.items() if key not in SERVER_FIELDS}
    matches = {}
    for end in ENDPOINTS:
        if end not in body:
            continue
        body[end] = as_endpoint_object(body[end])
        stored = _password(body[end])
        if wanted is not None and end in wanted.secrets:
            # A password that cannot be read (a plan run without it) is not checked: no change is claimed.
            value = wanted.secrets[end].resolve_if_readable()
            matches[end] = value is None or (stored is not None and stored == value)
        body[end] = _without_credentials(body[end])
    return Observed(REPLICATION, doc["_id"], body, doc.get("_rev"), managed=is_marked(doc),
                    facts={"owner": doc.get("owner"), "state": doc.get("_replication_state"),
                           "reason": doc.get("_replication_state_reason"), "password_matches": matches,
                           "switching": wanted is not None and bool(wanted.options.get("triggered"))
                           and body.get("continuous") is True,
                           "behind": behind, "state_time": doc.get("_replication_state_time"),
                           "conflicts": tuple(doc.get("_conflicts", ()))})


def as_endpoint_object(endpoint: Any) -> Any:
    """A URL string endpoint in the object form the tool writes. CouchDB reads both alike: a string is the
    object's `url`, and credentials in the URL's userinfo are basic auth (docs/couchdb.md, Replication), so
    a hand-made `"source": "http://ops:pw@host/db"` is the manifest's `source` with `sourceAuth`."""
    if not isinstance(endpoint, str):
        return endpoint
    parts = urlsplit(endpoint)
    if parts.username is None:
        return {"url": endpoint}
    basic = {"username": unquote(parts.username)}
    if parts.password is not None:
        basic["password"] = unquote(parts.password)
    return {"url": parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl(), "auth": {"basic": basic}}


def _behind(session: CouchSession, docs: Sequence[Mapping[str, Any]]) -> set[str]:
    """The completed one-shot runs (fanIn triggered) whose source moved since they started, ended more than
    STALE_AFTER ago. The sources' update_seq comes from the `_dbs_info` rows the plan read for the database
    kind (`planned_database_infos`): no request more for the databases a plan wants."""
    completed = {doc["_id"]: doc for doc in docs
                 if doc.get(TRIGGER_FIELD) and doc.get("_replication_state") == "completed"}
    sources = {doc_id: local_database(doc.get("source")) for doc_id, doc in completed.items()}
    infos = planned_database_infos(session, sorted({name for name in sources.values() if name}))
    now = datetime.now(timezone.utc)
    ended = {doc_id: _timestamp(doc.get("_replication_state_time")) for doc_id, doc in completed.items()}
    candidates = {doc_id: source for doc_id, source in sources.items() if source and source in infos
                  and (when := ended[doc_id]) is not None and (now - when).total_seconds() > STALE_AFTER}
    moved = moved_since(session, [(source, infos[source], completed[doc_id][TRIGGER_FIELD].get("update_seq"))
                                  for doc_id, source in candidates.items()])
    return {doc_id for doc_id, source_moved in zip(candidates, moved) if source_moved}


def local_database(endpoint: Any) -> str | None:
    """The database an endpoint names: the last segment of its URL."""
    url = endpoint.get("url") if isinstance(endpoint, Mapping) else endpoint
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]) if isinstance(url, str) else None


def _timestamp(text: Any) -> datetime | None:
    """`_replication_state_time` (RFC 3339, e.g. 2026-12-03T05:31:46Z)."""
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _password_fields(ends: Iterable[str]) -> tuple[FieldChange, ...]:
    """Shown as `(sensitive, will change)`: neither the stored password nor the secret is ever printed."""
    return tuple(FieldChange(f"{end}.auth.basic.password", None, None, sensitive=True) for end in ends)


def _password(endpoint: Any) -> str | None:
    if isinstance(endpoint, Mapping):
        basic = (endpoint.get("auth") or {}).get("basic") or {}
        return basic.get("password") if isinstance(basic, Mapping) else None
    return None


def _without_credentials(endpoint: Any) -> Any:
    """An endpoint as a plan may show it: no password in `auth.basic`, the URL's or a header's hidden."""
    if isinstance(endpoint, str):
        return _hide_url_password(endpoint)
    if not isinstance(endpoint, Mapping):
        return endpoint
    shown = dict(endpoint)
    if isinstance(shown.get("url"), str):
        shown["url"] = _hide_url_password(shown["url"])
    if isinstance(shown.get("auth"), Mapping):
        shown["auth"] = {kind: ({k: v for k, v in value.items() if k != "password"} if isinstance(value, Mapping)
                                else HIDDEN) for kind, value in shown["auth"].items()}
    if isinstance(shown.get("headers"), Mapping):
        shown["headers"] = {name: HIDDEN for name in shown["headers"]}
    return shown


def _hide_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:{HIDDEN}@{host}").geturl()


def _with_passwords(body: Mapping[str, Any], secrets: Mapping[str, SecretRef]) -> dict[str, Any]:
    """The document to write: each endpoint's password read from its reference now (never kept)."""
    doc = dict(body)
    for end, ref in secrets.items():
        endpoint = dict(doc[end])
        basic = {**endpoint["auth"]["basic"], "password": ref.resolve()}
        endpoint["auth"] = {**endpoint["auth"], "basic": basic}
        doc[end] = endpoint
    return doc


RESOURCE = ReplicationResource()
