"""A toy kind, kept outside the product: a `Greeting` manifest wants the document `greeting:NAME` in a
database. It is the whole recipe of docs/architecture.md ("Adding a kind"): one module and its schema,
registered with `couch_reconciler.kinds.register`, and no other file of couch_reconciler/ changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from couch_reconciler.client import CouchSession, db_path
from couch_reconciler.kinds.base import ManifestKind, ResourceKind
from couch_reconciler.kinds.checks import undeclared_database
from couch_reconciler.kinds.fields import field_changes
from couch_reconciler.model import DATABASE, Change, Create, Desired, Diagnostic, Manifest, Observed, Update
from couch_reconciler.ownership import MARKER, MARKER_VALUE, is_marked
from couch_reconciler.secrets import SecretRef

GREETING = "greeting"


class GreetingManifest(ManifestKind):
    kind = "Greeting"
    schema = str(Path(__file__).with_name("greeting.schema.json"))  # outside couch_reconciler/schemas/: a full path

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        for manifest in manifests:
            yield from undeclared_database(manifest, ("spec", "database"), manifest.spec["database"], every)

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        yield Desired(GREETING, f"{manifest.spec['database']}/{manifest.name}",
                      body={"text": manifest.spec["text"], MARKER: MARKER_VALUE},
                      source=manifest.where("metadata", "name"))


class GreetingResource(ResourceKind):
    name = GREETING
    order = 35  # after the database it lives in

    def parent(self, key: str) -> tuple[str, str]:
        return (DATABASE, key.partition("/")[0])

    def observe(self, session: CouchSession, wanted: Sequence[Desired], prune: bool = False
                ) -> Mapping[str, Observed]:
        # A toy reads one document per request, over the session's pool; a real kind reads in bulk.
        docs = session.map(lambda desired: _read(session, desired.key), wanted)
        return {desired.key: Observed(GREETING, desired.key, {"text": doc.get("text"), MARKER: doc.get(MARKER)},
                                      doc["_rev"], managed=is_marked(doc))
                for desired, doc in zip(wanted, docs) if doc is not None}

    def diff(self, wanted: Desired | None, live: Observed | None) -> Change | None:
        if wanted is None:
            return self.prune(live)
        if live is None:
            return Create(GREETING, wanted.key, wanted.source, after=dict(wanted.body),
                          fields=field_changes({}, wanted.body))
        fields = field_changes(live.body, wanted.body)
        if not fields:
            return None
        return Update(GREETING, wanted.key, wanted.source, before=dict(live.body), after=dict(wanted.body),
                      fields=fields, version=live.version)

    def apply(self, session: CouchSession, changes: Sequence[Change],
              secrets: Mapping[str, Mapping[str, SecretRef]]) -> None:
        for change in changes:
            body = {**(change.after or {}), **({"_rev": change.version} if change.version else {})}
            session.put(_path(change.key), body, what=f"{GREETING}/{change.key}")


def _path(key: str) -> str:
    database, _, name = key.partition("/")
    return db_path(database, f"greeting:{name}")


def _read(session: CouchSession, key: str) -> dict | None:
    response = session.request("GET", _path(key), ok=(404,), what=f"reading {GREETING}/{key}")
    return None if response.status_code == 404 else response.json()


MANIFEST = GreetingManifest()
RESOURCE = GreetingResource()
