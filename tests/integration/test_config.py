"""Node config on a 3-node cluster: every node read once, drift shown per node, other keys left alone.

Relied on: docs/couchdb.md ("Config": `/_node/{node}/_config` takes only JSON
strings, an unset key reads 404, config is per node, `/_membership` lists cluster_nodes) and
apache/couchdb src/chttpd/src/chttpd_cors.erl via couch_reconciler/kinds/cors.py (CORS lives in
[chttpd] enable_cors and the [cors] section).
"""

from __future__ import annotations

from reconcile_runner import config_changed, reconcile, write

PERUSER = """
    apiVersion: reconciler/v1
    kind: NodeConfig
    metadata: {name: peruser}
    spec:
      section: couch_peruser
      values: {enable: true, delete_dbs: false}
    """


def value(cluster, http, node: str, section: str, key: str) -> str | None:
    answer = http.get(f"{cluster.url}/_node/{node}/_config/{section}/{key}")
    return answer.json() if answer.status_code == 200 else None


def test_apply_sets_every_node_and_a_second_plan_is_empty(cluster, http, tmp_path):
    write(tmp_path, "config.yaml", PERUSER)

    applied = reconcile(cluster, "apply", "--auto-approve", str(tmp_path))

    assert applied.code == 0, applied.stderr
    for node in cluster.nodes:
        assert value(cluster, http, node, "couch_peruser", "enable") == "true"
        assert value(cluster, http, node, "couch_peruser", "delete_dbs") == "false"
    again = reconcile(cluster, "plan", "--detailed-exitcode", str(tmp_path))
    assert again.code == 0 and "No changes" in again.stdout
    config_reads = [url for method, url, _ in again.sent if method == "GET" and url.endswith("/_config")]
    assert len(config_reads) == 3  # once per node for the whole plan


def test_drift_on_one_node_is_shown_for_that_node_and_fixed_there_only(cluster, http, tmp_path):
    write(tmp_path, "config.yaml", PERUSER)
    assert reconcile(cluster, "apply", "--auto-approve", str(tmp_path)).code == 0
    odd = cluster.nodes[1]
    assert http.put(f"{cluster.url}/_node/{odd}/_config/couch_peruser/enable", json="false").status_code == 200

    planned = reconcile(cluster, "plan", str(tmp_path))
    applied = reconcile(cluster, "apply", "--auto-approve", str(tmp_path))

    assert "~ config/couch_peruser/enable" in planned.stdout
    assert f'{odd}: "false" -> "true"' in planned.stdout
    assert not any(node in planned.stdout for node in cluster.nodes if node != odd)
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in planned.stdout
    writes = [url for method, url, _ in applied.sent if method == "PUT"]
    assert writes == [f"{cluster.url}/_node/{odd.replace('@', '%40')}/_config/couch_peruser/enable"]
    assert value(cluster, http, odd, "couch_peruser", "enable") == "true"


def test_keys_no_manifest_names_are_left_alone_even_with_allow_delete(cluster, http, tmp_path):
    node = cluster.nodes[0]
    assert http.put(f"{cluster.url}/_node/{node}/_config/log/level", json="debug").status_code == 200
    write(tmp_path, "config.yaml", PERUSER)

    applied = reconcile(cluster, "apply", "--auto-approve", "--allow-delete", str(tmp_path))

    assert applied.code == 0, applied.stderr
    assert "log/level" not in applied.stdout
    assert value(cluster, http, node, "log", "level") == "debug"


def test_null_unsets_a_key_on_the_nodes_holding_it(cluster, http, tmp_path):
    for node in cluster.nodes[:2]:
        assert http.put(f"{cluster.url}/_node/{node}/_config/couchdb/default_security",
                        json="everyone").status_code == 200
    write(tmp_path, "config.yaml", """
        apiVersion: reconciler/v1
        kind: NodeConfig
        metadata: {name: security}
        spec:
          section: couchdb
          values: {default_security: null}
        """)

    planned = reconcile(cluster, "plan", str(tmp_path))
    applied = reconcile(cluster, "apply", "--auto-approve", str(tmp_path))

    assert f'{cluster.nodes[0]}: "everyone" -> null' in planned.stdout
    assert cluster.nodes[2] not in planned.stdout
    assert applied.code == 0, applied.stderr
    assert [value(cluster, http, node, "couchdb", "default_security") for node in cluster.nodes] == [None] * 3
    assert "No changes" in reconcile(cluster, "plan", str(tmp_path)).stdout


def test_a_node_list_writes_only_those_nodes_and_an_unknown_node_is_one_line(cluster, http, tmp_path):
    last = cluster.nodes[2]
    write(tmp_path, "config.yaml", f"""
        apiVersion: reconciler/v1
        kind: NodeConfig
        metadata: {{name: replicator}}
        spec:
          section: replicator
          values: {{max_jobs: 100}}
          nodes: [{last}]
        """)

    assert reconcile(cluster, "apply", "--auto-approve", str(tmp_path)).code == 0
    assert [value(cluster, http, node, "replicator", "max_jobs") for node in cluster.nodes] == [None, None, "100"]
    (tmp_path / "config.yaml").write_text((tmp_path / "config.yaml").read_text().replace(last, "couchdb@elsewhere"))
    refused = reconcile(cluster, "plan", str(tmp_path))
    assert refused.code == 1
    assert refused.stderr.count("\n") == 1 and "couchdb@elsewhere is not in the cluster" in refused.stderr


def test_cors_reaches_every_node(cluster, http, tmp_path):
    write(tmp_path, "cors.yaml", """
        apiVersion: reconciler/v1
        kind: Cors
        metadata: {name: app}
        spec:
          origins: [https://app.example.com, https://admin.example.com]
          credentials: true
        """)

    applied = reconcile(cluster, "apply", "--auto-approve", str(tmp_path))

    assert applied.code == 0, applied.stderr
    for node in cluster.nodes:
        assert value(cluster, http, node, "chttpd", "enable_cors") == "true"
        assert value(cluster, http, node, "cors", "origins") == "https://app.example.com, https://admin.example.com"
        assert value(cluster, http, node, "cors", "credentials") == "true"
    assert "No changes" in reconcile(cluster, "plan", str(tmp_path)).stdout


def test_config_on_the_server_under_test_including_a_real_one(couch, http, tmp_path):
    """The same behaviour on the `couch` fixture, so it also runs against COUCHDB_URL; the key is restored."""
    node = http.get(f"{couch.url}/_membership").json()["cluster_nodes"][0]
    url = f"{couch.url}/_node/{node}/_config/couch_peruser/delete_dbs"
    with config_changed(http, url, "false"):
        write(tmp_path, "config.yaml", """
            apiVersion: reconciler/v1
            kind: NodeConfig
            metadata: {name: peruser}
            spec:
              section: couch_peruser
              values: {delete_dbs: true}
            """)

        planned = reconcile(couch, "plan", str(tmp_path))
        applied = reconcile(couch, "apply", "--auto-approve", str(tmp_path))

        assert f'{node}: "false" -> "true"' in planned.stdout
        assert applied.code == 0, applied.stderr
        assert http.get(url).json() == "true"
        assert "No changes" in reconcile(couch, "plan", str(tmp_path)).stdout
