"""Secrets as the commands read them: `--secrets-dir` is the only way out of the manifest folder, and apply
never starts writing with a secret it cannot read, whether it plans itself or applies a saved plan."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from click.testing import CliRunner

from couch_reconciler.cli import main

USER = ("apiVersion: reconciler/v1\nkind: User\nmetadata:\n  name: alice\nspec:\n"
        "  password: file:{path}\n")


def run(*args: str) -> "CliRunner.invoke":
    return CliRunner().invoke(main, list(args))


def mounted_secret(tmp_path: Path) -> tuple[Path, Path]:
    """A manifest folder whose User names a secret mounted elsewhere (as in /run/secrets in a container)."""
    manifests, mounted = tmp_path / "manifests", tmp_path / "run-secrets"
    manifests.mkdir()
    mounted.mkdir()
    (mounted / "alice").write_text("alice-password\n", encoding="utf-8")
    (manifests / "users.yaml").write_text(USER.format(path=mounted / "alice"), encoding="utf-8")
    return manifests, mounted


def test_a_secret_outside_the_folder_needs_secrets_dir(tmp_path, tripwire, monkeypatch):
    manifests, mounted = mounted_secret(tmp_path)
    monkeypatch.chdir(tmp_path)

    refused = run("validate", "manifests")
    allowed = run("validate", "--secrets-dir", str(mounted), "manifests")

    assert refused.exit_code == 1
    assert refused.stderr.splitlines() == [
        f"manifests/users.yaml:6: User/alice: `spec.password`: secret file:{mounted}/alice: {mounted}/alice is "
        "outside the manifest folder; keep secret files inside the manifest folder, or name the folder they are "
        "mounted in with --secrets-dir DIR",
        "manifests: 1 error, nothing was sent to any server"]
    assert (allowed.exit_code, allowed.stderr) == (0, "")
    assert tripwire.received == []


def test_secrets_dir_does_not_open_the_rest_of_the_disk(tmp_path, tripwire, monkeypatch):
    manifests, mounted = mounted_secret(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "alice").write_text("not-for-you\n", encoding="utf-8")
    (manifests / "users.yaml").write_text(USER.format(path=tmp_path / "elsewhere" / "alice"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    result = run("plan", "--secrets-dir", str(mounted), "manifests")

    assert result.exit_code == 1
    assert "elsewhere/alice is outside the manifest folder" in result.stderr
    assert tripwire.received == []


def test_plan_reads_a_secret_from_secrets_dir(tmp_path, couch, monkeypatch):
    manifests, mounted = mounted_secret(tmp_path)
    monkeypatch.setenv("COUCHDB_URL", couch.url)
    monkeypatch.setenv("COUCHDB_USER", couch.user)
    monkeypatch.setenv("COUCHDB_PASSWORD", couch.password)

    result = run("plan", "--secrets-dir", str(mounted), str(manifests))

    assert result.exit_code == 0, result.stderr
    assert "+ user/alice" in result.stdout


def test_a_saved_plan_whose_secret_is_gone_is_refused_before_any_request(tmp_path, couch, tripwire, monkeypatch):
    (tmp_path / "users.yaml").write_text(USER.format(path="alice.password"), encoding="utf-8")
    (tmp_path / "alice.password").write_text("alice-password\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    planned = CliRunner(env={"COUCHDB_URL": couch.url, "COUCHDB_USER": couch.user,
                             "COUCHDB_PASSWORD": couch.password}).invoke(main, ["plan", "--out", "plan.json", "."])
    assert planned.exit_code == 0, planned.stderr
    (tmp_path / "alice.password").unlink()

    result = run("apply", "plan.json")  # COUCHDB_URL: the tripwire

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"users.yaml:4: user/alice: password: secret file:alice.password: {tmp_path}/alice.password does not "
        "exist; create it or fix the path",
        "1 secret(s) cannot be read, nothing was sent to any server"]
    assert tripwire.received == []


def saved_plan(tmp_path: Path, couch, *options: str) -> tuple[Path, dict]:
    """`plan --out` of the manifests in tmp_path/manifests (a User whose password is a `file:` secret, made here
    unless the test made the folder) and the plan file's document; tmp_path/elsewhere/key lies outside."""
    if not (tmp_path / "manifests").exists():
        (tmp_path / "manifests").mkdir()
        (tmp_path / "manifests" / "users.yaml").write_text(USER.format(path="alice.password"), encoding="utf-8")
        (tmp_path / "manifests" / "alice.password").write_text("alice-password\n", encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "key").write_text("not-for-the-server\n", encoding="utf-8")
    planned = CliRunner(env={"COUCHDB_URL": couch.url, "COUCHDB_USER": couch.user, "COUCHDB_PASSWORD": couch.password}
                        ).invoke(main, ["plan", *options, "--out", str(tmp_path / "plan.json"),
                                        str(tmp_path / "manifests")])
    assert planned.exit_code == 0, planned.stderr
    return tmp_path / "plan.json", json.loads((tmp_path / "plan.json").read_text(encoding="utf-8"))


def altered_ref(document: dict, path: Path) -> None:
    document["changes"][0]["desired"]["secrets"]["password"]["ref"] = f"file:{path}"


def dropped_roots(document: dict, path: Path) -> None:
    altered_ref(document, path)
    del document["roots"]


def widened_base_dir(document: dict, path: Path) -> None:
    secret = document["changes"][0]["desired"]["secrets"]["password"]
    secret["base_dir"], secret["ref"] = str(path.parent), f"file:{path.name}"


@pytest.mark.parametrize("alter", [altered_ref, widened_base_dir, dropped_roots])
def test_a_plan_file_edited_to_read_a_secret_outside_its_folder_is_refused_before_any_request(
        tmp_path, couch, tripwire, alter):
    """A plan file stores secret paths absolute: whoever can edit it could make apply read any file and send
    it to the server as a password. apply re-checks every `file:` secret against the folders the plan recorded."""
    plan_file, document = saved_plan(tmp_path, couch)
    assert document["roots"] == {"manifests": os.path.realpath(tmp_path / "manifests"), "secrets_dirs": []}
    alter(document, tmp_path / "elsewhere" / "key")
    plan_file.write_text(json.dumps(document), encoding="utf-8")

    result = run("apply", str(plan_file))  # COUCHDB_URL: the tripwire

    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    if alter is dropped_roots:
        assert result.stderr == (f"{plan_file}: the plan file records no manifest folder, so its file: secrets "
                                 "cannot be checked; make the plan again with this version of reconcile\n")
    else:
        ref = document["changes"][0]["desired"]["secrets"]["password"]["ref"]
        assert result.stderr == (
            f"{plan_file}: the secret file of user/alice ({ref}) lies outside the manifest folder "
            f"{os.path.realpath(tmp_path / 'manifests')} and the --secrets-dir folders the plan was made with (the "
            "plan file, or a link in the folder, was changed since); nothing was sent: make the plan again\n")
    assert "not-for-the-server" not in result.output
    assert tripwire.received == []


def test_a_link_out_of_the_folder_placed_after_planning_is_refused_by_apply(tmp_path, couch, tripwire):
    plan_file, _ = saved_plan(tmp_path, couch)
    (tmp_path / "manifests" / "alice.password").unlink()
    (tmp_path / "manifests" / "alice.password").symlink_to(tmp_path / "elsewhere" / "key")

    result = run("apply", str(plan_file))

    assert result.exit_code == 1
    assert "the secret file of user/alice (file:alice.password) lies outside the manifest folder" in result.stderr
    assert tripwire.received == []


def test_a_plan_made_with_secrets_dir_is_applied_with_the_secret_mounted_there(tmp_path, couch, monkeypatch):
    manifests, mounted = mounted_secret(tmp_path)
    monkeypatch.chdir(tmp_path)
    plan_file, document = saved_plan(tmp_path, couch, "--secrets-dir", "run-secrets")  # relative: resolved
    assert document["roots"]["secrets_dirs"] == [os.path.realpath(mounted)]

    applied = CliRunner(env={"COUCHDB_URL": couch.url, "COUCHDB_USER": couch.user,
                             "COUCHDB_PASSWORD": couch.password}).invoke(main, ["apply", str(plan_file)])

    assert applied.exit_code == 0, applied.stderr
    assert "+ user/alice: created" in applied.stdout
