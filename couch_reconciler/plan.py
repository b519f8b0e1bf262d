"""Stage 6, plan: order the changes and apply the safety rules.

Safety rules, checked before anything is shown as a plan that `apply` could run:
- a Delete or Replace that destroys documents needs `allow_delete_data`;
- a Replace deletes the live object first, so it needs `allow_delete` like a Delete
  (deletions of unlisted objects are not even looked for without it);
- like octoDNS, a plan that would update (or delete) more than a share of the
  existing objects of a kind is refused unless forced, once the kind has at least
  `min_existing` objects (tiny deployments are never blocked). Growth is not churn: an
  update that only adds items to lists (a role granted to every user by a template, a
  name added to a security group) keeps everything the object held, so it does not count;
  one that rewrites or removes any value does.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from typing import Callable, Collection, Mapping, Sequence

from .errors import ReconcileError
from .kinds.base import ResourceKind
from .kinds.checks import closest
from .model import Change, Delete, Plan, Replace, Update


class PlanRefused(ReconcileError):
    """The plan breaks a safety rule; one line per problem, and the plan refused (shown before the refusal, as
    octoDNS does: a reviewer sees what the manifests would have done)."""

    def __init__(self, lines: Sequence[str], plan: Plan | None = None):
        super().__init__("\n".join(lines))
        self.lines = list(lines)
        self.plan = plan


@dataclass(frozen=True)
class Policy:
    allow_delete: bool = False  # look for managed objects the manifests no longer list, and delete them
    allow_delete_data: bool = False  # also delete (or replace) databases that hold documents
    force: bool = False  # skip the share thresholds
    max_update_share: float = 0.3  # octoDNS's MAX_SAFE_UPDATE_PCENT
    max_delete_share: float = 0.3  # octoDNS's MAX_SAFE_DELETE_PCENT
    min_existing: int = 10  # octoDNS's MIN_EXISTING_RECORDS: below this many objects of a kind, no threshold


def checked_plan(server: str, changes: Sequence[Change], warnings: Sequence[str], existing: Mapping[str, int],
                 policy: Policy, kinds: Mapping[str, ResourceKind],
                 origins: Mapping[tuple[str, str], frozenset[str]] | None = None) -> Plan:
    """The changes in apply order, checked: PlanRefused when a safety rule says no."""
    result = Plan(server, order(changes, kinds), list(warnings), dict(existing), origins=dict(origins or {}))
    check_safety(result, policy)
    return result


def order(changes: Sequence[Change], kinds: Mapping[str, ResourceKind]) -> list[Change]:
    """Creations and updates by kind order (a database before its security object); deletions after
    them, in reverse kind order (what lives in a database goes before the database)."""
    def rank(change: Change) -> tuple[int, int, str, str]:
        position = kinds[change.kind].order
        if isinstance(change, Delete):
            return (1, -position, change.kind, change.key)
        return (0, position, change.kind, change.key)
    return sorted(changes, key=rank)


def check_safety(plan: Plan, policy: Policy) -> None:
    problems = []
    for change in plan.changes:
        where = f"{change.source}: " if change.source else ""
        subject = f"{change.kind}/{change.key}"
        if isinstance(change, Replace) and not policy.allow_delete:
            why = "; ".join(change.notes) or "it cannot be changed in place"
            problems.append(f"{where}{subject}: must be deleted and created again ({why}); rerun with "
                            "--allow-delete" + (" --allow-delete-data" if change.destroys else "")
                            + " to replace it, or revert the manifest")
        elif change.destroys and not policy.allow_delete_data:
            verb = "replacing" if isinstance(change, Replace) else "deleting"
            problems.append(f"{where}{subject}: {verb} it destroys {change.destroys}; rerun with "
                            "--allow-delete-data if that is intended, or add it back to the manifests")
    if not policy.force:
        problems.extend(_threshold_problems(plan, policy))
    if problems:
        raise PlanRefused(problems, plan)


def _threshold_problems(plan: Plan, policy: Policy) -> list[str]:
    problems = []
    for kind, existing in sorted(plan.existing.items()):
        if existing == 0 or existing < policy.min_existing:  # nothing live to protect (--min-existing 0 too)
            continue
        changes = [change for change in plan.changes if change.kind == kind]
        updates = sum(isinstance(change, Replace) or (isinstance(change, Update) and not _grows(change))
                      for change in changes)
        deletes = sum(isinstance(change, (Delete, Replace)) for change in changes)
        for verb, count, share, option in (("update", updates, policy.max_update_share, "--max-update-share"),
                                          ("delete", deletes, policy.max_delete_share, "--max-delete-share")):
            if count / existing > share:
                problems.append(f"refusing to {verb} {count} of {existing} existing {kind} objects "
                                f"({count / existing:.0%} > {share:.0%}); check the manifests, then rerun with "
                                f"--force or a higher {option}")
    return problems


def targeted(plan: Plan, targets: Sequence[str], kinds: Mapping[str, ResourceKind], manifest_kinds: Collection[str],
             excludes: Sequence[str] = ()) -> Plan:
    """The plan narrowed as Terraform's `-target` and `-exclude` narrow one: only the changes `targets` name
    (all when none), less those `excludes` name, with the changes of their parents (a security object's
    database) that the plan also holds. A selector is `KIND` or `KIND/NAME` (NAME with `*` wildcards): a
    resource kind as the plan writes it (`user/alice`), or a manifest as YAML names it
    (`UserDatabases/per-user`: every change it wants, for a template what it makes for its users). An
    exclusion by manifest leaves out only the changes no other manifest wants. The plan says what it left out."""
    selectors = [(option, selector, _selector(option, selector, kinds, manifest_kinds))
                 for option, given in (("--target", targets), ("--exclude", excludes)) for selector in given]
    by_address = {(change.kind, change.key): change for change in plan.changes}
    matched: dict[str, set[tuple[str, str]]] = {"--target": set(), "--exclude": set()}
    unmatched = []
    for option, selector, match in selectors:
        found = {address for address in by_address if match(address, plan.origins.get(address, frozenset()),
                                                            option == "--exclude")}
        if not found:
            unmatched.append(f"{option} {selector}")
        matched[option] |= found
    kept = (matched["--target"] if targets else set(by_address)) - matched["--exclude"]
    chosen: set[tuple[str, str]] = set()
    for address in kept:
        while address in by_address and address not in chosen:
            chosen.add(address)
            parent = kinds[address[0]].parent(address[1])
            if parent is None:
                break
            address = parent
    left_out = len(plan.changes) - len(chosen)
    options = " and ".join(option for option, given in (("--target", targets), ("--exclude", excludes)) if given)
    warnings = [f"{options}: a partial plan: {left_out} of {len(plan.changes)} changes are left out (not shown, "
                "not saved, not applied), so the server will still differ from the manifests; run a full plan "
                "once the exceptional situation is over"]
    warnings += [f"{selector} matches no change in this plan" for selector in unmatched]
    return replace(plan, changes=[change for change in plan.changes if (change.kind, change.key) in chosen],
                   warnings=list(plan.warnings) + warnings)


Match = Callable[[tuple[str, str], frozenset[str], bool], bool]


def _selector(option: str, selector: str, kinds: Mapping[str, ResourceKind], manifest_kinds: Collection[str]) -> Match:
    """Whether a change (its address, the manifests that want it, whether it is being excluded) is selected."""
    kind, slash, pattern = selector.partition("/")

    def named(name: str) -> bool:
        return not slash or fnmatch.fnmatchcase(name, pattern)

    if kind.lower() in kinds:
        return lambda address, origins, excluding: address[0] == kind.lower() and named(address[1])
    manifest = next((name for name in manifest_kinds if name.lower() == kind.lower()), None)
    if manifest is None:
        raise ReconcileError(f"{option} {selector}: unknown kind `{kind}`; "
                             f"{closest(kind, [*kinds, *manifest_kinds], 'the kinds are')}")

    def wanted_by(subject: str) -> bool:
        origin_kind, _, name = subject.partition("/")
        return origin_kind == manifest and named(name)

    # Excluding a manifest's changes leaves those another manifest wants too (a user's own manifest beside
    # the role a template grants her): they are not only that manifest's.
    return lambda address, origins, excluding: bool(origins) and (
        all(map(wanted_by, origins)) if excluding else any(map(wanted_by, origins)))


def _grows(change: Update) -> bool:
    """Every field of the update is a list that keeps all it held and gains items (no value rewritten)."""
    def only_adds(before: object, after: object) -> bool:
        return isinstance(after, list) and (before is None or isinstance(before, list)) \
            and all(item in after for item in before or [])

    return bool(change.fields) and all(not field.sensitive and only_adds(field.before, field.after)
                                       for field in change.fields)
