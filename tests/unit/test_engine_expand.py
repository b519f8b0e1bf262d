"""expand: manifests -> one Desired per live object; merges and conflicts (couch_reconciler/expand.py)."""

from __future__ import annotations

from couch_reconciler.expand import expand
from couch_reconciler.load import load


def write(tmp_path, text: str) -> list:
    (tmp_path / "m.yaml").write_text(text)
    loaded = load(str(tmp_path))
    assert loaded.errors == []
    return loaded.manifests


def test_a_role_adds_its_members_to_a_declared_user(tmp_path):
    manifests = write(tmp_path, """\
apiVersion: reconciler/v1
kind: User
metadata: {name: alice}
spec: {roles: [reader], password: env:ALICE_PW}
---
apiVersion: reconciler/v1
kind: Role
metadata: {name: app-user}
spec: {members: [alice]}
""")
    state = expand(manifests)
    assert state.diagnostics == []
    alice = state.by_kind()["user"]["alice"]
    assert sorted(alice.body["roles"]) == ["app-user", "reader"]
    assert "password" in alice.secrets


def test_two_manifests_for_one_database_are_a_conflict_at_the_second_line(tmp_path):
    manifests = write(tmp_path, """\
apiVersion: reconciler/v1
kind: Database
metadata: {name: orders}
spec: {}
---
apiVersion: reconciler/v1
kind: Database
metadata:
  name: orders
spec: {partitioned: true}
""")
    state = expand(manifests)
    assert [(str(d.source), d.subject) for d in state.diagnostics] == [(f"{tmp_path}/m.yaml:9", "Database/orders")]
    assert "already wanted by" in state.diagnostics[0].message
