"""The JSON Schema files work as files, checked by an independent validator (check-jsonschema) rather than by
the product's own code: the ones in couch_reconciler/schemas/ as the reference manifests' `$schema=` lines name
them, the copies `reconcile schema --out DIR` writes, and the self-contained output of `reconcile schema`.

Offline: every run points the proxy at a closed port, so a schema whose `$ref` led to a download fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")
OFFLINE = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}


def check_jsonschema(schema: Path, instances: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "check-jsonschema"), "--no-cache", "--schemafile", str(schema),
                           *map(str, instances)], capture_output=True, text=True, env=OFFLINE, timeout=120)


def documents_by_schema(tmp_path: Path) -> dict[Path, list[Path]]:
    """Each document of manifests/ as a JSON file, grouped by the schema its file's first line names."""
    grouped: dict[Path, list[Path]] = defaultdict(list)
    for manifest in sorted((ROOT / "manifests").glob("*.yaml")):
        text = manifest.read_text(encoding="utf-8")
        line = SCHEMA_LINE.match(text.splitlines()[0])
        assert line, f"{manifest.name}: the first line names no schema"
        schema = (manifest.parent / line.group(1)).resolve()
        for n, document in enumerate(d for d in yaml.safe_load_all(text) if d is not None):
            instance = tmp_path / f"{manifest.stem}-{n}.json"
            instance.write_text(json.dumps(document), encoding="utf-8")
            grouped[schema].append(instance)
    return grouped


def test_the_reference_manifests_pass_the_schema_files_their_first_lines_name(tmp_path):
    grouped = documents_by_schema(tmp_path)
    assert sum(map(len, grouped.values())) >= 10
    for schema, instances in grouped.items():
        assert schema.parent == ROOT / "couch_reconciler" / "schemas"
        result = check_jsonschema(schema, instances)
        assert result.returncode == 0, f"{schema.name}: {result.stdout}{result.stderr}"
        assert "ok -- validation done" in result.stdout


def test_the_files_schema_out_writes_accept_every_manifest_and_refuse_a_wrong_one(tmp_path):
    out = tmp_path / "schemas"
    written = subprocess.run([str(BIN / "reconcile"), "schema", "--out", str(out)], capture_output=True, text=True,
                             timeout=60)
    assert written.returncode == 0, written.stderr
    assert sorted(path.name for path in out.iterdir()) == \
        sorted(path.name for path in (ROOT / "couch_reconciler" / "schemas").glob("*.schema.json"))
    instances = [path for paths in documents_by_schema(tmp_path).values() for path in paths]
    result = check_jsonschema(out / "manifest.schema.json", instances)
    assert result.returncode == 0, result.stdout + result.stderr

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"apiVersion": "reconciler/v1", "kind": "Role", "metadata": {"name": "app-user"},
                                 "spec": {"members": "alice"}}), encoding="utf-8")
    for schema in (out / "manifest.schema.json", out / "role.schema.json"):
        result = check_jsonschema(schema, [wrong])
        assert result.returncode == 1, result.stdout + result.stderr
        assert "$.spec.members: 'alice' is not of type 'array'" in result.stdout, result.stdout


def test_the_printed_schema_is_self_contained(tmp_path):
    printed = subprocess.run([str(BIN / "reconcile"), "schema"], capture_output=True, text=True, timeout=60)
    schema = tmp_path / "any-manifest.json"
    schema.write_text(printed.stdout, encoding="utf-8")
    assert json.loads(printed.stdout)["$id"] == "https://couch-reconciler.github.io/schemas/v1/manifest.schema.json"
    instances = [path for paths in documents_by_schema(tmp_path).values() for path in paths]
    result = check_jsonschema(schema, instances)
    assert result.returncode == 0, result.stdout + result.stderr
