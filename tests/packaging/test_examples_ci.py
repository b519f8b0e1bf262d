"""examples/ci/ and .pre-commit-hooks.yaml do what they say: their shell commands, taken from the files as a
runner would take them, run against the test server on a copy of the reference manifests.

What cannot run here is replaced at its edge only: `uses:` actions (checkout, artifacts) by the work folder
the jobs share, the package installation by this test environment, and the calls to GitHub's and GitLab's
APIs (`gh`, `curl`) by stand-ins that record their arguments. Runners run `run:` steps and `script:` lines
with bash in errexit/pipefail mode, as here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "ci"
BIN = Path(sys.executable).parent  # `reconcile` of this environment stands for the `pip install` step
RECORDS = "api-calls.log"


@pytest.fixture
def workspace(tmp_path: Path, couch: Any, demo_secrets: dict[str, str]) -> "Workspace":
    """A checkout of a repository keeping the reference manifests in couchdb/, as the examples expect."""
    shutil.copytree(ROOT / "manifests", tmp_path / "couchdb")
    stubs = tmp_path.parent / f"{tmp_path.name}-bin"
    stubs.mkdir()
    for tool in ("gh", "curl"):
        stub = stubs / tool
        stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "{tool} $*" >>"{tmp_path / RECORDS}"\n', encoding="utf-8")
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return Workspace(tmp_path, couch, f"{stubs}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}", demo_secrets)


class Workspace:
    def __init__(self, path: Path, couch: Any, search_path: str, secrets: dict[str, str]):
        self.path, self.couch, self.search_path, self.secrets = path, couch, search_path, secrets

    def run(self, script: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        environment = {"PATH": self.search_path, "HOME": str(self.path), **self.secrets, **env}
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=self.path,
                              env=environment, capture_output=True, text=True, timeout=120)

    def calls(self) -> list[str]:
        records = self.path / RECORDS
        return records.read_text(encoding="utf-8").splitlines() if records.exists() else []

    def plan_again(self) -> int:
        """--detailed-exitcode of a fresh plan: 0 once the server matches the manifests."""
        return self.run('reconcile plan --detailed-exitcode "$MANIFESTS"', {
            "MANIFESTS": "couchdb/", "COUCHDB_URL": self.couch.url, "COUCHDB_USER": self.couch.user,
            "COUCHDB_PASSWORD": self.couch.password, "COUCHDB_REPLICATION_URL": self.couch.url}).returncode


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def is_installation(script: str) -> bool:
    return script.strip().startswith("pip install")


# ------------------------------------------------------------------ GitHub Actions

EXPRESSION = re.compile(r"^\$\{\{\s*(.+?)\s*\}\}$")


def github_env(mappings: list[Mapping[str, Any]], context: Mapping[str, str]) -> dict[str, str]:
    """Workflow, job and step `env:` in that order, each `${{ x }}` looked up in `context` (a KeyError names
    an expression this test does not provide, so the workflow and the test cannot drift apart)."""
    env: dict[str, str] = {}
    for mapping in mappings:
        for name, value in (mapping or {}).items():
            match = EXPRESSION.match(str(value))
            env[name] = context[match.group(1)] if match else str(value)
    return env


def run_github_job(workspace: Workspace, workflow: Mapping[str, Any], job_name: str, event: str) -> None:
    job = workflow["jobs"][job_name]
    couch = workspace.couch
    context = {"vars.COUCHDB_URL": couch.url, "secrets.COUCHDB_USER": couch.user,
               "secrets.COUCHDB_PASSWORD": couch.password, "vars.COUCHDB_REPLICATION_URL": couch.url,
               "github.token": "token-for-the-comment", "github.event.pull_request.number": "7",
               **{f"secrets.{name}": value for name, value in workspace.secrets.items()}}
    summary = workspace.path / "step-summary.md"
    for step in job["steps"]:
        if "uses" in step:
            continue  # checkout, setup-python, artifacts: the workspace already is all of that
        if "if" in step:
            condition = re.fullmatch(r"github\.event_name == '(\w+)'", step["if"])
            assert condition, f"a condition this test cannot evaluate: {step['if']}"
            if condition.group(1) != event:
                continue
        if is_installation(step["run"]):
            continue
        env = github_env([workflow.get("env"), job.get("env"), step.get("env")], context)
        result = workspace.run(step["run"], {**env, "GITHUB_STEP_SUMMARY": str(summary)})
        assert result.returncode == 0, f"step {step.get('name')!r} failed:\n{result.stderr}"


def test_the_github_workflow_plans_on_a_pull_request_and_applies_the_saved_plan_after_the_merge(workspace):
    workflow = load("github-actions.yml")
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert set(triggers) == {"pull_request", "push"}
    assert workflow["jobs"]["apply"]["needs"] == "plan" and workflow["jobs"]["apply"]["if"] == \
        "github.event_name == 'push'"

    run_github_job(workspace, workflow, "plan", "pull_request")
    markdown = (workspace.path / "plan.md").read_text(encoding="utf-8")
    saved = json.loads((workspace.path / "plan.json").read_text(encoding="utf-8"))
    assert saved["format"] == "couch-reconciler/plan" and saved["summary"]["add"] > 0
    assert saved["summary"]["text"] in markdown  # the comment is the Markdown rendering of the saved plan
    assert workspace.calls() == ["gh pr comment 7 --body-file plan.md --edit-last --create-if-none"]
    assert markdown in (workspace.path / "step-summary.md").read_text(encoding="utf-8")
    assert workspace.plan_again() == 2, "a pull request's plan changed the server"

    run_github_job(workspace, workflow, "plan", "push")  # after the merge: the plan the apply job downloads
    run_github_job(workspace, workflow, "apply", "push")
    assert workspace.calls() == ["gh pr comment 7 --body-file plan.md --edit-last --create-if-none"]
    assert workspace.plan_again() == 0


def test_the_github_plan_step_fails_when_the_plan_fails(workspace):
    workflow = load("github-actions.yml")
    (workspace.path / "couchdb" / "broken.yaml").write_text("kind: Database\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="step 'Validate' failed"):
        run_github_job(workspace, workflow, "plan", "pull_request")
    [plan] = [step for step in workflow["jobs"]["plan"]["steps"] if step.get("name") == "Plan"]
    result = workspace.run(plan["run"], {"MANIFESTS": "couchdb/", "COUCHDB_URL": workspace.couch.url})
    assert result.returncode == 1 and "couchdb/broken.yaml:1:" in result.stderr


# ------------------------------------------------------------------ GitLab CI

def gitlab_script(job: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    lines = [*defaults.get("before_script", []), *job["script"]]
    return "\n".join(line for line in lines if not is_installation(line))


def test_the_gitlab_pipeline_notes_the_plan_on_a_merge_request_and_applies_the_saved_plan(workspace):
    pipeline = load("gitlab-ci.yml")
    assert pipeline["stages"] == ["validate", "plan", "apply"]
    assert pipeline["apply"]["needs"] == ["plan"] and pipeline["apply"]["rules"][0]["when"] == "manual"
    couch = workspace.couch
    env = {**{name: str(value) for name, value in pipeline["variables"].items() if "$" not in str(value)},
           "COUCHDB_URL": couch.url, "COUCHDB_USER": couch.user, "COUCHDB_PASSWORD": couch.password,
           "COUCHDB_REPLICATION_URL": couch.url, "PLAN_NOTE_TOKEN": "token-for-the-note",
           "CI_API_V4_URL": "https://gitlab.example.com/api/v4", "CI_PROJECT_ID": "42"}

    for job in ("validate", "plan"):
        result = workspace.run(gitlab_script(pipeline[job], pipeline["default"]),
                               {**env, "CI_MERGE_REQUEST_IID": "9"})
        assert result.returncode == 0, f"{job}: {result.stderr}"
    assert workspace.calls() == [
        'curl --fail --silent --show-error --request POST --header PRIVATE-TOKEN: token-for-the-note '
        '--data-urlencode body@plan.md https://gitlab.example.com/api/v4/projects/42/merge_requests/9/notes']
    assert set(pipeline["plan"]["artifacts"]["paths"]) == {"plan.json", "plan.md"}
    assert workspace.plan_again() == 2

    for job in ("plan", "apply"):  # the default branch's pipeline: no merge request, no note
        result = workspace.run(gitlab_script(pipeline[job], pipeline["default"]), env)
        assert result.returncode == 0, f"{job}: {result.stderr}"
    assert len(workspace.calls()) == 1
    assert workspace.plan_again() == 0


# ------------------------------------------------------------------ pre-commit

def test_the_pre_commit_hook_refuses_a_broken_manifest(tmp_path, manifests_valid):
    """pre-commit installs this repository into a hook environment, as users' repositories get it (from a
    git repository at a revision), and runs the hook on a repository holding manifests."""
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "reconcile-validate"
    source = tmp_path / "source"  # a git repository of this one's files (an sdist has no .git)
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info",
                                                               "build", "dist", ".demo", ".pytest_cache"))
    user = tmp_path / "user"
    shutil.copytree(ROOT / "manifests", user / "manifests")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}

    def git(repository: Path, *command: str) -> str:
        return subprocess.run(["git", *command], cwd=repository, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    for repository in (source, user):
        git(repository, "init", "-q")
        git(repository, "add", "-A")
        git(repository, "commit", "-q", "-m", "files")
    config = {"repos": [{"repo": str(source), "rev": git(source, "rev-parse", "HEAD"),
                         "hooks": [{"id": "reconcile-validate"}]}]}
    (user / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    def run_hooks() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "pre-commit"), "run", "--all-files", "--verbose"], cwd=user, env=env,
                              capture_output=True, text=True, timeout=300)

    result = run_hooks()
    assert result.returncode == 0, result.stdout + result.stderr
    assert manifests_valid in result.stdout

    (user / "manifests" / "databases.yaml").write_text("kind: Database\n", encoding="utf-8")
    result = run_hooks()
    assert result.returncode == 1
    assert "manifests/databases.yaml:1:" in result.stdout


@pytest.fixture
def docker_daemon() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no Docker here (no `docker` command): the image recipe builds only where a Docker daemon runs")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"no Docker daemon answers (`docker info`: {info.stderr.strip().splitlines()[-1]}): "
                    "the image recipe builds only where one runs")


def test_the_image_runs_reconcile_as_a_non_root_user(docker_daemon, manifests_valid):
    tag = "couch-reconciler-test:latest"
    subprocess.run(["docker", "build", "-f", str(EXAMPLES / "Dockerfile"), "-t", tag, str(ROOT)], check=True,
                   capture_output=True, timeout=900)
    try:
        help_text = subprocess.run(["docker", "run", "--rm", tag], capture_output=True, text=True, timeout=120)
        assert help_text.returncode == 0 and "validate" in help_text.stdout
        user = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True,
                              text=True, timeout=120)
        assert user.stdout.strip() != "0"
        mounted = f"{ROOT / 'manifests'}:/work/manifests:ro"
        validated = subprocess.run(["docker", "run", "--rm", "-v", mounted, tag, "validate", "manifests"],
                                   capture_output=True, text=True, timeout=120)
        assert (validated.returncode, validated.stdout) == (0, manifests_valid)
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=120)


# ------------------------------------------------------------------ shell completion (README)

@pytest.mark.parametrize("shell, defines", [("bash", "complete -o nosort -F _reconcile_completion reconcile"),
                                            ("zsh", "compdef _reconcile_completion reconcile"),
                                            ("fish", "complete --no-files --command reconcile")])
def test_the_readme_completion_scripts(shell, defines):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"_RECONCILE_COMPLETE={shell}_source reconcile" in readme
    script = subprocess.run([str(BIN / "reconcile")], env={**os.environ, "_RECONCILE_COMPLETE": f"{shell}_source"},
                            capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and defines in script.stdout


def test_bash_completes_commands_and_option_choices():
    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {**os.environ, "_RECONCILE_COMPLETE": "bash_complete", "COMP_WORDS": line,
               "COMP_CWORD": str(len(words) - 1)}
        result = subprocess.run([str(BIN / "reconcile")], env=env, capture_output=True, text=True, timeout=60)
        return [item.split(",", 1)[1] for item in result.stdout.splitlines()]

    assert complete("reconcile pl") == ["plan"]
    assert complete("reconcile plan --format ") == ["text", "json", "markdown"]
