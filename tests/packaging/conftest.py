"""What the packaging tests share: the reference manifests' validation and secrets, as the development
environment sees them, for the other installations (a fresh venv, a pre-commit hook, an image) to match."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def manifests_valid() -> str:
    """`reconcile validate manifests` output in the development environment."""
    result = subprocess.run([str(Path(sys.executable).parent / "reconcile"), "validate", "manifests"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def demo_secrets() -> dict[str, str]:
    """The reference manifests' secrets (manifests/demo.env), as a pipeline's secret store would give them."""
    lines = (ROOT / "manifests" / "demo.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
