"""A kind added from outside the product: tests/unit/toy_kind/ holds one module and its schema, registered
through `couch_reconciler.kinds.register`, and the commands validate, plan and apply it against a server as they
do the built-in kinds (docs/architecture.md, "Adding a kind", is this recipe)."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest
from click.testing import CliRunner, Result

from couch_reconciler import kinds
from couch_reconciler.cli import main

TOY = Path(__file__).with_name("toy_kind")


@pytest.fixture
def greeting() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("toy_greeting", TOY / "greeting.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kinds.register(module)
    yield module
    del kinds.MANIFESTS[module.MANIFEST.kind], kinds.RESOURCES[module.RESOURCE.name]


def reconcile(couch, *args: str) -> Result:
    environment = {"COUCHDB_URL": couch.url, "COUCHDB_USER": couch.user, "COUCHDB_PASSWORD": couch.password}
    return CliRunner().invoke(main, list(args), env=environment, catch_exceptions=False)


def manifests(folder: Path, database: str, text: str | None) -> str:
    greeting = "" if text is None else f"\n  text: {text}"
    (folder / "greetings.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Database
        metadata: {{name: {database}}}
        spec: {{}}
        ---
        apiVersion: reconciler/v1
        kind: Greeting
        metadata: {{name: hello}}
        spec:
          database: {database}""") + greeting + "\n")
    return str(folder)


def test_a_kind_from_another_package_is_planned_and_applied(greeting, couch, unique, tmp_path):
    database = unique("greetings")
    folder = manifests(tmp_path, database, "hi")

    assert reconcile(couch, "validate", folder).stdout == f"{folder}: 2 manifests valid\n"
    plan = reconcile(couch, "plan", folder)
    assert plan.exit_code == 0, plan.output
    assert f"+ database/{database}" in plan.stdout
    assert f"+ greeting/{database}/hello" in plan.stdout and 'text: "hi"' in plan.stdout
    assert "Plan: 2 to add" in plan.stdout

    applied = reconcile(couch, "apply", "--auto-approve", folder)
    assert applied.exit_code == 0, applied.output
    assert f"+ greeting/{database}/hello: created" in applied.stdout
    stored = couch.session().get(f"{couch.url}/{database}/greeting:hello").json()
    assert stored["text"] == "hi" and stored["couch_reconciler"] == {"created_by": "couch-reconciler"}
    assert "No changes." in reconcile(couch, "plan", folder).stdout

    manifests(tmp_path, database, "hello")
    plan = reconcile(couch, "plan", folder)
    assert f"~ greeting/{database}/hello" in plan.stdout and 'text: "hi" -> "hello"' in plan.stdout
    assert reconcile(couch, "apply", "--auto-approve", folder).exit_code == 0
    assert couch.session().get(f"{couch.url}/{database}/greeting:hello").json()["text"] == "hello"


def test_its_schema_checks_manifests_and_is_published(greeting, tmp_path):
    folder = manifests(tmp_path, "greetings", None)
    invalid = CliRunner().invoke(main, ["validate", folder])
    assert invalid.exit_code == 1
    assert f"{folder}/greetings.yaml:9: Greeting/hello: `text` is missing in `spec`" in invalid.stderr

    published = json.loads(CliRunner().invoke(main, ["schema", "Greeting"]).stdout)
    assert published["properties"]["kind"] == {"const": "Greeting",
                                               "description": "the kind of object this document declares"}
    assert "common.schema.json" in published["$defs"]  # self-contained, as for the built-in kinds
