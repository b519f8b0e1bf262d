"""`reconcile export` writes a design document as a couchapp folder only when `reconcile` reads that folder back
as the stored document (couch_reconciler/ddoc_folder.py: `NAME.js` byte for byte, `NAME.json` parsed, other
files without their trailing newline, hidden files skipped)."""

from __future__ import annotations

import os

from couch_reconciler.ddoc_folder import read_folder
from couch_reconciler.export_documents import design_folder


def read_back(tmp_path, files: dict[str, bytes]) -> dict:
    for name, content in files.items():
        path = tmp_path / "ddoc" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    os.makedirs(tmp_path / "ddoc", exist_ok=True)
    return read_folder(str(tmp_path / "ddoc"), str(tmp_path)).body


def test_fields_awkward_for_files_still_read_back_as_stored(tmp_path):
    doc = {"_id": "_design/app", "_rev": "1-x", "language": "javascript",
           "views": {"v.1": {"map": "function (d) { emit(d._id); }\n", "reduce": "_sum"},
                     "lib": {"util": "exports.x = 1;"}},
           "notes": "ends with a line break\n", "weights": [1, 2.5, None], "flags": {"a/b": True},
           "couch_reconciler": {"created_by": "couch-reconciler"}}

    files = design_folder(None, "db", doc)  # type: ignore[arg-type]  # no attachment: no request

    assert isinstance(files, dict)
    assert files["views/v.1/map.js"] == b"function (d) { emit(d._id); }\n"
    assert files["views/v.1/reduce"] == b"_sum\n" and files["language"] == b"javascript\n"
    assert files["flags.json"] == b'{\n  "a/b": true\n}\n'  # no file can be named `a/b`
    assert read_back(tmp_path, files) == {key: value for key, value in doc.items()
                                          if key not in ("_id", "_rev", "couch_reconciler")}


def test_a_field_no_file_can_be_named_is_said_instead_of_written():
    problem = design_folder(None, "db", {"_id": "_design/app", ".hidden": "x"})  # type: ignore[arg-type]

    assert problem == "field `.hidden` has a name no file can have"
