"""Secrets as the commands read them: `--secrets-dir` is the only way out of the manifest folder, and apply
never starts writing with a secret it cannot read, whether it plans itself or applies a saved plan."""

from __future__ import annotations

from pathlib import Path

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
