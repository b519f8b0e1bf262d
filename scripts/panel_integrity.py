"""Writes the SHA-256 of the panel's scripts where the browser checks them: the `integrity` attributes of
manifests/design/panel/_attachments/index.html and the `script-src` of the attachments' Content-Security-Policy
in manifests/node-config.yaml. Run it after editing charts.js or panel.js; `--check` only reports (exit 1 if stale).

Why hashes: the policy CouchDB sends with every attachment may then allow exactly these scripts, instead of
every script any user stores on the server (https://www.w3.org/TR/CSP3/#external-hash).
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "manifests" / "design" / "panel" / "_attachments"
SCRIPTS = ("charts.js", "panel.js")
INDEX = PAGES / "index.html"
MANIFEST = ROOT / "manifests" / "node-config.yaml"


def digest(name: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256((PAGES / name).read_bytes()).digest()).decode("ascii")


def updated() -> dict[Path, str]:
    """Each file with the hashes written in; unchanged files come back unchanged."""
    hashes = {name: digest(name) for name in SCRIPTS}
    index = INDEX.read_text(encoding="utf-8")
    for name, value in hashes.items():
        index = re.sub(rf'(<script src="{re.escape(name)}" integrity=")[^"]*(")', rf"\g<1>{value}\g<2>", index)
    sources = " ".join(f"'{value}'" for value in hashes.values())
    manifest = re.sub(r"script-src [^;]*;", f"script-src {sources};", MANIFEST.read_text(encoding="utf-8"))
    return {INDEX: index, MANIFEST: manifest}


def main(argv: list[str]) -> int:
    stale = [path for path, text in updated().items() if path.read_text(encoding="utf-8") != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)}: script hashes are stale; run scripts/panel_integrity.py")
        return 1 if stale else 0
    for path, text in updated().items():
        if path in stale:
            path.write_text(text, encoding="utf-8")
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
