"""The panel's scripts run only if the browser finds their SHA-256 both in index.html's `integrity`
attributes and in the Content-Security-Policy manifests/node-config.yaml makes CouchDB send with attachments
(https://www.w3.org/TR/CSP3/#external-hash). A script edited without scripts/panel_integrity.py would be
blocked on a server: this says so before any browser runs."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import yaml

MANIFESTS = Path(__file__).parents[2] / "manifests"
PAGES = MANIFESTS / "design" / "panel" / "_attachments"


def sha256(name: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256((PAGES / name).read_bytes()).digest()).decode("ascii")


def test_every_script_of_the_panel_is_allowed_by_its_hash_and_no_other_is():
    index = (PAGES / "index.html").read_text(encoding="utf-8")
    scripts = dict(re.findall(r'<script src="([^"]+)" integrity="([^"]+)"></script>', index))
    assert len(re.findall(r"<script\b", index)) == len(scripts) == 2  # no inline script, none without integrity
    fix = "run scripts/panel_integrity.py"
    assert scripts == {name: sha256(name) for name in scripts}, fix

    csp = next(doc for doc in yaml.safe_load_all((MANIFESTS / "node-config.yaml").read_text(encoding="utf-8"))
               if doc["kind"] == "NodeConfig" and doc["spec"]["section"] == "csp")
    directives = dict(part.strip().split(" ", 1) for part in csp["spec"]["values"]["attachments_header_value"].split(";"))
    assert sorted(directives["script-src"].split()) == sorted(f"'{value}'" for value in scripts.values()), fix
    assert directives["default-src"] == "'none'" and directives["form-action"] == "'none'"
