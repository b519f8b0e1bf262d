"""Stage 7, apply: make exactly the planned changes, in plan order, kind by kind.

Each run of consecutive changes of one kind goes to that kind's `apply` in
chunks, so a kind can batch (`_bulk_docs`, its pool) and the caller can show
progress between chunks. The chunks of one run overlap (IN_FLIGHT at once), so
the pool never waits for a chunk's slowest write before the next chunk starts;
the next run (another kind, which may live in what this one writes) starts once
this one is written. A saved plan is checked first: every object it touches is
read again, and the plan is refused before any write when one changed since the
plan was made.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from itertools import groupby
from typing import Callable, Mapping, Sequence

from .client import CouchSession
from .collector import sparing_what_lives
from .errors import ReconcileError
from .kinds.base import ResourceKind
from .model import Change, Create, Delete, Plan, Replace
from .reads import observation
from .secrets import SecretUnreadable

CHUNK = 100  # changes per call of a kind's apply: large enough to batch, small enough to show progress
# Chunks of one kind written at once. Each spreads its writes over the session's pool; with a second one queued
# behind it, the pool's threads that finish the first chunk's writes take the next chunk's at once.
IN_FLIGHT = 2


class StalePlan(ReconcileError):
    """A saved plan no longer matches the server."""


def check_secrets(changes: Sequence[Change], after: str) -> None:
    """ReconcileError listing every secret a change would write that cannot be read now, so that apply never
    starts writing without one: a saved plan holds only references, and a secret may vanish while a plan is
    shown. `after` ends the message (what was or was not sent)."""
    problems = []
    for change in changes:
        if change.desired is None or isinstance(change, Delete):
            continue
        for name, ref in sorted(change.desired.secrets.items()):
            try:
                ref.resolve()
            except SecretUnreadable as unreadable:
                problems.append(f"{change.source}: {change.kind}/{change.key}: {name}: {unreadable}")
    if problems:
        raise ReconcileError("\n".join(problems + [f"{len(problems)} secret(s) cannot be read, {after}"]))


def check_fresh(session: CouchSession, plan: Plan, kinds: Mapping[str, ResourceKind]) -> None:
    """StalePlan, naming the objects, when any object the plan touches is not as the plan saw it.

    One observation scope for the whole check, as for a plan: kinds sharing a read (config and server
    admins both read `/_membership` and every node's config) make it once. The writes that follow run
    outside it, so a kind applied later reads what an earlier one wrote."""
    with observation(session):
        stale = _stale(session, plan, kinds)
    if stale:
        shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise StalePlan(f"the server changed since the plan was made ({shown}); nothing was applied: "
                        "run plan again")


def _stale(session: CouchSession, plan: Plan, kinds: Mapping[str, ResourceKind]) -> list[str]:
    stale = []
    for kind, group in groupby(sorted(plan.changes, key=lambda change: change.kind), key=lambda c: c.kind):
        changes = list(group)
        current = kinds[kind].reread(session, changes)
        for change in changes:
            now = current.get(change.key)
            if isinstance(change, Create) and change.version is None:
                if now is not None:
                    stale.append(f"{kind}/{change.key} (created meanwhile)")
            elif now is None:
                stale.append(f"{kind}/{change.key} (deleted meanwhile)")
            elif now.version != change.version:
                stale.append(f"{kind}/{change.key}")
    return stale


class ApplyFailed(ReconcileError):
    """A write failed: which planned changes were applied, which may or may not have been (the batch that
    failed: a kind writes a batch in one `_bulk_docs` or over its pool, so part of it may have happened), and
    which were not sent; each list in plan order. The message is the failure's own line."""

    def __init__(self, cause: ReconcileError, applied: list[Change], uncertain: list[Change], pending: list[Change]):
        super().__init__(str(cause))
        self.cause = cause
        self.applied = applied
        self.uncertain = uncertain
        self.pending = pending


def execute(session: CouchSession, changes: Sequence[Change], kinds: Mapping[str, ResourceKind],
            done: Callable[[Sequence[Change]], None] = lambda chunk: None) -> None:
    """Apply `changes` (already in plan order); `done` hears of each chunk once it is written, in plan order;
    ApplyFailed when a write fails.

    A change its parent's creation makes (kinds/base.py `founding`) is reported done without being sent. The
    plan and all else alive now are spared the collections that the requests' garbage starts (collector.py)."""
    with sparing_what_lives():
        _execute(session, changes, kinds, done)


def _execute(session: CouchSession, changes: Sequence[Change], kinds: Mapping[str, ResourceKind],
             done: Callable[[Sequence[Change]], None]) -> None:
    planned = list(changes)
    folded, founded = _fold_into_parents(planned, kinds)
    applied: set[int] = set()

    def write(kind: ResourceKind, chunk: Sequence[int]) -> None:
        sent = [folded[at] for at in chunk if at not in founded]
        if sent:
            kind.apply(session, sent, {change.key: dict(change.desired.secrets)
                                       for change in sent if change.desired is not None})

    def written(chunk: Sequence[int]) -> None:
        applied.update(chunk)
        done([folded[at] for at in chunk])

    # Writers only wait for their chunk's writes on the session's pool (never a pool thread waiting on the pool).
    with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="apply") as writers:
        for kind, group in groupby(range(len(folded)), key=lambda at: folded[at].kind):
            run = list(group)
            chunks = [run[start:start + CHUNK] for start in range(0, len(run), CHUNK)]
            failed = _write_run(writers, lambda chunk: write(kinds[kind], chunk), chunks, written)
            if failed:
                failing = {at for index in failed for at in chunks[index]}
                error = failed[min(failed)]  # the failure earliest in plan order speaks for the run
                raise _failed(error, planned, applied, failing, founded) from error


def _write_run(writers: ThreadPoolExecutor, write: Callable[[Sequence[int]], None], chunks: Sequence[Sequence[int]],
               written: Callable[[Sequence[int]], None]) -> dict[int, ReconcileError]:
    """Write the chunks of one run, IN_FLIGHT at once; `written` hears of each written chunk in plan order.
    After a failure no chunk is started, those already started finish (each then written or failed), and
    the failures come back by chunk index: what was written is known exactly, what failed may be in part."""
    pending = list(range(len(chunks)))
    pending.reverse()  # popped from the end: in plan order
    in_flight: dict[Future[None], int] = {}
    finished: set[int] = set()
    failed: dict[int, ReconcileError] = {}
    reported = 0
    while pending or in_flight:
        while pending and not failed and len(in_flight) < IN_FLIGHT:
            index = pending.pop()
            in_flight[writers.submit(write, chunks[index])] = index
        if not in_flight:
            break
        completed, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        for future in completed:
            index = in_flight.pop(future)
            error = future.exception()
            if error is None:
                finished.add(index)
            elif isinstance(error, ReconcileError):
                failed[index] = error
            else:
                raise error
        while reported in finished:
            written(chunks[reported])
            reported += 1
    for index in sorted(finished):  # written after an earlier chunk failed: on the server all the same
        if index >= reported:
            written(chunks[index])
    return failed


def _failed(error: ReconcileError, planned: list[Change], applied: set[int], failing: set[int],
            founded: Mapping[int, int]) -> ApplyFailed:
    """What `execute` knows when a write fails: a change made by its parent's creation shares its parent's fate."""
    def fate(at: int) -> str:
        parent = founded.get(at, at)
        if at in applied or parent in applied:
            return "applied"
        return "uncertain" if at in failing or parent in failing else "pending"

    fates = [fate(at) for at in range(len(planned))]
    applied_, uncertain, pending = ([change for change, f in zip(planned, fates) if f == wanted]
                                    for wanted in ("applied", "uncertain", "pending"))
    return ApplyFailed(error, applied_, uncertain, pending)


def _fold_into_parents(changes: Sequence[Change], kinds: Mapping[str, ResourceKind]
                       ) -> tuple[list[Change], dict[int, int]]:
    """The changes with each created (or replaced) parent carrying, in its `after`, the parts its creation
    writes for children created with it, and the ids of those children: the parent kind writes them in
    the same request (a database created with its `_security`), so they cost no read and no second write.
    Only a parent created earlier in this same list qualifies: had its creation failed, apply stopped.
    The ids are positions in `changes`, each child's mapped to its parent's."""
    created = {(change.kind, change.key): at for at, change in enumerate(changes)
               if isinstance(change, (Create, Replace))}
    result, founded = list(changes), {}
    for at, change in enumerate(changes):
        kind = kinds[change.kind]
        parent = kind.parent(change.key)
        parent_at = created.get(parent) if parent is not None else None
        if parent_at is None or parent_at > at:
            continue
        part = kind.founding(change)
        if part is None:
            continue
        name, body = part
        result[parent_at] = replace(result[parent_at], after={**(result[parent_at].after or {}), name: body})
        founded[at] = parent_at
    return result, founded
