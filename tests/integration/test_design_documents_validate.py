"""`reconcile validate` on design-document folders: every problem at its file and line, offline.

Relied on: the couchapp folder mapping (a folder is an object, NAME.js a string, NAME.json parsed JSON;
fields starting with `_` are CouchDB's: src/couch/src/couch_doc.erl `transfer_fields` refuses unknown
ones with `doc_validation`), and couch_reconciler/javascript.py (CouchDB 3.4 refuses a function that does not
compile with 400 `compilation_error`, whose reason hides the line).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reconcile_runner import reconcile, write

MANIFEST = """
apiVersion: reconciler/v1
kind: DesignDocument
metadata: {name: app}
spec: {database: orders, path: ddoc}
---
apiVersion: reconciler/v1
kind: Database
metadata: {name: orders}
spec: {}
"""


def folder(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / "ddoc" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def validate(tmp_path: Path) -> list[str]:
    write(tmp_path, "app.yaml", MANIFEST)
    result = reconcile_offline(tmp_path)
    return [line.removeprefix(f"{tmp_path}/") for line in result.stderr.splitlines()]


class Nowhere:
    """validate never connects: the server it is given does not exist."""
    url, admin = "http://127.0.0.1:9", ("admin", "unused")


def reconcile_offline(tmp_path: Path):
    result = reconcile(Nowhere, "validate", str(tmp_path))
    assert result.sent == []
    return result


def test_a_valid_folder_with_every_part_passes(tmp_path):
    folder(tmp_path, {
        "views/by_type/map.js": "function (doc) { emit(doc.type, null); }\n",
        "views/by_type/reduce.js": "_count\n",
        "views/lib/util.js": "exports.x = 1;\n",  # a module, not a function: not checked as one
        "lib/shared.js": "module.exports = {};\n",
        "updates/stamp.js": "function (doc, req) { return [doc, 'ok']; }\n",
        "options.json": '{"local_seq": true}\n',
        "_attachments/logo.png": b"\x89PNG\r\n\x1a\n\x00",
    })
    write(tmp_path, "app.yaml", MANIFEST)
    result = reconcile_offline(tmp_path)
    assert (result.code, result.stdout) == (0, f"{tmp_path}: 2 manifests valid\n")


def test_every_folder_problem_is_reported_at_its_file_and_line(tmp_path):
    folder(tmp_path, {
        "views/by_type/map.js": "function (doc) {\n  emit(doc.type, null);\n  }}\n",
        "views/by_type/map.json": '"duplicate"',
        "options.json": '{\n  "local_seq": tru\n}\n',
        "_id": "_design/other\n",
        "validate_doc_update.js": b"function (doc) { throw({forbidden: '\xff'}); }",
    })
    assert validate(tmp_path) == [
        "ddoc/_id:1: DesignDocument/app: `_id` would be the field `_id`, which CouchDB reserves; "
        "rename or remove it (the name comes from metadata.name)",
        "ddoc/options.json:2: DesignDocument/app: not valid JSON (Expecting value); fix the JSON",
        "ddoc/validate_doc_update.js:1: DesignDocument/app: not UTF-8 text; save it as UTF-8, or move a binary "
        "file under _attachments/",
        "ddoc/views/by_type/map.js:3: DesignDocument/app: views.by_type.map: JavaScript error: SyntaxError: "
        "unexpected token in expression: '}'; fix the function (CouchDB would refuse the design document with "
        "compilation_error)",
        "ddoc/views/by_type/map.json:1: DesignDocument/app: `map.json` and map.js both give the field `map`; "
        "keep one of them",
        f"{tmp_path}: 5 errors, nothing was sent to any server",
    ]


def test_without_quickjs_validate_warns_that_it_skipped_the_syntax_check(tmp_path):
    """quickjs is an optional extra (no PyPI wheel for aarch64, musl or CPython 3.13): without it a function
    CouchDB would refuse passes validate, and the user is told it was not checked and how to get the check."""
    folder(tmp_path, {"views/by_type/map.js": "function (doc) {\n  emit(doc.type;\n}\n"})
    write(tmp_path, "app.yaml", MANIFEST)
    # A None entry in sys.modules makes `import quickjs` raise ImportError, as on a platform without its wheel.
    result = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['quickjs'] = None; from couch_reconciler.cli import main; main()",
         "validate", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"{tmp_path}: 2 manifests valid\n")
    assert result.stderr == (
        f"{tmp_path}/app.yaml:4: warning: DesignDocument/app: 1 JavaScript function(s) not checked for syntax "
        "errors: the quickjs module is not installed; install the `js` extra (pip install 'couch-reconciler[js]') "
        "to check them before apply\n")
