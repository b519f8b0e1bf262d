"""Plan files and plan rendering: what a reviewer and a pipeline read (docs/plan-format.md)."""

from __future__ import annotations

import json

import pytest

from couch_reconciler import render
from couch_reconciler.errors import ReconcileError
from couch_reconciler.model import Create, Delete, Desired, FieldChange, Plan, Replace, Source, Update
from couch_reconciler.planfile import is_plan_file, load, save, to_document
from couch_reconciler.secrets import SecretRef

SECRET = "s3cret-value-never-shown"


def sample_plan(tmp_path, monkeypatch) -> Plan:
    monkeypatch.setenv("ALICE_PASSWORD", SECRET)
    alice = Desired("user", "alice", {"roles": ["app"]}, Source("users.yaml", 3),
                    secrets={"password": SecretRef("env:ALICE_PASSWORD", str(tmp_path))})
    return Plan("http://couch.test:5984", [
        Create("database", "orders", Source("dbs.yaml", 2), after={"partitioned": False},
               fields=(FieldChange("partitioned", None, False),),
               desired=Desired("database", "orders", {"partitioned": False}, Source("dbs.yaml", 2), options={"q": 2})),
        Update("security", "orders", Source("dbs.yaml", 5), before={}, after={},
               fields=(FieldChange("members.roles", ["_admin"], ["_admin", "app"]),), version="sha256:ab"),
        Update("user", "alice", Source("users.yaml", 3), fields=(FieldChange("password", None, None, sensitive=True),),
               version="3-x", desired=alice),
        Replace("database", "events", Source("dbs.yaml", 9), fields=(FieldChange("partitioned", False, True),),
                version="12-g1", destroys="12 documents", notes=("`partitioned` is fixed when a database is created",)),
        Delete("database", "old", None, version="4-g1", notes=("no manifest lists it",)),
    ], warnings=["database/orders: q is 8 on the server"], existing={"database": 3})


def test_plan_file_round_trips_and_holds_references_not_secrets(tmp_path, monkeypatch):
    plan = sample_plan(tmp_path, monkeypatch)
    path = tmp_path / "plan.json"
    save(plan, str(path))
    text = path.read_text()
    assert SECRET not in text and "env:ALICE_PASSWORD" in text
    assert is_plan_file(str(path))
    again = load(str(path))
    assert again.changes == plan.changes and again.server == plan.server and again.warnings == plan.warnings
    assert again.changes[2].desired.secrets["password"].resolve() == SECRET  # apply reads it again


def test_json_document_has_the_documented_top_level_shape(tmp_path, monkeypatch):
    document = json.loads(render.json_document(sample_plan(tmp_path, monkeypatch)))
    assert list(document) == ["format", "format_version", "created_at", "server", "summary", "warnings",
                              "existing", "roots", "changes"]
    assert document["summary"] == {"add": 2, "change": 2, "destroy": 2,
                                   "text": "Plan: 2 to add, 2 to change, 2 to destroy."}
    password = document["changes"][2]["fields"][0]
    assert password == {"path": "password", "sensitive": True}  # no before/after keys at all


def test_text_rendering_is_terraform_like(tmp_path, monkeypatch):
    out = render.text(sample_plan(tmp_path, monkeypatch)).plain
    assert out.splitlines() == [
        "Warning: database/orders: q is 8 on the server",
        "",
        "couch-reconciler will make these changes on http://couch.test:5984:",
        "Plan: 2 to add, 2 to change, 2 to destroy.",
        "  database: 1 to create, 1 to delete, 1 to replace",
        "  security: 1 to update",
        "  user: 1 to update",
        "",
        "  + database/orders  (dbs.yaml:2)",
        "      partitioned: false",
        "  ~ security/orders  (dbs.yaml:5)",
        '      members.roles: ["_admin"] -> ["_admin", "app"]',
        "  ~ user/alice  (users.yaml:3)",
        "      password: (sensitive, will change)",
        "-/+ database/events  (dbs.yaml:9)",
        "      partitioned: false -> true   # forces replacement",
        "      destroys: 12 documents",
        "      # `partitioned` is fixed when a database is created",
        "  - database/old",
        "      # no manifest lists it",
        "",
        "Plan: 2 to add, 2 to change, 2 to destroy.",
        "",
        "Warning: database/orders: q is 8 on the server",  # again: a long plan scrolls the first one away
    ]


def test_compact_text_lists_the_first_changes_of_each_kind_after_the_counts():
    changes = [Create("user", f"user-{n:03}", Source("users.yaml", n + 1)) for n in range(25)]
    changes.append(Create("database", "orders", Source("dbs.yaml", 1)))
    out = render.text(Plan("http://x", changes, ["max_jobs is 500"]), compact=True).plain.splitlines()
    assert out[:7] == ["Warning: max_jobs is 500", "", "couch-reconciler will make these changes on http://x:",
                       "Plan: 26 to add, 0 to change, 0 to destroy.", "  user: 25 to create", "  database: 1 to create",
                       ""]
    listed = [line.split()[1] for line in out if line.startswith("  + ")]
    assert listed == [f"user/user-{n:03}" for n in range(render.COMPACT_SHOWN)] + ["database/orders"]
    assert f"    ... and {25 - render.COMPACT_SHOWN} more user changes (all of them: without --compact, or in the " \
           "JSON plan)" in out
    assert out[-3:] == ["Plan: 26 to add, 0 to change, 0 to destroy.", "", "Warning: max_jobs is 500"]


def test_no_changes_says_so():
    assert render.text(Plan("http://x", [])).plain == "No changes. The server matches the manifests.\n"


def test_markdown_is_a_table_per_kind_with_one_row_per_change(tmp_path, monkeypatch):
    out = render.markdown(sample_plan(tmp_path, monkeypatch))
    assert "**Plan: 2 to add, 2 to change, 2 to destroy.**" in out
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert [row.split(" | ")[1] for row in rows] == ["`database/orders`", "`database/events`", "`database/old`",
                                                      "`security/orders`", "`user/alice`"]
    assert "<details open><summary><b>database</b>: 1 to create, 1 to delete, 1 to replace</summary>" in out
    assert rows[1] == ("| `-/+` | `database/events` | `` partitioned: false -> true   # forces replacement ``<br>"
                       "`` destroys: 12 documents ``<br>`` # `partitioned` is fixed when a database is created `` | "
                       "`dbs.yaml:9` |")
    assert "(sensitive, will change)" in rows[4] and SECRET not in out


@pytest.mark.parametrize("content, message", [
    ("not json", "not a plan file (not JSON)"),
    ('{"format": "something else"}', "not a plan file; give a file written by `reconcile plan --out`"),
    ('{"format": "couch-reconciler/plan", "format_version": 99}', "plan format version 99 is not 1"),
    ('{"format": "couch-reconciler/plan", "format_version": 1, "server": "x", "created_at": "t", '
     '"changes": [{"action": "create"}]}', "damaged plan file"),
])
def test_a_bad_plan_file_is_one_clear_line(tmp_path, content, message):
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(ReconcileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(str(path))


def test_fields_of_a_document_round_trip_before_and_after(tmp_path, monkeypatch):
    document = to_document(sample_plan(tmp_path, monkeypatch))
    assert document["changes"][1]["fields"] == [{"path": "members.roles", "sensitive": False,
                                                 "before": ["_admin"], "after": ["_admin", "app"]}]
    assert document["changes"][3]["destroys"] == "12 documents"


def test_a_plan_file_that_cannot_be_written_is_one_line(tmp_path):
    with pytest.raises(ReconcileError, match=r"--out .*/missing/plan.json: cannot write the plan file \(No such file "
                                             r"or directory\); give a path in an existing, writable folder"):
        save(Plan("http://x", []), str(tmp_path / "missing" / "plan.json"))


def test_the_losing_revisions_a_write_deletes_travel_in_the_plan_file(tmp_path):
    """A saved plan is applied later: the conflicting revisions the plan saw go with it, so its apply deletes them;
    a plan file written before the field existed reads as having none."""
    plan = Plan("http://x", [Delete("replication", "r", None, version="7-b", losing_versions=("6-a", "4-c"))])
    path = tmp_path / "plan.json"
    save(plan, str(path))
    assert load(str(path)).changes == plan.changes
    document = json.loads(path.read_text())
    assert document["changes"][0]["losing_versions"] == ["6-a", "4-c"]
    del document["changes"][0]["losing_versions"]
    path.write_text(json.dumps(document))
    assert load(str(path)).changes[0].losing_versions == ()
