"""`reconcile validate` and `reconcile schema` as a user runs them.

Every broken manifest under tests/manifests/broken/<case>/ must produce exactly the lines in
its expected.txt (file:line: Kind/name: what is wrong; how to fix it), exit 1, and send no
request: COUCHDB_URL points at a tripwire server that records anything it receives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import jsonschema
import pytest
import requests
import yaml
from click.testing import CliRunner

from couch_reconciler.cli import main

BROKEN = Path(__file__).parents[1] / "manifests" / "broken"
REFERENCE = Path(__file__).parents[2] / "manifests"
CASES = sorted(path.name for path in BROKEN.iterdir() if path.is_dir())


def run(*args: str) -> "click.testing.Result":
    return CliRunner().invoke(main, list(args))


def test_the_tripwire_records_requests(tripwire):
    """Guards the guard: a request to COUCHDB_URL is seen, so an empty record below means none was sent."""
    requests.get(f"{tripwire.url}/_all_dbs", timeout=5)
    assert tripwire.received == ["GET /_all_dbs"]


@pytest.mark.parametrize("case", CASES)
def test_broken_manifest_gives_exact_file_line_messages(case, tripwire, monkeypatch):
    monkeypatch.chdir(BROKEN / case)
    expected = (BROKEN / case / "expected.txt").read_text(encoding="utf-8").splitlines()

    result = run("validate", ".")

    *diagnostics, summary = result.stderr.splitlines()
    assert diagnostics == expected
    errors = len(expected)
    assert summary == f".: {errors} error{'s' if errors != 1 else ''}, nothing was sent to any server"
    assert result.exit_code == 1
    assert result.stdout == ""
    assert tripwire.received == []


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


def _write_binary(folder: Path) -> None:
    (folder / "logo.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


def _write_invalid_utf8(folder: Path) -> None:
    (folder / "db.yaml").write_bytes(b"apiVersion: reconciler/v1\nkind: Database\nmetadata:\n  name: caf\xe9\nspec: {}\n")


def _write_50_mb(folder: Path) -> None:
    with open(folder / "huge.yaml", "wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: costs no disk and no time


@pytest.mark.parametrize("write, expected", [
    (_write_binary, "logo.yaml:1: this is not a text file (it holds NUL bytes); "
                    "remove it from the manifest folder or give it another extension than .yaml/.yml"),
    (_write_invalid_utf8, "db.yaml:4: invalid UTF-8 (byte 0xe9); save the file as UTF-8"),
    (_write_50_mb, "huge.yaml:1: the file is 50.0 MiB, above the 10 MiB limit for a manifest file; "
                   "split it into several files, or move design-document code into a folder (spec.path)"),
])
def test_files_that_are_not_yaml_text_give_one_line(write, expected, tmp_path, tripwire, monkeypatch):
    write(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = run("validate", ".")
    assert result.stderr.splitlines() == [expected, ".: 1 error, nothing was sent to any server"]
    assert result.exit_code == 1
    assert tripwire.received == []


def test_reference_manifests_are_valid(tripwire):
    result = run("validate", str(REFERENCE))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"{REFERENCE}: ") and result.stdout.endswith(" manifests valid\n")
    assert tripwire.received == []


def test_warnings_are_printed_but_pass_unless_strict(tmp_path, tripwire, monkeypatch):
    (tmp_path / "replication.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Replication\nmetadata:\n  name: to-archive\n"
        "spec:\n  source: https://example.com/orders\n  target: archive\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    warning = ("replication.yaml:7: warning: Replication/to-archive: database `archive` is not declared by any "
               "manifest; declare it with `kind: Database` unless it already exists")

    lenient = run("validate", ".")
    strict = run("validate", "--strict", ".")

    assert (lenient.exit_code, lenient.stderr, lenient.stdout) == (0, warning + "\n", ".: 1 manifest valid\n")
    assert strict.exit_code == 1
    assert strict.stderr.splitlines() == [warning, ".: 1 error, nothing was sent to any server"]
    assert tripwire.received == []


def test_a_missing_folder_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("validate", "nowhere")
    assert (result.exit_code, result.stderr) == (
        1, "nowhere: no such file or folder; give the folder that holds the manifests\n")


def test_installed_command_prints_no_traceback(tmp_path):
    """The console script itself, as CI runs it: exit status 1 and one line per problem on stderr."""
    (tmp_path / "db.yaml").write_text("apiVersion: reconciler/v1\nkind: Database\nmetadata:\n  name: a\n"
                                      "spec:\n  q: 1\n  q: 2\n", encoding="utf-8")
    reconcile = Path(sys.executable).with_name("reconcile")
    done = subprocess.run([str(reconcile), "validate", "db.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "COUCHDB_URL": "http://127.0.0.1:9"})
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "db.yaml:7: duplicate key `q` (first at line 6); keep only one of them: YAML would silently drop the first",
        "db.yaml: 1 error, nothing was sent to any server"]


# ---------------------------------------------------------------- help


def _commands() -> list[tuple[str, click.Command]]:
    return sorted(main.commands.items())


def test_top_level_help_lists_every_subcommand_once_with_its_whole_description():
    result = run("--help")
    assert result.exit_code == 0
    listed = result.stdout.split("Commands:\n", 1)[1].splitlines()
    # One line a command, in the order a pipeline uses them, each description whole (click cuts long ones).
    assert [line.split()[0] for line in listed] == ["validate", "schema", "plan", "apply", "export", "status", "watch"]
    for line in listed:
        name, description = line.split(maxsplit=1)
        assert description == main.commands[name].short_help and not description.endswith("...")
    assert result.stdout.count("Commands:") == 1


@pytest.mark.parametrize("name", [name for name, _ in _commands()])
def test_subcommand_help_describes_every_option(name):
    command = main.commands[name]
    result = run(name, "--help")
    assert result.exit_code == 0
    for parameter in command.params:
        if isinstance(parameter, click.Option):
            assert parameter.help, f"{name} {parameter.opts[0]} has no help text"
            for flag in parameter.opts:
                assert flag in result.stdout
        else:
            assert parameter.human_readable_name in result.stdout


# ---------------------------------------------------------------- schema


def _documents(folder: Path) -> list[dict]:
    return [doc for file in sorted(folder.glob("*.yaml"))
            for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")) if doc]


def test_schema_of_any_manifest_is_self_contained_and_accepts_the_reference_manifests():
    result = run("schema")
    printed = json.loads(result.stdout)
    validator = jsonschema.Draft202012Validator(printed)  # no registry: everything must be embedded
    for document in _documents(REFERENCE):
        assert list(validator.iter_errors(document)) == [], document["metadata"]["name"]
    wrong = {"apiVersion": "reconciler/v1", "kind": "Database", "metadata": {"name": "x"}, "spec": {"q": "two"}}
    assert [e.validator for e in validator.iter_errors(wrong)] == ["type"]


def test_schema_of_one_kind(tripwire):
    result = run("schema", "database")
    printed = json.loads(result.stdout)
    assert printed["title"] == "Database"
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    databases = [doc for doc in _documents(REFERENCE) if doc["kind"] == "Database"]
    for database in databases:
        jsonschema.validate(database, printed)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**databases[0], "spec": {"partitoned": True}}, printed)
    assert tripwire.received == []


def test_schema_of_an_unknown_kind_is_one_line():
    result = run("schema", "Databse")
    assert (result.exit_code, result.stderr) == (1, "unknown kind `Databse`; did you mean `Database`?\n")


def test_every_reference_manifest_names_its_schema_for_editors():
    """The first line tells yaml-language-server which schema to use; it must exist and match the file's kinds."""
    for file in sorted(REFERENCE.glob("*.yaml")):
        first = file.read_text(encoding="utf-8").splitlines()[0]
        prefix = "# yaml-language-server: $schema="
        assert first.startswith(prefix), file.name
        schema_file = (file.parent / first.removeprefix(prefix)).resolve()
        title = json.loads(schema_file.read_text(encoding="utf-8"))["title"]
        kinds = {doc["kind"] for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")) if doc}
        assert kinds == {title}, file.name
