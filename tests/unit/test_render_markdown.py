"""The Markdown plan a pipeline posts on a pull request: GitHub refuses a comment over 65,536 characters
(docs.github.com, "About comments"; the REST API answers 422 "Body is too long"), so the rendering must stay
under it whatever the plan, and say what it left out and where the whole plan is."""

from __future__ import annotations

import re

from couch_reconciler import render
from couch_reconciler.model import Create, Delete, FieldChange, Plan, Source, Update

GITHUB_LIMIT = 65_536
SOURCE = Source("manifests/user-databases.yaml", 5)


def sign_ups(users: int) -> list:
    """What `users` sign-ups plan under the reference UserDatabases template: database, security, role."""
    changes: list = []
    for n in range(users):
        database = f"userdb-{n:08x}"
        changes.append(Create("database", database, SOURCE, fields=(FieldChange("partitioned", None, False),)))
        changes.append(Create("security", database, SOURCE, fields=(
            FieldChange("members.names", None, [f"user-{n}"]), FieldChange("members.roles", None, []))))
        changes.append(Update("user", f"user-{n}", SOURCE, fields=(FieldChange("roles", [], ["app-user"]),)))
    return changes


def table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("| `")]


def test_a_plan_of_1225_changes_fits_a_comment_and_says_what_it_left_out():
    config = [Update("config", f"couchdb/max_dbs_open_{n}", Source("manifests/node-config.yaml", 3),
                     fields=(FieldChange("value", "500", "1000"),)) for n in range(3)]
    stale = [Delete("replication", "old-feed", None, fields=(FieldChange("continuous", True, None),))]
    changes = config + sign_ups(407) + stale
    assert len(changes) == 1225
    markdown = render.markdown(Plan("http://couch.example:5984", changes, ["q differs on 2 databases"]))

    assert len(markdown) < GITHUB_LIMIT
    assert markdown.startswith("### couch-reconciler plan\n\n**Plan: 814 to add, 410 to change, 1 to destroy.**\n")
    shown = len(table_rows(markdown))
    note = re.search(r"\*\*(\d+) of 1225 changes are not shown\*\*", markdown)
    assert note and int(note.group(1)) == 1225 - shown > 0
    assert "`reconcile plan --out plan.json`" in markdown
    assert "> :warning: q differs on 2 databases" in markdown
    # Every kind is summed up; the small ones whole, not buried under the sign-ups.
    assert re.findall(r"<details><summary><b>(\w+)</b>: ([^<]*)</summary>", markdown) == [
        ("config", "3 to update"), ("database", f"407 to create (first {shown_of(markdown, 'database')} shown)"),
        ("security", f"407 to create (first {shown_of(markdown, 'security')} shown)"),
        ("user", f"407 to update (first {shown_of(markdown, 'user')} shown)"), ("replication", "1 to delete")]
    assert "| `-` | `replication/old-feed` |" in markdown
    assert all(f"`config/couchdb/max_dbs_open_{n}`" in markdown for n in range(3))


def shown_of(markdown: str, kind: str) -> int:
    return sum(1 for row in table_rows(markdown) if row.split(" | ")[1].startswith(f"`{kind}/"))


def test_a_small_plan_is_shown_whole_and_unfolded():
    changes = sign_ups(2)
    markdown = render.markdown(Plan("http://couch.example:5984", changes))
    assert len(table_rows(markdown)) == 6 and "not shown" not in markdown
    assert markdown.count("<details open>") == 3 and markdown.count("</details>") == 3


def test_one_change_too_big_for_a_comment_is_counted_not_cut():
    huge = Create("design_document", "main/_design/app", Source("manifests/app.yaml", 1),
                  fields=(FieldChange("views.all.map", None, "x" * 200_000),))
    markdown = render.markdown(Plan("http://couch.example:5984", [huge, *sign_ups(1)]))
    assert len(markdown) < GITHUB_LIMIT
    assert "**1 of 4 changes are not shown**" in markdown
    assert "<b>design_document</b>: 1 to create (not shown)" in markdown
    assert len(table_rows(markdown)) == 3


def test_thousands_of_warnings_are_counted_after_the_first():
    warnings = [f"user-{n}: gets no database: the name is too long" for n in range(5000)]
    markdown = render.markdown(Plan("http://couch.example:5984", sign_ups(1), warnings))
    assert len(markdown) < GITHUB_LIMIT
    kept = markdown.count("> :warning: user-")
    assert 0 < kept < 5000 and f"> :warning: and {5000 - kept} more warning(s): see the JSON plan" in markdown
    assert len(table_rows(markdown)) == 3
