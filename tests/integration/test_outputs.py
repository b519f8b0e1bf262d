"""What plan, apply and validate print for tools and for long plans: `--format json` of apply (per change)
and of validate (diagnostics), `--compact`, and `--no-color` on a terminal."""

from __future__ import annotations

import json

import pytest

from reconcile_runner import reconcile, write
from test_plan_apply import databases


def test_apply_json_says_what_was_applied_per_change(couch, unique, tmp_path):
    name = unique("j")
    write(tmp_path / "m", "dbs.yaml", databases([name]))
    run = reconcile(couch, "apply", str(tmp_path / "m"), "--auto-approve", "--format", "json")
    assert run.code == 0, run.stderr
    document = json.loads(run.stdout)
    assert document["format"] == "couch-reconciler/apply" and document["complete"] is True
    assert document["summary"] == {"applied": 2, "uncertain": 0, "not_applied": 0}
    assert [(c["action"], c["kind"], c["key"], c["outcome"]) for c in document["changes"]] == [
        ("create", "database", name, "applied"), ("create", "security", name, "applied")]
    assert document["changes"][0]["source"].startswith(str(tmp_path / "m" / "dbs.yaml:"))

    nothing = reconcile(couch, "apply", str(tmp_path / "m"), "--auto-approve", "--format", "json")
    assert json.loads(nothing.stdout)["changes"] == []


def test_apply_json_of_a_saved_plan_and_of_a_failed_apply(couch, unique, tmp_path):
    if couch.real:
        pytest.skip("injects a 503 answer with couchsim's fault injector")
    first, second = unique("a"), unique("b")
    write(tmp_path / "m", "dbs.yaml", databases([first, second]))
    assert reconcile(couch, "plan", str(tmp_path / "m"), "--out", str(tmp_path / "plan.json")).code == 0
    fault = couch.sim.faults.inject(path=f"^/{second}/_security", method="PUT", status=503)
    run = reconcile(couch, "apply", str(tmp_path / "plan.json"), "--format", "json")
    fault.remove()
    assert run.code == 1 and len(run.stderr.splitlines()) == 1
    document = json.loads(run.stdout)
    assert document["complete"] is False and "HTTP 503" in document["error"]
    outcomes = {(c["kind"], c["key"]): c["outcome"] for c in document["changes"]}
    assert len(outcomes) == sum(document["summary"].values()) == 4
    assert outcomes[("security", second)] in ("uncertain", "not_applied")


def test_apply_json_of_a_folder_needs_auto_approve(couch, unique, tmp_path):
    write(tmp_path, "dbs.yaml", databases([unique("a")]))
    run = reconcile(couch, "apply", str(tmp_path), "--format", "json")
    assert run.code == 2 and run.sent == []
    assert "--format json shows no plan to confirm: add --auto-approve" in run.stderr


def test_validate_json_lists_every_diagnostic(tmp_path):
    class Nowhere:
        url, admin = "http://127.0.0.1:9", ("admin", "unused")

    write(tmp_path, "dbs.yaml", """
        apiVersion: reconciler/v1
        kind: Database
        metadata: {name: Orders}
        spec: {colour: blue}
        """)
    run = reconcile(Nowhere, "validate", str(tmp_path), "--format", "json")
    assert run.code == 1 and run.sent == [] and run.stderr == ""
    document = json.loads(run.stdout)
    assert (document["format"], document["valid"], document["manifests"]) == ("couch-reconciler/diagnostics", False, 1)
    assert (str(tmp_path / "dbs.yaml"), 4, "error") in {(d["file"], d["line"], d["severity"])
                                                         for d in document["diagnostics"]}
    assert all(d["message"] and d["hint"] for d in document["diagnostics"])

    write(tmp_path, "dbs.yaml", "apiVersion: reconciler/v1\nkind: Database\nmetadata: {name: orders}\nspec: {}\n")
    valid = reconcile(Nowhere, "validate", str(tmp_path), "--format", "json")
    assert valid.code == 0 and json.loads(valid.stdout)["diagnostics"] == []


def test_compact_plan_counts_every_kind_and_lists_the_first_changes(couch, unique, tmp_path):
    names = sorted(unique(f"c{i}") for i in range(12))
    write(tmp_path, "dbs.yaml", databases(names))
    run = reconcile(couch, "plan", str(tmp_path), "--compact")
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[1:4] == ["Plan: 24 to add, 0 to change, 0 to destroy.", "  database: 12 to create",
                          "  security: 12 to create"]
    assert sum(1 for line in lines if line.startswith("  + database/")) == 10
    assert "    ... and 2 more database changes (all of them: without --compact, or in the JSON plan)" in lines


@pytest.mark.parametrize("flag, coloured", [((), True), (("--no-color",), False)])
def test_no_color_on_a_terminal(couch, unique, tmp_path, monkeypatch, flag, coloured):
    import couch_reconciler.cli

    monkeypatch.setattr(couch_reconciler.cli_output, "terminal", lambda stream: stream is couch_reconciler.cli.sys.stdout)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich sees no terminal behind CliRunner: it is told there is one
    write(tmp_path, "dbs.yaml", databases([unique("n")]))
    run = reconcile(couch, "plan", str(tmp_path), *flag)
    assert run.code == 0, run.stderr
    assert ("\x1b[" in run.stdout) is coloured
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in run.stdout
