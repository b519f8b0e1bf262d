#!/bin/sh
# Joins couchdb2 and couchdb3 to couchdb1 with /_cluster_setup, the procedure of
# CouchDB's "Cluster Set Up" docs (src/docs/src/setup/cluster.rst): enable_cluster on the
# coordinator, enable_cluster + add_node for each other node, then finish_cluster.
# Idempotent enough to rerun: a node already in the cluster answers 409, which is ignored.
set -eu
COORD="http://couchdb1.cluster:5984"
AUTH="$COUCHDB_USER:$COUCHDB_PASSWORD"

setup() {
  curl -sS -u "$AUTH" -H 'Content-Type: application/json' -X POST "$COORD/_cluster_setup" -d "$1"
  echo
}

setup "{\"action\":\"enable_cluster\",\"bind_address\":\"0.0.0.0\",\"username\":\"$COUCHDB_USER\",\"password\":\"$COUCHDB_PASSWORD\",\"node_count\":\"3\"}"
for node in couchdb2.cluster couchdb3.cluster; do
  setup "{\"action\":\"enable_cluster\",\"bind_address\":\"0.0.0.0\",\"username\":\"$COUCHDB_USER\",\"password\":\"$COUCHDB_PASSWORD\",\"port\":5984,\"node_count\":\"3\",\"remote_node\":\"$node\",\"remote_current_user\":\"$COUCHDB_USER\",\"remote_current_password\":\"$COUCHDB_PASSWORD\"}"
  setup "{\"action\":\"add_node\",\"host\":\"$node\",\"port\":5984,\"username\":\"$COUCHDB_USER\",\"password\":\"$COUCHDB_PASSWORD\"}"
done
setup '{"action":"finish_cluster"}'
curl -sS -u "$AUTH" "$COORD/_membership"
echo
