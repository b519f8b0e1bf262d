"""What the manifest kinds mean: the Desired objects they expand to (the contract the plan relies on)
and the semantic checks beyond the schema."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import yaml

from couch_reconciler.kinds import MANIFESTS
from couch_reconciler.kinds.user_databases import UserTemplate, triggered_replication, user_database
from couch_reconciler.load import load_file
from couch_reconciler.model import Desired, Diagnostic, Source
from couch_reconciler.pipeline import InvalidManifests, desired_state, load_and_validate
from couch_reconciler.secrets import SecretRef


def manifests(tmp_path: Path, *documents: dict) -> list:
    file = tmp_path / "m.yaml"
    file.write_text(yaml.safe_dump_all([{"apiVersion": "reconciler/v1", **d} for d in documents], sort_keys=False),
                    encoding="utf-8")
    return load_file(str(file))


def expand(tmp_path: Path, kind: str, name: str, spec: dict) -> list[Desired]:
    [manifest] = manifests(tmp_path, {"kind": kind, "metadata": {"name": name}, "spec": spec})
    return list(MANIFESTS[kind].expand(manifest))


def messages(tmp_path: Path, *documents: dict) -> list[str]:
    manifests(tmp_path, *documents)
    _, diagnostics = load_and_validate(str(tmp_path))
    return [str(d).removeprefix(f"{tmp_path}/") for d in diagnostics]


def test_database_expands_to_the_database_and_only_a_declared_security_object(tmp_path):
    plain = expand(tmp_path, "Database", "orders", {"q": 4})
    assert [(d.kind, d.key, dict(d.body), dict(d.options)) for d in plain] == [
        ("database", "orders", {"partitioned": False}, {"q": 4})]

    secured = expand(tmp_path, "Database", "orders", {
        "partitioned": True, "n": 3, "prune": True,
        "security": {"mode": "merge", "members": {"roles": ["app-user"]}}})
    assert [(d.kind, d.key, dict(d.body), dict(d.options)) for d in secured] == [
        ("database", "orders", {"partitioned": True}, {"partitioned": True, "n": 3, "prune": True}),
        ("security", "orders", {"members": {"names": [], "roles": ["app-user"]}, "admins": {"names": [], "roles": []}},
         {"mode": "merge"})]
    assert secured[1].source.line == 9  # the `security:` key (yaml.safe_dump orders keys as given)


def test_user_expands_with_sorted_roles_extra_fields_and_a_password_reference(tmp_path):
    [user] = expand(tmp_path, "User", "alice", {"password": "file:alice.pw", "roles": ["b", "a"],
                                                "fields": {"email": "a@example.com"}})
    assert (user.kind, user.key, dict(user.body)) == ("user", "alice", {"roles": ["a", "b"], "email": "a@example.com"})
    assert user.secrets == {"password": SecretRef("file:alice.pw", str(tmp_path))}


def test_role_expands_to_a_merged_membership_per_member(tmp_path):
    desired = expand(tmp_path, "Role", "app-user", {"members": ["alice", "bob"]})
    assert [(d.kind, d.key, dict(d.body), dict(d.options), d.source.line) for d in desired] == [
        ("user", "alice", {"roles": ["app-user"]}, {"mode": "merge"}, 7),
        ("user", "bob", {"roles": ["app-user"]}, {"mode": "merge"}, 8)]


def test_server_admin_expands_to_one_object_for_the_chosen_nodes(tmp_path):
    [admin] = expand(tmp_path, "ServerAdmin", "ops", {"password": "env:OPS", "nodes": ["couchdb@a", "couchdb@b"]})
    assert (admin.kind, admin.key, dict(admin.body), dict(admin.options)) == (
        "server_admin", "ops", {}, {"nodes": ["couchdb@a", "couchdb@b"]})
    assert admin.secrets == {"password": SecretRef("env:OPS", str(tmp_path))}


def test_node_config_values_become_the_strings_couchdb_stores(tmp_path):
    """docs/couchdb.md: /_config takes only JSON strings ("true", "3600"); a bare true is a 400."""
    desired = expand(tmp_path, "NodeConfig", "peruser", {
        "section": "couch_peruser", "values": {"enable": True, "delete_dbs": False, "q": 1, "database_prefix": "u-"}})
    assert [(d.kind, d.key, dict(d.body), dict(d.options)) for d in desired] == [
        ("config", "couch_peruser/enable", {"value": "true"}, {"nodes": "all"}),
        ("config", "couch_peruser/delete_dbs", {"value": "false"}, {"nodes": "all"}),
        ("config", "couch_peruser/q", {"value": "1"}, {"nodes": "all"}),
        ("config", "couch_peruser/database_prefix", {"value": "u-"}, {"nodes": "all"})]


def test_cors_expands_to_the_chttpd_switch_and_the_cors_section(tmp_path):
    """CouchDB 3.x reads enable_cors with chttpd_util:get_chttpd_config_boolean, which looks in [chttpd]
    first and falls back to [httpd] (apache/couchdb src/chttpd/src/chttpd_util.erl, chttpd_cors.erl
    get_cors_config/1), so [chttpd] is authoritative. [cors] lists are split on commas (split_list/1)."""
    desired = expand(tmp_path, "Cors", "web", {
        "origins": ["https://a.example.com", "https://b.example.com"], "credentials": True,
        "methods": ["GET", "PUT"], "headers": ["accept", "content-type"], "max_age": 3600})
    assert {d.key: d.body["value"] for d in desired} == {
        "chttpd/enable_cors": "true",
        "cors/origins": "https://a.example.com, https://b.example.com",
        "cors/credentials": "true",
        "cors/max_age": "3600",
        "cors/methods": "GET, PUT",
        "cors/headers": "accept, content-type"}
    assert {d.kind for d in desired} == {"config"}


def test_a_design_document_expands_once_per_database_with_the_ownership_marker(tmp_path):
    views = {"v": {"map": "function (doc) {}", "reduce": "_count"}}
    desired = expand(tmp_path, "DesignDocument", "x", {"databases": ["a", "b"], "views": views, "staged": True})
    assert [(d.kind, d.key) for d in desired] == [("design_document", "a/_design/x"), ("design_document", "b/_design/x")]
    assert dict(desired[0].body) == {"views": views, "couch_reconciler": {"created_by": "couch-reconciler"}}
    assert desired[0].options == {"staged": True}
    assert expand(tmp_path, "DesignDocument", "x", {"userDatabases": "per-user", "views": views}) == []


def test_a_replication_resolves_names_against_the_server_url_and_keeps_passwords_as_references(tmp_path, monkeypatch):
    """docs/couchdb.md: _replicator needs full URLs (local names are 403) and takes credentials in
    `auth.basic`; the URL is the one the server reaches itself at."""
    monkeypatch.delenv("COUCHDB_REPLICATION_URL", raising=False)
    [replication] = expand(tmp_path, "Replication", "a-to-b", {
        "source": "a", "target": "https://backup.example.com/b", "continuous": True,
        "targetAuth": {"username": "ops", "password": "env:BACKUP_PASSWORD"}})
    assert (replication.kind, replication.key) == ("replication", "a-to-b")
    assert dict(replication.body) == {
        "source": {"url": "http://127.0.0.1:5984/a"},
        "target": {"url": "https://backup.example.com/b", "auth": {"basic": {"username": "ops"}}},
        "continuous": True, "couch_reconciler": {"created_by": "couch-reconciler"}}
    assert replication.secrets == {"target": SecretRef("env:BACKUP_PASSWORD", str(tmp_path))}


def test_the_environment_names_the_server_url_a_manifest_leaves_out(tmp_path, monkeypatch):
    """The URL the server reaches itself at belongs to the deployment (README, "The URL the server reaches
    itself at"): $COUCHDB_REPLICATION_URL fills it in, and a manifest's replicationBaseUrl still wins."""
    monkeypatch.setenv("COUCHDB_REPLICATION_URL", "http://couchdb.internal:5984/")
    [from_env] = expand(tmp_path, "Replication", "a-to-b", {"source": "a", "target": "b"})
    assert (from_env.body["source"], from_env.body["target"]) == (
        {"url": "http://couchdb.internal:5984/a"}, {"url": "http://couchdb.internal:5984/b"})
    [written] = expand(tmp_path, "Replication", "a-to-b", {
        "source": "a", "target": "b", "replicationBaseUrl": "https://self.example.com"})
    assert written.body["source"] == {"url": "https://self.example.com/a"}


def test_user_databases_do_not_expand_without_the_server(tmp_path):
    assert expand(tmp_path, "UserDatabases", "x", {}) == []


def test_diagnostic_format_marks_warnings():
    source = Source("m/a.yaml", 7)
    assert str(Diagnostic(source, "Database/a", "what", "how")) == "m/a.yaml:7: Database/a: what; how"
    assert str(Diagnostic(source, None, "what", "how", "warning")) == "m/a.yaml:7: warning: what; how"


def test_system_roles_and_declared_roles_are_accepted_in_security(tmp_path):
    assert messages(tmp_path,
                    {"kind": "Role", "metadata": {"name": "app-user"}, "spec": {}},
                    {"kind": "Database", "metadata": {"name": "orders"},
                     "spec": {"security": {"members": {"roles": ["app-user", "_admin", "_reader"]}}}}) == []


def test_databases_a_template_produces_count_as_declared(tmp_path):
    """A DesignDocument for userdb-… and a Replication from it need no Database manifest."""
    assert messages(tmp_path,
                    {"kind": "UserDatabases", "metadata": {"name": "per-user"}, "spec": {"prefix": "u-"}},
                    {"kind": "Database", "metadata": {"name": "analytics"}, "spec": {}},
                    {"kind": "Replication", "metadata": {"name": "r"},
                     "spec": {"source": "u-616c696365", "target": "analytics"}},
                    {"kind": "DesignDocument", "metadata": {"name": "d"},
                     "spec": {"database": "_users", "validate_doc_update": "function () {}"}}) == []


def test_undeclared_databases_are_warnings_with_the_closest_name(tmp_path):
    assert messages(tmp_path,
                    {"kind": "Database", "metadata": {"name": "analytics"}, "spec": {}},
                    {"kind": "DesignDocument", "metadata": {"name": "d"},
                     "spec": {"databases": ["analytcs"], "views": {"v": {"map": "function (doc) {}"}}}}) == [
        "m.yaml:13: warning: DesignDocument/d: database `analytcs` is not declared by any manifest; "
        "did you mean `analytics`?"]


def test_the_same_design_document_name_in_two_databases_is_fine_but_not_twice_in_one(tmp_path):
    ddoc = {"kind": "DesignDocument", "metadata": {"name": "stats"}}
    views = {"views": {"v": {"map": "function (doc) {}"}}}
    assert messages(tmp_path,
                    {"kind": "Database", "metadata": {"name": "a"}, "spec": {}},
                    {"kind": "Database", "metadata": {"name": "b"}, "spec": {}},
                    {**ddoc, "spec": {"database": "a", **views}},
                    {**ddoc, "spec": {"databases": ["b", "a"], **views}}) == [
        "m.yaml:26: DesignDocument/stats: _design/stats in a is also declared at "
        f"{tmp_path}/m.yaml:16; merge the two or rename one"]


def test_config_keys_on_disjoint_nodes_do_not_conflict(tmp_path):
    config = {"kind": "NodeConfig", "spec": {"section": "log", "values": {"level": "info"}}}
    assert messages(tmp_path,
                    {**config, "metadata": {"name": "a"}, "spec": {**config["spec"], "nodes": ["n1"]}},
                    {**config, "metadata": {"name": "b"}, "spec": {**config["spec"], "nodes": ["n2"]}}) == []


def test_a_server_admin_named_like_a_user_is_a_warning(tmp_path):
    assert messages(tmp_path,
                    {"kind": "User", "metadata": {"name": "ops"}, "spec": {"password": "env:A"}},
                    {"kind": "ServerAdmin", "metadata": {"name": "ops"}, "spec": {"password": "env:B"}}) == [
        f"m.yaml:11: warning: ServerAdmin/ops: also declared as a User (at {tmp_path}/m.yaml:4); "
        "the server admin shadows the user at login; use different names for users and server admins"]


def test_values_json_has_no_type_for_are_reported_at_their_line(tmp_path):
    """YAML's own types (a timestamp, !!binary) are no JSON type: the schema check names them, not crashes."""
    (tmp_path / "m.yaml").write_text("apiVersion: reconciler/v1\nkind: Database\nmetadata: {name: orders}\n"
                                     "spec:\n  q: 2001-01-01\n  security: {members: {names: [!!binary aGk=]}}\n")
    _, diagnostics = load_and_validate(str(tmp_path))
    assert [(d.source.line, d.message, d.hint) for d in diagnostics] == [
        (5, "`spec.q` must be a whole number, not date", "`q` is the number of shards, only used when the database is "
                                                         "created"),
        (6, "`spec.security.members.names[0]` must be text, not bytes",
         "see `reconcile schema KIND` for the expected shape")]



def test_a_replication_manifest_may_not_take_the_ids_a_user_databases_template_prunes(tmp_path):
    said = messages(tmp_path, {"kind": "UserDatabases", "metadata": {"name": "per-user"}, "spec": {}},
                    {"kind": "Database", "metadata": {"name": "a"}, "spec": {}},
                    {"kind": "Database", "metadata": {"name": "b"}, "spec": {}},
                    {"kind": "Replication", "metadata": {"name": "per-user.mine"}, "spec": {"source": "a", "target": "b"}})

    assert any(message.startswith("m.yaml:") and "`per-user.`" in message and "UserDatabases `per-user`" in message
               for message in said), said


def user_databases_feeding_analytics(**entry) -> tuple[dict, dict]:
    return ({"kind": "UserDatabases", "metadata": {"name": "per-user"},
             "spec": {"replicateTo": [{"target": "analytics", **entry}]}},
            {"kind": "Database", "metadata": {"name": "analytics"}, "spec": {}})


def test_a_triggered_run_admits_only_its_users_documents_and_their_deletions(tmp_path):
    """`ownerField`: the one-shot document watch writes for a user database carries the selector of the user it
    reads back from the database's name (docs/couchdb.md, "Replication": `$beginsWith`, tombstones)."""
    def run(**entry):
        [template, _] = manifests(tmp_path, *user_databases_feeding_analytics(fanIn="triggered", **entry))
        return triggered_replication(UserTemplate(template), user_database("userdb-", "zoë"),
                                     template.spec["replicateTo"][0]).body

    owned = run(ownerField="owner")
    assert owned["selector"] == {"_id": {"$beginsWith": "zoë:"}, "$or": [{"owner": "zoë"}, {"_deleted": True}]}
    assert owned["continuous"] is False
    assert "selector" not in run()


def test_an_owner_field_is_a_plain_field_name(tmp_path):
    """A dot would make Mango read a nested path, a `$` an operator: the schema refuses both, at their line."""
    for bad in ("a.b", "$or", "_id"):
        found = messages(tmp_path, *user_databases_feeding_analytics(ownerField=bad))
        assert len(found) == 1 and found[0].startswith("m.yaml:8: ") and "ownerField" in found[0], found


def test_loading_leaves_the_cycle_collector_running_and_nothing_set_aside_even_for_invalid_manifests(tmp_path):
    """Loading pauses the collector and moves what it built to the oldest generation: afterwards the collector
    runs again and garbage cycles made before are collectable, so a long-running `reconcile watch`, which
    reloads its manifests, does not grow."""
    class Cycle:
        pass

    for spec in ({}, {"q": "four"}):
        cycle = Cycle()
        cycle.itself = cycle
        before = weakref.ref(cycle)
        del cycle
        manifests(tmp_path, {"kind": "Database", "metadata": {"name": "orders"}, "spec": spec})
        try:
            desired_state(str(tmp_path))
        except InvalidManifests:
            assert spec  # only the invalid one
        assert gc.isenabled() and gc.get_freeze_count() == 0
        gc.collect()
        assert before() is None
