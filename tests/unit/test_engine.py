"""The plan/apply engine on in-memory kinds: ordering, safety rules, stale saved plans, merges.

The kinds here keep their "server" in a dict, so these tests pin the engine's
rules without a server; tests/integration/ runs the real kinds.
"""

from __future__ import annotations

import gc
import threading
import weakref
from dataclasses import dataclass, field

import pytest

from couch_reconciler.apply import ApplyFailed, StalePlan, check_fresh, execute
from couch_reconciler.errors import ReconcileError
from couch_reconciler.kinds.base import ResourceKind
from couch_reconciler.kinds.fields import field_changes
from couch_reconciler.model import Create, Delete, Desired, DesiredState, FieldChange, Observed, Plan, Replace, Source, Update
from couch_reconciler.pipeline import make_plan
from couch_reconciler.plan import PlanRefused, Policy, check_safety, order
from couch_reconciler.reads import SessionReads


@dataclass
class FakeServer:
    base: str = "http://couch.test:5984"
    objects: dict = field(default_factory=dict)  # (kind, key) -> (body, version, managed)
    writes: list = field(default_factory=list)
    reads: SessionReads = field(default_factory=SessionReads)  # make_plan's observation lives here


class FakeKind(ResourceKind):
    """A kind whose live objects live in FakeServer.objects; `fixed` fields force a Replace."""

    def __init__(self, name: str, order: int, fixed: tuple[str, ...] = (), parent: str | None = None):
        self.name, self.order, self.fixed, self.parent_kind = name, order, fixed, parent

    def parent(self, key):
        return (self.parent_kind, key) if self.parent_kind else None

    def observe(self, server, wanted, prune=False):
        keys = {d.key for d in wanted}
        return {key: Observed(self.name, key, body, version, managed)
                for (kind, key), (body, version, managed) in server.objects.items()
                if kind == self.name and (key in keys or (prune and managed))}

    def reread(self, server, changes):
        keys = {change.key for change in changes}
        return {key: Observed(self.name, key, body, version, managed)
                for (kind, key), (body, version, managed) in server.objects.items()
                if kind == self.name and key in keys}

    def diff(self, wanted, live):
        if wanted is None:
            return Delete(self.name, live.key, None, before=live.body, version=live.version) if live.managed else None
        if live is None:
            return Create(self.name, wanted.key, wanted.source, after=dict(wanted.body))
        fields = field_changes(live.body, wanted.body)
        if not fields:
            return None
        cls = Replace if any(f.path in self.fixed for f in fields) else Update
        return cls(self.name, wanted.key, wanted.source, before=live.body, after=dict(wanted.body), fields=fields,
                   version=live.version)

    def apply(self, server, changes, secrets):
        for change in changes:
            server.writes.append((change.action, change.kind, change.key))
            if isinstance(change, Delete):
                del server.objects[(self.name, change.key)]
            else:
                server.objects[(self.name, change.key)] = (change.after, "v-new", True)


KINDS = {"database": FakeKind("database", 10, fixed=("partitioned",)),
         "security": FakeKind("security", 20, parent="database"),
         "user": FakeKind("user", 40)}


def wanted(*objects: Desired) -> DesiredState:
    return DesiredState({(d.kind, d.key): d for d in objects})


def db(name: str, partitioned: bool = False, line: int = 1) -> Desired:
    return Desired("database", name, {"partitioned": partitioned}, Source("dbs.yaml", line))


def sec(name: str, roles: list[str]) -> Desired:
    return Desired("security", name, {"members": {"roles": roles}}, Source("dbs.yaml", 2))


def test_creations_follow_kind_order_and_deletions_come_last_in_reverse():
    server = FakeServer(objects={("database", "old"): ({"partitioned": False}, "1", True),
                                 ("user", "gone"): ({"roles": []}, "1-a", True)})
    plan = make_plan(server, wanted(sec("a", ["app"]), db("a")), Policy(allow_delete=True), KINDS)
    assert [(c.action, c.kind, c.key) for c in plan.changes] == [
        ("create", "database", "a"), ("create", "security", "a"),
        ("delete", "user", "gone"), ("delete", "database", "old")]


def test_unlisted_managed_objects_are_not_even_looked_for_without_allow_delete():
    server = FakeServer(objects={("database", "old"): ({"partitioned": False}, "1", True)})
    plan = make_plan(server, wanted(db("a")), Policy(), KINDS)
    assert [(c.action, c.key) for c in plan.changes] == [("create", "a")]


def test_a_second_plan_after_apply_is_empty():
    server = FakeServer(objects={("database", "a"): ({"partitioned": False}, "1", True)})
    state = wanted(db("a"), db("b"), sec("b", ["x"]))
    execute(server, make_plan(server, state, Policy(), KINDS).changes, KINDS)
    again = make_plan(server, state, Policy(), KINDS)
    assert again.changes == [] and again.summary() == "No changes. The server matches the manifests."


def test_summary_counts_a_replace_as_one_to_add_and_one_to_destroy():
    server = FakeServer(objects={("database", "a"): ({"partitioned": False}, "1", True),
                                 ("security", "a"): ({"members": {"roles": ["x"]}}, "d1", False)})
    plan = make_plan(server, wanted(db("a", partitioned=True), sec("a", ["x"])), Policy(allow_delete=True), KINDS)
    assert plan.summary() == "Plan: 2 to add, 0 to change, 1 to destroy."
    # The security object lives in the replaced database: it must be written again although it matched.
    assert [(c.action, c.kind) for c in plan.changes] == [("replace", "database"), ("create", "security")]
    assert plan.changes[1].version == "d1"  # a saved plan still notices a change to the old object


def test_replace_without_allow_delete_is_refused_with_the_manifest_line():
    server = FakeServer(objects={("database", "a"): ({"partitioned": False}, "1", True)})
    with pytest.raises(PlanRefused) as refused:
        make_plan(server, wanted(db("a", partitioned=True, line=7)), Policy(), KINDS)
    assert refused.value.lines[0].startswith("dbs.yaml:7: database/a: must be deleted and created again")
    assert "--allow-delete" in refused.value.lines[0]


def test_destroying_documents_needs_allow_delete_data():
    plan = Plan("http://x", [Delete("database", "old", None, version="1", destroys="3 documents")])
    with pytest.raises(PlanRefused, match=r"database/old: deleting it destroys 3 documents; rerun with "
                                          r"--allow-delete-data"):
        check_safety(plan, Policy(allow_delete=True))
    check_safety(plan, Policy(allow_delete=True, allow_delete_data=True))


def test_share_threshold_refuses_mass_updates_unless_forced():
    objects = {("security", f"db{i}"): ({"members": {"roles": ["old"]}}, f"d{i}", True) for i in range(10)}
    objects.update({("database", f"db{i}"): ({"partitioned": False}, "1", True) for i in range(10)})
    state = wanted(*[db(f"db{i}") for i in range(10)], *[sec(f"db{i}", ["new"]) for i in range(4)],
                   *[sec(f"db{i}", ["old"]) for i in range(4, 10)])
    with pytest.raises(PlanRefused) as refused:
        make_plan(FakeServer(objects=dict(objects)), state, Policy(), KINDS)
    assert refused.value.lines == ["refusing to update 4 of 10 existing security objects (40% > 30%); check the "
                                   "manifests, then rerun with --force or a higher --max-update-share"]
    assert len(make_plan(FakeServer(objects=dict(objects)), state, Policy(force=True), KINDS).changes) == 4
    assert len(make_plan(FakeServer(objects=dict(objects)), state, Policy(max_update_share=0.5), KINDS).changes) == 4


def test_small_deployments_are_never_blocked_by_shares():
    objects = {("security", f"db{i}"): ({"members": {"roles": ["old"]}}, f"d{i}", True) for i in range(9)}
    state = wanted(*[sec(f"db{i}", ["new"]) for i in range(9)])
    assert len(make_plan(FakeServer(objects=objects), state, Policy(), KINDS).changes) == 9


def test_stale_saved_plan_is_refused_before_any_write():
    server = FakeServer(objects={("database", "a"): ({"partitioned": False}, "1", True),
                                 ("security", "a"): ({"members": {"roles": ["x"]}}, "d1", False)})
    plan = make_plan(server, wanted(db("a"), sec("a", ["y"]), db("b")), Policy(), KINDS)
    check_fresh(server, plan, KINDS)  # nothing changed yet
    server.objects[("security", "a")] = ({"members": {"roles": ["z"]}}, "d2", False)
    server.objects[("database", "b")] = ({"partitioned": False}, "1", False)
    with pytest.raises(StalePlan, match=r"\(database/b \(created meanwhile\), security/a\); nothing was applied"):
        check_fresh(server, plan, KINDS)
    assert server.writes == []


def test_order_follows_each_kinds_order_value():
    changes = [Update("user", "u", None), Create("security", "s", None), Create("database", "d", None)]
    assert [c.kind for c in order(changes, KINDS)] == ["database", "security", "user"]


def test_a_failing_kind_stops_the_apply_with_its_line():
    class Failing(FakeKind):
        def apply(self, server, changes, secrets):
            raise ReconcileError(f"user/{changes[0].key}: HTTP 503; the server failed; rerun when it is healthy")

    kinds = {**KINDS, "user": Failing("user", 40)}
    server = FakeServer()
    plan = make_plan(server, wanted(db("a"), Desired("user", "u", {"roles": []}, Source("u.yaml", 1))), Policy(), kinds)
    with pytest.raises(ReconcileError, match="user/u: HTTP 503"):
        execute(server, plan.changes, kinds)
    assert server.writes == [("create", "database", "a")]  # done in order, up to the failure


def test_plans_and_applies_spare_the_objects_they_hold_from_collections_and_hand_them_back_even_after_a_failure():
    """While a plan or an apply runs, the cycle collector leaves alone what was alive when it started (walking a
    large desired state and plan again slowed applies of 10,000 databases); once it ends, cyclic garbage from
    before is collectable again, so a long-running `reconcile watch` does not grow."""
    class Cycle:
        pass

    def garbage_cycle() -> weakref.ref:
        cycle = Cycle()
        cycle.itself = cycle
        return weakref.ref(cycle)

    seen_during: list[bool] = []

    class Watching(FakeKind):
        def observe(self, server, wanted, prune=False):
            seen_during.append(gc.get_freeze_count() > 0)
            return super().observe(server, wanted, prune)

        def apply(self, server, changes, secrets):
            seen_during.append(gc.get_freeze_count() > 0)
            raise ReconcileError(f"database/{changes[0].key}: HTTP 503; the server failed; rerun when it is healthy")

    kinds = {**KINDS, "database": Watching("database", 10)}
    server = FakeServer()
    before = garbage_cycle()
    plan = make_plan(server, wanted(db("a")), Policy(), kinds)
    with pytest.raises(ApplyFailed):
        execute(server, plan.changes, kinds)
    assert seen_during == [True, True]
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert before() is None


def test_the_next_chunk_is_written_while_one_is_still_under_way_and_a_failure_says_exactly_what_was():
    """A kind's run is written a chunk at a time with the next chunk already under way (no pause while a chunk's
    slowest write finishes): when one chunk fails, the one beside it still finishes, no other starts, and the
    failure names what is on the server, what may be, and what was not sent."""
    second_failed = threading.Event()

    class SlowFirstChunk(FakeKind):
        def apply(self, server, changes, secrets):
            if changes[0].key == "db0100":
                second_failed.set()
                raise ReconcileError("database/db0100: HTTP 500; the server failed; rerun when it is healthy")
            if changes[0].key == "db0000" and not second_failed.wait(timeout=10):
                raise AssertionError("the second chunk did not start while the first was under way")
            super().apply(server, changes, secrets)

    kinds = {**KINDS, "database": SlowFirstChunk("database", 10)}
    server = FakeServer()
    plan = make_plan(server, wanted(*[db(f"db{i:04}") for i in range(500)]), Policy(), kinds)
    heard: list[str] = []
    with pytest.raises(ApplyFailed) as failed:
        execute(server, plan.changes, kinds, lambda chunk: heard.extend(change.key for change in chunk))

    first, second = [f"db{i:04}" for i in range(100)], [f"db{i:04}" for i in range(100, 200)]
    assert [change.key for change in failed.value.applied] == first == heard == [key for _, _, key in server.writes]
    assert [change.key for change in failed.value.uncertain] == second
    assert [change.key for change in failed.value.pending] == [f"db{i:04}" for i in range(200, 500)]
    assert str(failed.value).startswith("database/db0100: HTTP 500")


def test_kinds_reading_different_things_are_observed_at_once_and_kinds_sharing_a_read_in_order():
    """A plan reads `_users` while it reads the databases' security objects, not after; a security object is
    observed once its database is (it reuses that read), and a kind that declares no reads is observed alone."""
    users_started = threading.Event()
    seen: list[str] = []

    class Declaring(FakeKind):
        def __init__(self, name, order, reads, parent=None):
            super().__init__(name, order, parent=parent)
            self.reads = reads

        def observe(self, server, wanted, prune=False):
            if self.name == "database" and not users_started.wait(timeout=10):
                raise AssertionError("the users were not read beside the databases")
            seen.append(self.name)
            if self.name == "user":
                users_started.set()
            return super().observe(server, wanted, prune)

    kinds = {"database": Declaring("database", 10, frozenset({"databases"})),
             "security": Declaring("security", 20, frozenset({"databases"}), parent="database"),
             "user": Declaring("user", 40, frozenset({"user documents"})),
             "plugin": Declaring("plugin", 60, None)}
    server = FakeServer(objects={("user", "u"): ({"roles": []}, "1-a", False)})
    plan = make_plan(server, wanted(db("a"), sec("a", ["x"]), Desired("user", "u", {"roles": ["r"]}, Source("u.yaml", 1)),
                                    Desired("plugin", "p", {}, Source("p.yaml", 1))), Policy(), kinds)

    assert [(c.action, c.kind) for c in plan.changes] == [("create", "database"), ("create", "security"),
                                                          ("update", "user"), ("create", "plugin")]
    assert seen == ["user", "database", "security", "plugin"]


def role_updates(count: int, before: list[str], after: list[str]) -> list[Update]:
    return [Update("user", f"u{i}", None, fields=(FieldChange("roles", before, after),), version="1")
            for i in range(count)]


def test_granting_a_role_to_every_existing_user_is_growth_but_rewriting_a_third_of_them_is_refused():
    """The share threshold guards what the users held: an update that only adds to a list keeps all of it."""
    check_safety(Plan("http://x", role_updates(300, [], ["app-user"]), existing={"user": 300}), Policy())
    check_safety(Plan("http://x", role_updates(300, ["a"], ["a", "app-user"]), existing={"user": 300}), Policy())

    rewriting = Plan("http://x", role_updates(100, ["a"], ["b"]), existing={"user": 300})
    with pytest.raises(PlanRefused) as refused:
        check_safety(rewriting, Policy())

    assert refused.value.lines == ["refusing to update 100 of 300 existing user objects (33% > 30%); check the "
                                   "manifests, then rerun with --force or a higher --max-update-share"]
    assert refused.value.plan is rewriting  # shown before the refusal
    scalar = [Update("user", f"u{i}", None, fields=(FieldChange("email", None, "x@example.com"),), version="1")
              for i in range(100)]
    with pytest.raises(PlanRefused):
        check_safety(Plan("http://x", scalar, existing={"user": 300}), Policy())


def test_a_kind_with_nothing_live_passes_the_thresholds_even_with_min_existing_zero():
    """Creating the first objects of a kind rewrites nothing that exists: no share of zero to refuse."""
    first = Plan("http://x", [Create("database", "a", None)], existing={"database": 0})
    check_safety(first, Policy(min_existing=0))
