"""`reconcile export` of a whole deployment: the reference architecture applied from manifests/, then objects
made by hand beside it (a database, design documents, replications, a user), and 300 users who signed up.
A plan on the exported folder changes nothing, and users.yaml does not grow with the users the UserDatabases
template accounts for.

Relied on: docs/couchdb.md (couch_peruser makes each user's database; a replication endpoint may be a URL
string with its credentials in the userinfo, or the `{url, auth: {basic}}` object; an admin reads stored
replication passwords in clear; text attachments are stored gzip-encoded), src/docs/src/api/document/common.rst
(attachment stubs, inline base64 `data`).
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from urllib.parse import quote

import pytest
import yaml
from cleanup import left_as_found
from reconcile_runner import reconcile
from reference_world import MANIFESTS, demo_env
from replication_setup import base_url
from waiting import wait_for, written_to_every_copy
from couch_reconciler.kinds.user_databases import user_database

SIGNED_UP = 300
MAP = "function (doc) {\n  emit(doc.type, 1);\n}\n"  # ends with a newline: kept byte for byte


def documents(path) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc["spec"] for doc in yaml.safe_load_all(path.read_text())} \
        if path.exists() else {}


def unique(prefix: str) -> str:
    return f"t-{prefix}-{secrets.token_hex(5)}"


@pytest.fixture(scope="module")
def deployment(module_couch, tmp_path_factory):
    """manifests/ applied, hand-made objects beside it, and SIGNED_UP users the next apply converged; removed
    afterwards (left_as_found). The fan-in is continuous here: apply writes each user's replication (a
    triggered one is written by `reconcile watch` only once her database changes)."""
    couch, http = module_couch, module_couch.session()
    applied = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, applied)
    layout = applied / "user-databases.yaml"
    assert "fanIn: triggered" in layout.read_text()
    layout.write_text(layout.read_text().replace("fanIn: triggered", "fanIn: continuous"))
    environment = {**demo_env(), "COUCHDB_REPLICATION_URL": base_url(couch)}

    def apply_manifests(couch) -> None:
        done = reconcile(couch, "apply", "--auto-approve", str(applied), env=environment)
        assert done.code == 0, done.stdout + done.stderr

    with left_as_found(couch.url, couch.admin):
        apply_manifests(couch)
        base, ops = base_url(couch), demo_env()["OPS_ADMIN_PASSWORD"]
        orders, copy, auditor = unique("orders"), unique("copy"), unique("auditor")
        for name in (orders, copy):
            assert http.put(f"{couch.url}/{name}").status_code == 201
        assert http.put(f"{couch.url}/{orders}/_security",
                        json={"members": {"roles": ["clerks"]}, "admins": {"names": ["ops"]}}).status_code == 200
        reports = {"views": {"by_type": {"map": MAP, "reduce": "_count"}}, "language": "javascript",
                   "options": {"local_seq": True}, "title": "Orders by type",
                   "_attachments": {"notes.txt": {"content_type": "text/plain",
                                                  "data": base64.b64encode(b"counted by type\n").decode()}}}
        assert http.put(f"{couch.url}/{orders}/_design/reports", json=reports).status_code == 201
        logo = {"_attachments": {"logo": {"content_type": "image/png", "data": base64.b64encode(b"\x89PNG").decode()}}}
        assert http.put(f"{couch.url}/{orders}/_design/branding", json=logo).status_code == 201
        replications = {
            # The form CouchDB's documentation starts with: credentials in the URL.
            unique("by-url"): {"source": f"{base.replace('://', f'://ops:{ops}@')}/main-entities",
                               "target": f"{base}/{orders}"},
            unique("by-object"): {"source": {"url": f"{base}/{orders}",
                                             "auth": {"basic": {"username": "ops", "password": ops}}},
                                  "target": {"url": f"{base}/{copy}",
                                             "auth": {"basic": {"username": "ops", "password": ops}}},
                                  "continuous": True, "selector": {"type": "order"}},
            unique("by-header"): {"source": {"url": f"{base}/{orders}", "headers": {"X-Tenant": "north"}},
                                  "target": {"url": f"{base}/{copy}",
                                             "auth": {"basic": {"username": "ops", "password": ops}}}},
        }
        for doc_id, doc in replications.items():
            assert http.put(f"{couch.url}/_replicator/{doc_id}", json=doc).status_code == 201
        hand_made_user = {"name": auditor, "type": "user", "roles": ["auditors"], "password": "auditor-pw"}
        assert http.put(f"{couch.url}/_users/org.couchdb.user:{auditor}", json=hand_made_user).status_code == 201
        signed_up = [unique("signup") for _ in range(SIGNED_UP)]
        written_to_every_copy(http, couch.url, "_users", [
            {"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": [], "signed_up_at": "today"}
            for name in signed_up])
        last = quote(user_database("userdb-", signed_up[-1]), safe="")
        wait_for(lambda: http.get(f"{couch.url}/{last}").status_code == 200, "couch_peruser's databases", timeout=60)
        apply_manifests(couch)  # the sign-ups get their role and replication
        env = {"REPLICATION_OPS_PASSWORD": ops, "COUCHDB_REPLICATION_URL": base}
        out = tmp_path_factory.mktemp("export") / "adopted"
        exported = reconcile(couch, "export", str(out), env=env)
        assert exported.code == 0, exported.stderr
        yield {"couch": couch, "out": out, "exported": exported, "env": env, "orders": orders, "copy": copy,
               "auditor": auditor,
               "replications": list(replications), "signed_up": signed_up}
    http.close()


def test_a_plan_on_the_exported_deployment_changes_nothing(deployment):
    couch, out, env = deployment["couch"], deployment["out"], deployment["env"]

    assert reconcile(couch, "validate", str(out)).code == 0
    planned = reconcile(couch, "plan", "--detailed-exitcode", str(out), env=env)

    assert planned.code == 0, planned.stdout + planned.stderr
    assert "No changes" in planned.stdout


def test_users_the_template_accounts_for_are_left_to_it(deployment):
    out = deployment["out"]

    users = documents(out / "users.yaml")

    assert deployment["auditor"] in users and {"alice", "bob"} <= set(users)  # hand-made, and declared by manifests
    assert not set(deployment["signed_up"]) & set(users)
    assert len(users) < 20  # whatever else a shared server holds, not the sign-ups
    assert (out / "users.yaml").stat().st_size < 10_000
    template = documents(out / "user-databases.yaml")["per-user"]
    assert template["prefix"] == "userdb-" and template["grantRoles"] == ["app-user"]
    assert template["security"]["admins"] == {"roles": ["_admin"]}
    assert template["replicateTo"] == [{"target": "analytics", "fanIn": "continuous", "ownerField": "owner",
                                        "auth": {"username": "ops", "password": "env:REPLICATION_OPS_PASSWORD"}}]
    design = documents(out / "design-documents.yaml")
    assert design["provenance"] == {"userDatabases": "per-user", "path": "design/UserDatabases-per-user/provenance"}
    assert (out / design["provenance"]["path"] / "validate_doc_update.js").read_text() == \
        (MANIFESTS / "design" / "provenance" / "validate_doc_update.js").read_text()


def test_replications_are_exported_with_their_passwords_as_references(deployment):
    out, exported, ops = deployment["out"], deployment["exported"], deployment["env"]["REPLICATION_OPS_PASSWORD"]

    replications = documents(out / "replications.yaml")

    texts = [path.read_text(errors="replace") for path in out.rglob("*") if path.is_file()]
    assert not any(ops in text for text in [*texts, exported.stdout, exported.stderr])
    by_url, by_object, by_header = deployment["replications"]
    assert replications[by_url] == {  # databases of the export by name, resolved as the plan resolves them
        "source": "main-entities", "target": deployment["orders"],
        "sourceAuth": {"username": "ops", "password": "env:REPLICATION_OPS_PASSWORD"}}
    assert replications[by_object] == {  # one `auth` for both ends: the same user and password
        "source": deployment["orders"], "target": deployment["copy"],
        "auth": {"username": "ops", "password": "env:REPLICATION_OPS_PASSWORD"},
        "continuous": True, "selector": {"type": "order"}}
    assert by_header not in replications
    readme = (out / "README.md").read_text()
    assert f"- replication `{by_header}`: a Replication manifest cannot hold `source.headers`" in readme
    assert "- `REPLICATION_OPS_PASSWORD`: " in readme


def test_design_documents_are_exported_as_folders_the_design_document_kind_reads(deployment):
    out, orders = deployment["out"], deployment["orders"]

    design = documents(out / "design-documents.yaml")

    assert design["reports"] == {"database": orders, "path": f"design/{orders}/reports"}
    folder = out / "design" / orders / "reports"
    assert (folder / "views" / "by_type" / "map.js").read_text() == MAP
    assert (folder / "views" / "by_type" / "reduce").read_text() == "_count\n"
    assert (folder / "language").read_text() == "javascript\n"
    assert (folder / "title").read_text() == "Orders by type\n"
    assert json.loads((folder / "options.json").read_text()) == {"local_seq": True}
    assert (folder / "_attachments" / "notes.txt").read_bytes() == b"counted by type\n"
    assert {"panel", "dashboard", "sign-ups"} <= set(design)  # from manifests/, attachments and all
    assert "branding" not in design
    assert (f"- design document `{orders}/_design/branding`: attachment `logo` is stored as image/png, while a "
            "folder gives a file of that name application/octet-stream") in (out / "README.md").read_text()
