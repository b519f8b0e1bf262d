"""The stages composed, as the commands run them (docs/architecture.md): each stage module knows only the
core, and this module is where one stage's output becomes the next one's input.

- `load_and_validate`: load -> validate, offline (`reconcile validate`);
- `desired_state`: load -> validate -> expand, offline, refusing what validate refuses (`plan`, `apply`,
  `status`, `watch` at every full reconcile);
- `make_plan`: resolve -> observe -> diff -> plan, inside one observation scope.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from .client import CouchSession
from .collector import paused, sparing_what_lives
from .diff import diff_all
from .errors import ReconcileError
from .expand import expand
from .kinds.base import ResourceKind
from .load import ManifestError, load
from .model import Delete, Desired, DesiredState, Diagnostic, Manifest, Observed, Plan
from .observe import observe
from .plan import Policy, checked_plan
from .reads import observation
from .resolve import resolve
from .secrets import SecretPolicy
from .validate import validate


def load_and_validate(path: str, secrets: SecretPolicy = SecretPolicy()) -> tuple[list[Manifest], list[Diagnostic]]:
    """Everything `reconcile validate` checks; plan and apply use it too, so they refuse what validate refuses
    (and, with `secrets.read`, every secret they cannot read)."""
    # Loading makes some 150 small objects per document, all kept alive until expand is done: a collection
    # walking them again was a third of the CPU of loading 10,000 documents (bench/plan_bench.py).
    with paused():
        loaded = load(path)
        diagnostics = [_from_load_error(error) for error in loaded.errors] + validate(loaded.manifests, secrets)
    # A link inside a design-document folder is seen by load's walk and by the design document: one line.
    said = {(d.source, d.message) for d in diagnostics if d.subject}
    diagnostics = [d for d in diagnostics if d.subject or (d.source, d.message) not in said]
    return loaded.manifests, sorted(diagnostics, key=lambda diagnostic: diagnostic.position)


def _from_load_error(error: ManifestError) -> Diagnostic:
    return Diagnostic(error.source, error.subject, error.message, error.hint)


class InvalidManifests(ReconcileError):
    """Manifests `reconcile validate` refuses, or that want one object twice: nothing may be sent about them."""

    def __init__(self, message: str, diagnostics: Sequence[Diagnostic]):
        super().__init__(message)
        self.diagnostics = list(diagnostics)


def desired_state(path: str, secrets: SecretPolicy = SecretPolicy(read=True)) -> tuple[DesiredState, list[Diagnostic]]:
    """What the manifests at `path` want, and validate's warnings; InvalidManifests, holding every diagnostic
    (warnings too, in reading order), when one is an error or two manifests conflict. By default every secret
    the manifests name is read (they are about to be used): one that cannot be read is an error too."""
    manifests, diagnostics = load_and_validate(path, secrets)
    errors = sum(1 for diagnostic in diagnostics if diagnostic.is_error)
    if errors:
        raise InvalidManifests(f"{errors} error{'s' if errors != 1 else ''}", diagnostics)
    with paused():
        state = expand(manifests)
    if state.diagnostics:
        raise InvalidManifests(f"{len(state.diagnostics)} conflicting manifest(s)", diagnostics + state.diagnostics)
    return state, diagnostics


def make_plan(session: CouchSession, state: DesiredState, policy: Policy, kinds: Mapping[str, ResourceKind]) -> Plan:
    """Observe the server, diff, order and check a plan; PlanRefused when a safety rule says no.

    Templates (UserDatabases) are resolved first, from the same reads the kinds observe with. The desired state
    is spared the collections that the reads' garbage starts, and diffing, which builds what the plan keeps,
    starts none (collector.py)."""
    with sparing_what_lives():
        with observation(session):
            state, template_warnings = resolve(session, state, prune=policy.allow_delete, kinds=kinds)
            grouped = state.by_kind()
            wanted = {name: objects for name, objects in grouped.items() if name in kinds}
            warnings = [f"{len(objects)} {name} object(s) in the manifests are not planned: this version cannot "
                        f"apply that kind yet" for name, objects in sorted(grouped.items()) if name not in kinds]
            warnings += template_warnings
            live = observe(session, wanted, kinds, prune=policy.allow_delete,
                           prune_kinds={name for name in state.prune_kinds | set(state.prune_prefixes) if name in kinds})
        with paused():
            return _planned(session, state, policy, kinds, wanted, live, warnings)


def _planned(session: CouchSession, state: DesiredState, policy: Policy, kinds: Mapping[str, ResourceKind],
             wanted: Mapping[str, Mapping[str, Desired]], live: Mapping[str, Mapping[str, Observed]],
             warnings: list[str]) -> Plan:
    changes, kind_warnings = diff_all(wanted, live, kinds)
    if not policy.allow_delete:
        # A kind observed for a template's pruning shows every managed object nothing wants; only the
        # template's own may go without --allow-delete.
        changes = [change for change in changes
                   if not (isinstance(change, Delete) and change.desired is None)
                   or state.prunes(change.kind, change.key)]
    existing = {name: len(objects) for name, objects in live.items()}
    origins = {(change.kind, change.key): state.origins.get((change.kind, change.key), frozenset())
               for change in changes}
    return checked_plan(session.base, changes, warnings + kind_warnings, existing, policy, kinds, origins)
