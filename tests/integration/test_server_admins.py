"""Server admins on a 3-node cluster: one hash, computed by the tool, on every node.

Relied on: apache/couchdb src/couch/src/couch_passwords.erl (hash_admin_password/2: the value
"-pbkdf2:PRF-KEY,SALT,ITERATIONS" with [chttpd_auth] iterations and pbkdf2_prf), and
docs/couchdb.md (a value already in that form is stored as is and authenticates
at once; config is per node; `/_membership` lists cluster_nodes).
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

import pytest
from reconcile_runner import assert_no_secret, reconcile, write
from waiting import wait_for

OPS = """
    apiVersion: reconciler/v1
    kind: ServerAdmin
    metadata: {name: ops}
    spec:
      password: env:OPS_PASSWORD
    """
PERUSER = """
    apiVersion: reconciler/v1
    kind: NodeConfig
    metadata: {name: peruser}
    spec:
      section: couch_peruser
      values: {delete_dbs: false}
    """


@pytest.fixture(autouse=True)
def only_the_starting_admin(cluster, http):
    """The module shares one cluster: each case starts with only the admin the server was started with."""
    yield
    for node in cluster.nodes:
        for name in ("ops", "by-hand"):
            http.delete(f"{cluster.url}/_node/{node}/_config/admins/{name}")
            http.delete(f"{cluster.url}/_node/{node}/_config/couch_reconciler_admins/{name}")


def stop_declaring_ops(folder) -> None:
    """The manifests stop listing the ServerAdmin; an unrelated NodeConfig is what the folder still declares."""
    (folder / "admins.yaml").unlink()
    write(folder, "config.yaml", PERUSER)


def admin_values(cluster, http, name: str) -> dict[str, str | None]:
    values = {}
    for node in cluster.nodes:
        answer = http.get(f"{cluster.url}/_node/{node}/_config/admins/{name}")
        values[node] = answer.json() if answer.status_code == 200 else None
    return values


def hash_verifies(value: str, password: str) -> bool:
    """Independent of the product: CouchDB's admin format, the salt used as its hex string."""
    prf_and_key, salt, iterations = value.removeprefix("-pbkdf2:").split(",")
    prf, key = prf_and_key.split("-")
    return hashlib.pbkdf2_hmac(prf, password.encode(), salt.encode("ascii"), int(iterations)).hex() == key


def configured_iterations(cluster, http) -> str:
    """[chttpd_auth] iterations of the node answering, 600000 unless set (couch_passwords:hash_admin_password/1)."""
    answer = http.get(f"{cluster.url}/_node/_local/_config/chttpd_auth/iterations")
    return answer.json() if answer.status_code == 200 else "600000"


def test_one_hash_is_written_to_every_node_and_then_nothing_changes(cluster, http, tmp_path):
    write(tmp_path, "admins.yaml", OPS)
    env = {"OPS_PASSWORD": "ops-secret-1"}

    applied = reconcile(cluster, "apply", "--auto-approve", str(tmp_path), env=env)

    assert applied.code == 0, applied.stderr
    values = admin_values(cluster, http, "ops")
    assert len(set(values.values())) == 1, values
    value = values[cluster.nodes[0]]
    assert value.startswith("-pbkdf2:sha256-") and value.endswith("," + configured_iterations(cluster, http))
    assert hash_verifies(value, "ops-secret-1")
    writes = [params for method, url, params in applied.sent if method == "PUT" and "/_config/admins/" in url]
    assert writes == [{"raw": "true"}] * 3
    assert http.get(f"{cluster.url}/_node/_local/_config/admins", auth=("ops", "ops-secret-1")).status_code == 200
    again = reconcile(cluster, "plan", "--detailed-exitcode", str(tmp_path), env=env)
    assert again.code == 0 and "No changes" in again.stdout
    assert_no_secret(["ops-secret-1", value], applied.stdout, applied.stderr, again.stdout, again.stderr)


def test_a_node_holding_another_password_is_named_and_all_nodes_get_one_new_hash(cluster, http, tmp_path):
    write(tmp_path, "admins.yaml", OPS)
    env = {"OPS_PASSWORD": "ops-secret-2"}
    assert reconcile(cluster, "apply", "--auto-approve", str(tmp_path), env=env).code == 0
    odd = cluster.nodes[1]
    assert http.put(f"{cluster.url}/_node/{odd}/_config/admins/ops", json="set-by-hand").status_code == 200
    # CouchDB hashes a plaintext admin asynchronously (docs/couchdb.md): a plan read during that moment is
    # rightly stale by apply time, so plan once the hand-set value has settled, as it has on a real server.
    wait_for(lambda: admin_values(cluster, http, "ops")[odd] != "set-by-hand", "the hand-set admin to be hashed")
    plan_file = tmp_path.parent / "admins.plan.json"

    planned = reconcile(cluster, "plan", "--out", str(plan_file), str(tmp_path), env=env)

    assert "~ server_admin/ops" in planned.stdout
    assert "password: (sensitive, will change)" in planned.stdout
    assert odd in planned.stdout
    assert not any(node in planned.stdout for node in cluster.nodes if node != odd)
    assert not any("_session" in path for path in planned.paths())
    assert reconcile(cluster, "apply", "--auto-approve", str(plan_file), env=env).code == 0
    values = admin_values(cluster, http, "ops")
    assert len(set(values.values())) == 1 and hash_verifies(values[odd], "ops-secret-2")
    assert_no_secret(["ops-secret-2", "set-by-hand"], planned.stdout, planned.stderr, plan_file.read_text())


def test_rotated_secret_changes_the_hash_on_every_node(cluster, http, tmp_path):
    write(tmp_path, "admins.yaml", OPS)
    assert reconcile(cluster, "apply", "--auto-approve", str(tmp_path), env={"OPS_PASSWORD": "before"}).code == 0

    planned = reconcile(cluster, "plan", str(tmp_path), env={"OPS_PASSWORD": "after"})
    applied = reconcile(cluster, "apply", "--auto-approve", str(tmp_path), env={"OPS_PASSWORD": "after"})

    assert "Plan: 0 to add, 1 to change, 0 to destroy." in planned.stdout
    assert applied.code == 0, applied.stderr
    values = admin_values(cluster, http, "ops")
    assert len(set(values.values())) == 1 and hash_verifies(values[cluster.nodes[2]], "after")


def test_deleting_needs_opt_in_and_never_touches_the_connected_admin(cluster, http, tmp_path):
    write(tmp_path, "admins.yaml", OPS)
    assert reconcile(cluster, "apply", "--auto-approve", str(tmp_path), env={"OPS_PASSWORD": "x1"}).code == 0
    stop_declaring_ops(tmp_path)

    without = reconcile(cluster, "plan", str(tmp_path))
    with_opt_in = reconcile(cluster, "apply", "--auto-approve", "--allow-delete", str(tmp_path))

    assert "server_admin" not in without.stdout
    assert "- server_admin/ops" in with_opt_in.stdout
    assert f"server_admin/{cluster.admin[0]}" not in with_opt_in.stdout
    assert set(admin_values(cluster, http, "ops").values()) == {None}
    assert None not in admin_values(cluster, http, cluster.admin[0]).values()


def test_only_admins_this_tool_created_are_deleted_and_only_with_the_opt_in(cluster, http, tmp_path):
    """Issue 5 / the CEO's rule: deletion only touches objects this tool manages. A server admin has no
    document to mark, so the tool records the admins it creates in each node's config
    (`[couch_reconciler_admins] NAME`); an admin added by hand, not recorded there, is never pruned."""
    for node in cluster.nodes:
        assert http.put(f"{cluster.url}/_node/{node}/_config/admins/by-hand", json="hand-pw").status_code == 200
    write(tmp_path, "admins.yaml", OPS)
    assert reconcile(cluster, "apply", "--auto-approve", str(tmp_path), env={"OPS_PASSWORD": "x2"}).code == 0
    markers = {node: http.get(f"{cluster.url}/_node/{node}/_config/couch_reconciler_admins").json()
               for node in cluster.nodes}
    assert markers == {node: {"ops": "couch-reconciler"} for node in cluster.nodes}
    stop_declaring_ops(tmp_path)

    without = reconcile(cluster, "apply", "--auto-approve", str(tmp_path))
    kept = admin_values(cluster, http, "ops")
    with_opt_in = reconcile(cluster, "apply", "--auto-approve", "--allow-delete", str(tmp_path))

    assert without.code == 0 and "server_admin" not in without.stdout
    assert None not in kept.values()
    assert with_opt_in.code == 0, with_opt_in.stderr
    assert "- server_admin/ops" in with_opt_in.stdout and "by-hand" not in with_opt_in.stdout
    assert set(admin_values(cluster, http, "ops").values()) == {None}
    assert None not in admin_values(cluster, http, "by-hand").values()
    assert all(http.get(f"{cluster.url}/_node/{node}/_config/couch_reconciler_admins").json() == {}
               for node in cluster.nodes)
    for node in cluster.nodes:
        http.delete(f"{cluster.url}/_node/{node}/_config/couch_peruser/delete_dbs")


def test_the_connected_admin_is_fixed_with_its_own_password_but_never_changed_mid_run(cluster, http, tmp_path):
    name, password = cluster.admin
    write(tmp_path, "admins.yaml", f"""
        apiVersion: reconciler/v1
        kind: ServerAdmin
        metadata: {{name: {name}}}
        spec:
          password: env:ADMIN_PASSWORD
        """)
    before = admin_values(cluster, http, name)

    changed = reconcile(cluster, "apply", "--auto-approve", str(tmp_path), env={"ADMIN_PASSWORD": "new-admin-pw"})
    same = reconcile(cluster, "apply", "--auto-approve", str(tmp_path), env={"ADMIN_PASSWORD": password})

    assert changed.code == 1
    assert changed.stderr.strip().startswith(f"server_admin/{name}: reconcile is connected as this admin")
    assert [method for method, _, _ in changed.sent if method == "PUT"] == []
    assert same.code == 0, same.stderr
    values = admin_values(cluster, http, name)
    assert len(set(values.values())) == 1 and hash_verifies(values[cluster.nodes[0]], password)
    # Nodes that each hashed the password themselves hold different hashes: then one hash is written to all. A
    # cluster joined by `/_cluster_setup` finish_cluster already holds one hash everywhere (src/setup/src/setup.erl
    # finish_cluster/1 -> sync_admins/0 copies them to every node): then nothing is.
    assert (values != before) == (len(set(before.values())) > 1)
    # A real cluster's admin may have her name as her password (admin/admin), and the output names her.
    secrets = ["new-admin-pw"] + ([password] if password not in name else [])
    assert_no_secret(secrets, changed.stdout, changed.stderr, same.stdout, same.stderr)


def test_a_server_admin_on_the_server_under_test_including_a_real_one(couch, unique, request, tmp_path):
    """The same behaviour on the `couch` fixture, so it also runs against COUCHDB_URL; the admin is removed."""
    http = couch.session()
    name = unique("ops")
    nodes = http.get(f"{couch.url}/_membership").json()["cluster_nodes"]
    request.addfinalizer(lambda: [http.delete(f"{couch.url}/_node/{node}/_config/{section}/{name}")
                                  for node in nodes for section in ("admins", "couch_reconciler_admins")])
    write(tmp_path, "admins.yaml", f"""
        apiVersion: reconciler/v1
        kind: ServerAdmin
        metadata: {{name: {name}}}
        spec:
          password: env:OPS_PASSWORD
        """)

    applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path), env={"OPS_PASSWORD": "real-ops-pw"})

    assert applied.code == 0, applied.stderr
    values = {http.get(f"{couch.url}/_node/{node}/_config/admins/{name}").json() for node in nodes}
    assert len(values) == 1 and hash_verifies(values.pop(), "real-ops-pw")
    assert http.get(f"{couch.url}/_node/_local/_config/admins", auth=(name, "real-ops-pw")).status_code == 200
    assert "No changes" in reconcile(couch, "plan", str(tmp_path), env={"OPS_PASSWORD": "real-ops-pw"}).stdout


def test_a_saved_plan_is_checked_with_one_read_of_the_nodes_config(cluster, http, tmp_path):
    """`apply PLANFILE` re-reads what the plan touches before writing; config keys and server admins both live
    in `/_node/{node}/_config`, so that check reads `/_membership` and each node's config once, not per kind."""
    write(tmp_path, "admins.yaml", OPS + "---" + PERUSER)
    for node in cluster.nodes:  # an update: writing it needs no read of the nodes, a creation would
        http.put(f"{cluster.url}/_node/{node}/_config/couch_peruser/delete_dbs", json="true")
    plan_file = tmp_path.parent / "admins-and-config.plan.json"
    env = {"OPS_PASSWORD": "ops-secret-3"}
    assert reconcile(cluster, "plan", "--out", str(plan_file), str(tmp_path), env=env).code == 0

    applied = reconcile(cluster, "apply", "--auto-approve", str(plan_file), env=env)

    assert applied.code == 0, applied.stderr
    first_write = next(index for index, (method, _, _) in enumerate(applied.sent) if method != "GET")
    checked = [unquote(url.removeprefix(cluster.url)) for _, url, _ in applied.sent[:first_write]]
    assert sorted(checked) == sorted(["/_membership"] + [f"/_node/{node}/_config" for node in cluster.nodes])
    for node in cluster.nodes:
        http.delete(f"{cluster.url}/_node/{node}/_config/couch_peruser/delete_dbs")
