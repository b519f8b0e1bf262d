"""Design documents from a couchapp folder or inline YAML, through validate/plan/apply.

Relied on: CouchDB's docs on design documents (src/docs/src/ddocs/ddocs.rst: views with built-in
reduce functions, CommonJS modules under `views.lib`, validate_doc_update called with the writer's
userCtx and throwing `{forbidden: ...}` answered as 403), attachments (src/docs/src/api/document/common.rst:
inline base64 `data` on write, stubs with `digest: md5-<base64>` and `revpos` on read; a stub sent back
keeps the stored attachment), couch_mrview_util:ddoc_to_mrst (a view index is named by a hash of
views, language, options and views.lib, so any byte of a map function rebuilds it), and
src/docs/src/best-practices/views.rst ("Deploying a view change in a live environment": build the new
index under another design document name, then write the same views to the live name).
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

from reconcile_runner import config_changed, reconcile, write
from waiting import wait_for, written_to_every_copy

FOLDER = Path(__file__).parent.parent / "manifests" / "ddoc-app" / "ddoc"


def manifests(database: str, extra: str = "") -> str:
    return f"""
    apiVersion: reconciler/v1
    kind: Database
    metadata: {{name: {database}}}
    spec: {{}}
    ---
    apiVersion: reconciler/v1
    kind: DesignDocument
    metadata: {{name: app}}
    spec:
      database: {database}
      path: ddoc
    {extra}"""


@pytest.fixture
def deployed(couch, http, unique, tmp_path):
    """The fixture folder copied (so a test may edit it) and applied to a new database."""
    database = unique("ddoc")
    shutil.copytree(FOLDER, tmp_path / "ddoc")
    write(tmp_path, "app.yaml", manifests(database))
    applied = reconcile(couch, "apply", str(tmp_path), "--auto-approve")
    assert applied.code == 0, applied.stderr
    return database


def design(couch, http, database: str, name: str = "app") -> dict | None:
    answer = http.get(f"{couch.url}/{quote(database, safe='')}/_design/{name}")
    return answer.json() if answer.status_code == 200 else None


def put_docs(couch, http, database: str, *docs: dict) -> None:
    """On every copy: the plan counts the documents an index rebuild reads from `_dbs_info`, which takes each
    shard range from whichever copy answers first (fabric_db_info.erl)."""
    written_to_every_copy(http, couch.url, database, list(docs))


def test_a_design_document_from_a_folder_deploys(couch, http, deployed, tmp_path):
    ddoc = design(couch, http, deployed)
    # Functions are stored byte for byte as the files hold them; a built-in reducer without the newline.
    assert ddoc["views"]["by_type"] == {"map": (FOLDER / "views/by_type/map.js").read_text(), "reduce": "_count"}
    assert ddoc["views"]["lib"]["normalise"] == (FOLDER / "views/lib/normalise.js").read_text()
    assert ddoc["language"] == "javascript" and "by_type" in ddoc["filters"]
    css = (FOLDER / "_attachments/css/site.css").read_bytes()
    stub = ddoc["_attachments"]["css/site.css"]
    # A text type is stored gzip-encoded: `length` is the file's, `digest` the MD5 of the gzip stream.
    assert (stub["content_type"], stub["length"]) == ("text/css", len(css))
    assert http.get(f"{couch.url}/{deployed}/_design/app/css/site.css").content == css

    put_docs(couch, http, deployed, {"type": "Order"}, {"type": "order"}, {"type": "invoice"})
    # A view answers each shard range from one copy (fabric_view.erl), which on a loaded cluster may not hold a
    # quorum write yet: the rows are awaited, not read once.
    wait_for(lambda: http.get(f"{couch.url}/{deployed}/_design/app/_view/by_type", params={"group": "true"}
                              ).json()["rows"] == [{"key": "invoice", "value": 1}, {"key": "order", "value": 2}],
             "the view to count the documents through views/lib")

    again = reconcile(couch, "plan", str(tmp_path), "--detailed-exitcode")
    assert (again.code, again.stdout) == (0, "No changes. The server matches the manifests.\n")


def test_an_unchanged_design_document_sends_nothing_beyond_the_read(couch, deployed, tmp_path):
    noop = reconcile(couch, "apply", str(tmp_path), "--auto-approve")
    assert noop.code == 0, noop.stderr
    # One _dbs_info read for the database (its doc_count serves the design documents too), one of the
    # records of databases being created (couch_reconciler/creations.py), and one range read of its design
    # documents with attachment stubs: no write, no attachment upload.
    assert [(method, url.removeprefix(couch.url)) for method, url, _ in noop.sent] == [
        ("POST", "/_dbs_info"), ("GET", "/_users/_local_docs"), ("GET", f"/{deployed}/_all_docs")]


@pytest.mark.parametrize("level", ["1", "0"])
def test_a_design_document_converges_whatever_the_server_compression(couch, http, unique, tmp_path, level):
    """`[attachments] compression_level` (docs: config/misc.rst) changes the gzip stream CouchDB stores for a text
    attachment (1: another stream, 0: none, the digest is the file's MD5): plan still finds the files in place."""
    with config_changed(http, f"{couch.url}/_node/_local/_config/attachments/compression_level", level):
        database = unique("ddoc")
        shutil.copytree(FOLDER, tmp_path / "ddoc")
        write(tmp_path, "app.yaml", manifests(database))
        assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
        again = reconcile(couch, "plan", str(tmp_path), "--detailed-exitcode")
        assert (again.code, again.stdout) == (0, "No changes. The server matches the manifests.\n")
        site = (FOLDER / "_attachments/css/site.css").read_bytes()
        stub = design(couch, http, database)["_attachments"]["css/site.css"]
        raw_md5 = "md5-" + base64.b64encode(hashlib.md5(site).digest()).decode()
        assert (stub["digest"] == raw_md5) == (level == "0")


def test_an_edited_view_updates_with_the_index_warning(couch, http, deployed, tmp_path):
    put_docs(couch, http, deployed, {"type": "order"}, {"type": "order"})
    map_js = tmp_path / "ddoc/views/by_type/map.js"
    map_js.write_text(map_js.read_text() + "\n")  # whitespace only: CouchDB still rebuilds the index

    planned = reconcile(couch, "plan", str(tmp_path))
    assert planned.code == 0, planned.stderr
    assert f"  ~ design_document/{deployed}/_design/app" in planned.stdout
    assert "views.by_type.map: " in planned.stdout and "(7 lines" in planned.stdout
    assert "_design/app: the view index is rebuilt in 1 database holding 2 documents" in planned.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in planned.stdout

    applied = reconcile(couch, "apply", str(tmp_path), "--auto-approve")
    assert applied.code == 0, applied.stderr
    ddoc = design(couch, http, deployed)
    assert ddoc["views"]["by_type"]["map"] == map_js.read_text() and ddoc["_rev"].startswith("2-")
    # The attachments went back as stubs: CouchDB kept the stored ones (revpos is where they were written).
    assert {stub["revpos"] for stub in ddoc["_attachments"].values()} == {1}
    assert reconcile(couch, "plan", str(tmp_path)).stdout == "No changes. The server matches the manifests.\n"


def test_an_edited_attachment_is_uploaded_alone(couch, http, deployed, tmp_path):
    (tmp_path / "ddoc/_attachments/css/site.css").write_text("body { color: navy; }\n")
    planned = reconcile(couch, "plan", str(tmp_path))
    assert "_attachments.css/site.css.digest: " in planned.stdout and "view index" not in planned.stdout
    assert reconcile(couch, "apply", str(tmp_path), "--auto-approve").code == 0
    stubs = design(couch, http, deployed)["_attachments"]
    assert (stubs["css/site.css"]["revpos"], stubs["index.html"]["revpos"]) == (2, 1)
    assert http.get(f"{couch.url}/{deployed}/_design/app/css/site.css").text == "body { color: navy; }\n"


def test_a_deployed_validate_doc_update_rejects_a_bad_write_by_a_user(couch, http, unique, tmp_path):
    database, user = unique("vdu"), unique("writer")
    shutil.copytree(FOLDER, tmp_path / "ddoc")
    write(tmp_path, "app.yaml", f"""
    apiVersion: reconciler/v1
    kind: Database
    metadata: {{name: {database}}}
    spec:
      security:
        members: {{names: [{user}]}}
    ---
    apiVersion: reconciler/v1
    kind: User
    metadata: {{name: {user}}}
    spec: {{password: env:WRITER_PASSWORD}}
    ---
    apiVersion: reconciler/v1
    kind: DesignDocument
    metadata: {{name: app}}
    spec: {{database: {database}, path: ddoc}}
    """)
    applied = reconcile(couch, "apply", str(tmp_path), "--auto-approve", env={"WRITER_PASSWORD": "s3cret-w"})
    assert applied.code == 0, applied.stderr

    as_user = couch.session()
    as_user.auth = (user, "s3cret-w")
    refused = as_user.put(f"{couch.url}/{database}/no-type", json={"title": "untyped"})
    assert refused.status_code == 403
    assert refused.json() == {"error": "forbidden", "reason": "every document needs a string `type`"}
    assert as_user.put(f"{couch.url}/{database}/typed", json={"type": "note"}).status_code == 201


def test_a_javascript_syntax_error_names_the_file_and_line_and_sends_nothing(couch, unique, tmp_path):
    database = unique("bad")
    shutil.copytree(FOLDER, tmp_path / "ddoc")
    (tmp_path / "ddoc/filters/by_type.js").write_text("function (doc, req) {\n  return doc.type ===;\n}\n")
    write(tmp_path, "app.yaml", manifests(database) + """
    ---
    apiVersion: reconciler/v1
    kind: DesignDocument
    metadata: {name: inline}
    spec:
      database: %s
      views:
        all:
          map: |
            function (doc) {
              emit(doc._id, 1;
            }
    """ % database)
    checked = reconcile(couch, "validate", str(tmp_path))
    assert checked.code == 1
    assert f"{tmp_path}/ddoc/filters/by_type.js:2: DesignDocument/app: filters.by_type: JavaScript error: " \
           "SyntaxError" in checked.stderr
    assert f"{tmp_path}/app.yaml:23: DesignDocument/inline: views.all.map: JavaScript error: " in checked.stderr
    planned = reconcile(couch, "plan", str(tmp_path))
    assert planned.code == 1 and planned.sent == []


def test_a_staged_deploy_builds_the_new_index_before_the_swap(couch, http, deployed, tmp_path):
    put_docs(couch, http, deployed, {"type": "order"}, {"type": "invoice"})
    write(tmp_path, "app.yaml", manifests(deployed, "  staged: true"))
    (tmp_path / "ddoc/views/by_type/map.js").write_text("function (doc) {\n  emit([doc.type], 1);\n}\n")

    planned = reconcile(couch, "plan", str(tmp_path))
    assert "rebuilds it over 2 documents as _design/app-next first, then swaps" in planned.stdout
    # Left by an apply interrupted while the index was building: overwritten, then removed.
    leftover = http.put(f"{couch.url}/{deployed}/_design/app-next",
                        json={"views": {"old": {"map": "function (doc) { emit(null, 1); }"}}})
    assert leftover.status_code == 201
    applied = reconcile(couch, "apply", str(tmp_path), "--auto-approve")
    assert applied.code == 0, applied.stderr
    staged = f"/{deployed}/_design/app-next"
    sent = [(method, url.removeprefix(couch.url)) for method, url, _ in applied.sent]
    assert ("PUT", staged) in sent and ("GET", staged + "/_info") in sent and ("DELETE", staged) in sent
    assert sent.index(("GET", staged + "/_info")) < sent.index(("PUT", f"/{deployed}/_design/app"))
    assert design(couch, http, deployed, "app-next") is None
    rows = http.get(f"{couch.url}/{deployed}/_design/app/_view/by_type", params={"group": "true"}).json()["rows"]
    assert rows == [{"key": ["invoice"], "value": 1}, {"key": ["order"], "value": 1}]


def test_a_design_document_is_deleted_only_with_allow_delete_and_only_when_the_tool_wrote_it(
        couch, http, deployed, tmp_path):
    hand_made = http.put(f"{couch.url}/{deployed}/_design/by-hand",
                         json={"views": {"all": {"map": "function (doc) { emit(doc._id, 1); }"}}})
    assert hand_made.status_code == 201
    write(tmp_path, "app.yaml", manifests(deployed).replace("name: app", "name: other"))
    assert reconcile(couch, "plan", str(tmp_path)).stdout.count("design_document/") == 1  # only `other` to add

    pruning = reconcile(couch, "plan", str(tmp_path), "--allow-delete")
    assert f"  - design_document/{deployed}/_design/app\n      # no manifest lists it; couch-reconciler created it" \
        in pruning.stdout
    assert "by-hand" not in pruning.stdout
    assert reconcile(couch, "apply", str(tmp_path), "--allow-delete", "--auto-approve").code == 0
    assert design(couch, http, deployed) is None and design(couch, http, deployed, "by-hand") is not None


def test_a_design_document_whose_manifest_is_gone_is_found_for_deletion(couch, http, deployed, tmp_path):
    """No manifest names the database's design documents any more: pruning still finds the one the tool
    wrote, since it looks in every database when deletions are allowed."""
    if couch.real:
        pytest.skip("--allow-delete prunes every object this tool created on the server: couchsim only")
    write(tmp_path, "app.yaml", manifests(deployed).split("---")[0])
    pruning = reconcile(couch, "plan", str(tmp_path), "--allow-delete")
    assert pruning.stdout.splitlines()[4:6] == [
        f"  - design_document/{deployed}/_design/app", "      # no manifest lists it; couch-reconciler created it"]
    assert reconcile(couch, "apply", str(tmp_path), "--allow-delete", "--auto-approve").code == 0
    assert design(couch, http, deployed) is None


def test_the_ownership_marker_is_kept_out_of_the_reviewers_plan_but_not_the_plan_file(couch, unique, tmp_path):
    """The marker is bookkeeping a reviewer need not read on a create; the JSON plan (docs/plan-format.md)
    keeps every field apply writes, the marker among them."""
    database = unique("ddoc")
    write(tmp_path, "app.yaml", manifests(database).replace("path: ddoc", "views: {all: {map: 'function (d) {}'}}"))

    text = reconcile(couch, "plan", str(tmp_path))
    markdown = reconcile(couch, "plan", "--format", "markdown", str(tmp_path))
    as_json = reconcile(couch, "plan", "--format", "json", str(tmp_path))

    assert f"+ design_document/{database}/_design/app" in text.stdout
    assert 'views.all.map: "function (d) {}"' in text.stdout
    assert "couch_reconciler" not in text.stdout and "couch_reconciler" not in markdown.stdout
    assert "couch_reconciler.created_by" in as_json.stdout


def test_a_hand_made_design_document_a_manifest_takes_over_stays_unmarked(couch, http, unique, tmp_path):
    """The tool marks what it creates, and deletes only that: a design document it found (written by hand,
    or exported by `reconcile export`) is updated to the manifest's content but never marked, so even with
    --allow-delete it stays once its manifest is gone."""
    database = unique("ddoc")
    http.put(f"{couch.url}/{database}").raise_for_status()
    http.put(f"{couch.url}/{database}/_design/app",
             json={"views": {"all": {"map": "function (d) {}"}}}).raise_for_status()
    write(tmp_path, "app.yaml", manifests(database).replace("path: ddoc", "views: {all: {map: 'function (d) {}'}}"))
    assert reconcile(couch, "plan", "--detailed-exitcode", str(tmp_path)).code == 0  # the same content: no change

    write(tmp_path, "app.yaml", manifests(database).replace("path: ddoc", "views: {all: {map: 'function (e) {}'}}"))
    updating = reconcile(couch, "plan", str(tmp_path))
    assert f"~ design_document/{database}/_design/app" in updating.stdout
    assert 'views.all.map: "function (d) {}" -> "function (e) {}"' in updating.stdout
    assert reconcile(couch, "apply", "--auto-approve", str(tmp_path)).code == 0
    assert design(couch, http, database)["views"]["all"]["map"] == "function (e) {}"
    assert "couch_reconciler" not in design(couch, http, database)

    write(tmp_path, "app.yaml", manifests(database).split("---")[0])
    assert reconcile(couch, "apply", "--allow-delete", "--auto-approve", str(tmp_path)).code == 0
    assert design(couch, http, database) is not None
