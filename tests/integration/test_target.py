"""`--target KIND[/NAME]`: a plan (and an apply) narrowed to some objects, as Terraform's `-target`, with the
changes of their parents, and a warning that the plan is partial."""

from __future__ import annotations

import json

from reconcile_runner import reconcile, write
from test_plan_apply import databases


def planned(run) -> list[tuple[str, str]]:
    return [(c["kind"], c["key"]) for c in json.loads(run.stdout)["changes"]]


def test_a_target_and_its_parent_only_and_the_plan_says_it_is_partial(couch, unique, tmp_path):
    first, second = unique("a"), unique("b")
    write(tmp_path, "dbs.yaml", databases([first, second]))
    run = reconcile(couch, "plan", str(tmp_path), "--format", "json", "--target", f"security/{first}")
    assert run.code == 0, run.stderr
    assert planned(run) == [("database", first), ("security", first)]  # its database is created first
    assert json.loads(run.stdout)["warnings"][-1].startswith("--target: a partial plan: 2 of 4 changes are left out")

    wildcard = reconcile(couch, "plan", str(tmp_path), "--format", "json", "--target", "database/t-a-*")
    assert planned(wildcard) == [("database", first)]
    kind = reconcile(couch, "plan", str(tmp_path), "--format", "json", "--target", "Database", "--target", "user")
    assert planned(kind) == [("database", first), ("database", second)]
    assert "--target user matches no change in this plan" in json.loads(kind.stdout)["warnings"]


def test_apply_with_a_target_changes_only_that_and_a_full_plan_shows_the_rest(couch, unique, tmp_path):
    first, second = unique("a"), unique("b")
    write(tmp_path, "dbs.yaml", databases([first, second]))
    applied = reconcile(couch, "apply", str(tmp_path), "--auto-approve", "--target", f"database/{second}")
    assert applied.code == 0, applied.stderr
    assert applied.stdout.splitlines()[-1] == "Apply complete: 1 added, 0 changed, 0 destroyed."
    assert "Warning: --target: a partial plan: 3 of 4 changes are left out" in applied.stdout
    rest = reconcile(couch, "plan", str(tmp_path), "--format", "json")
    assert planned(rest) == [("database", first), ("security", first), ("security", second)]


def test_an_unknown_kind_is_one_line_and_a_saved_plan_takes_no_target(couch, unique, tmp_path):
    write(tmp_path / "m", "dbs.yaml", databases([unique("a")]))
    run = reconcile(couch, "plan", str(tmp_path / "m"), "--target", "databse/orders")
    assert run.code == 1 and run.stderr.startswith("--target databse/orders: unknown kind `databse`; ")
    assert "database" in run.stderr and len(run.stderr.splitlines()) == 1
    assert reconcile(couch, "plan", str(tmp_path / "m"), "--out", str(tmp_path / "plan.json")).code == 0
    saved = reconcile(couch, "apply", str(tmp_path / "plan.json"), "--target", "database")
    assert saved.code == 2 and "a saved plan is applied whole" in saved.stderr
