"""What a user gets from PyPI: the sdist and the wheel built from it, installed without extras in a fresh venv.

The distribution is built as a release would be (`python -m build`: the sdist, then the wheel from that
sdist), so a file missing from the sdist breaks the wheel here first. Installing reuses pip's cache.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What the sdist needs to run its own tests (MANIFEST.in).
SDIST_TREES = ("tests", "manifests", "docs", "scripts", "compose", "examples", "bench")

pytestmark = pytest.mark.packaging


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them (`PyYAML`, `jsonschema_rs`)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def run(environment: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(environment / "bin" / args[0]), *args[1:]], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_a_user_installs_the_wheel_without_extras_and_plans(tmp_path, couch, manifests_valid, demo_secrets):
    """One test, not one per command: the build and the venv are made once however pytest-xdist shares out
    tests. Built without isolation from the dev environment's setuptools (the version pyproject.toml asks
    for), which saves two throw-away virtualenvs."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    [sdist], [wheel] = dist.glob("*.tar.gz"), dist.glob("*.whl")

    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
    wanted = {str(path.relative_to(ROOT)) for tree in SDIST_TREES for path in (ROOT / tree).rglob("*")
              if path.is_file() and "__pycache__" not in path.parts and ".pytest_cache" not in path.parts}
    assert wanted - names == set(), "files the tests read are missing from the sdist"
    assert {"LICENSE", "README.md", "pyproject.toml", "Makefile", ".pre-commit-hooks.yaml"} <= names

    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
        metadata = next(archive.read(n).decode() for n in files if n.endswith(".dist-info/METADATA")).splitlines()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in files)
    assert any(name.endswith("schemas/manifest.schema.json") for name in files)
    assert {"License-Expression: Apache-2.0", "Provides-Extra: js", "Provides-Extra: sim"} <= set(metadata)

    # A fresh venv with nothing installed, not even pip: this environment's pip installs into it (`--python`),
    # resolving the wheel's dependencies from the index (or pip's cache) as a user's pip does, while
    # ensurepip's own copy of pip, which the test never uses, is not installed (it cost a third of the test).
    # Bytecode is compiled on first import instead of at install (--no-compile): what runs is the same.
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=False)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(environment / "bin" / "python"), "install",
                    "--quiet", "--disable-pip-version-check", "--no-compile", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    listed = run(environment, "python", "-c", "import importlib.metadata as m, json; "
                 "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))")
    installed = {normalized(name) for name in json.loads(listed.stdout)}
    required = {normalized(re.split(r"[<>=!~;\[ ]", line.removeprefix("Requires-Dist: "))[0]) for line in metadata
                if line.startswith("Requires-Dist: ") and "extra ==" not in line}
    # What the wheel requires came with it into the fresh venv; nothing of this environment's (its extras, pytest).
    assert required and required | {"couch-reconciler"} <= installed
    assert not {"pytest", "aiohttp", "quickjs"} & installed

    result = run(environment, "reconcile", "--help")
    assert result.returncode == 0, result.stderr
    assert "validate" in result.stdout and "plan" in result.stdout

    result = run(environment, "reconcile", "validate", "manifests")
    assert (result.returncode, result.stdout) == (0, manifests_valid)
    assert "not checked for syntax errors: the quickjs module is not installed" in result.stderr

    result = run(environment, "reconcile", "plan", "--detailed-exitcode", "manifests", env={
        "COUCHDB_URL": couch.url, "COUCHDB_USER": couch.user, "COUCHDB_PASSWORD": couch.password,
        "COUCHDB_REPLICATION_URL": couch.url, **demo_secrets})
    assert result.returncode == 2, result.stderr  # 2: there are changes to make
    assert "database/main-entities" in result.stdout
    # The summary, then the warnings again (the fan-in waits for `reconcile watch`: this plan runs without it).
    assert any(line.startswith("Plan: ") for line in result.stdout.splitlines()), result.stdout
    assert result.stdout.splitlines()[-1].startswith("Warning: "), result.stdout

    result = run(environment, "python", "-m", "couch_reconciler.couchsim")
    assert (result.returncode, result.stdout) == (1, "")
    # Whichever of the extra's modules is imported first is the one named.
    assert re.fullmatch(r"couchsim needs the `sim` extra \((aiohttp|quickjs) is not installed\): "
                        r"pip install 'couch-reconciler\[sim\]'\n", result.stderr), result.stderr
