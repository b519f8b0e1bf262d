"""Server-level endpoints: /, /_up, /_uuids, /_all_dbs, /_membership, /_node/_local, /_active_tasks, database create/delete
and where its shards are.

Each case cites what it relies on: the facts file (docs/couchdb.md), CouchDB source
(apache/couchdb, file and function) or CouchDB's documentation.
"""

import http.client
import json
import re
from urllib.parse import urlsplit

from behaviour_fixtures import NOT_SERVER_ADMIN, answer, db_url


def test_welcome_names_couchdb_3_with_json_headers(server):
    """chttpd_misc:handle_welcome_req (couchdb "Welcome", version, vendor from [vendor]);
    chttpd:maybe_add_default_headers (Content-Type application/json, Cache-Control must-revalidate)."""
    response = server.anon.get("/")
    assert response.status_code == 200
    body = response.json()
    assert body["couchdb"] == "Welcome"
    assert body["version"].startswith("3.")
    assert body["vendor"]["name"]
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "must-revalidate"


def test_root_refuses_other_methods_with_allow_header(server):
    """chttpd_misc:handle_welcome_req -> send_method_not_allowed(Req, "GET,HEAD"); recorded exchange
    "method not allowed on root" gives the body; chttpd:send_method_not_allowed adds the Allow header."""
    response = server.admin.delete("/")
    assert response.status_code == 405
    assert response.json() == {"error": "method_not_allowed", "reason": "Only GET,HEAD allowed"}
    assert response.headers["Allow"] == "GET,HEAD"


def test_up_answers_anonymously(server):
    """chttpd_misc:handle_up_req; recorded exchange "up" ({"status":"ok","seeds":{}} on a single node)."""
    response = server.anon.get("/_up")
    assert answer(response) == (200, {"status": "ok", "seeds": {}})


def test_uuids_are_distinct_hex_and_never_cached(server):
    """couch_httpd_misc_handlers:handle_uuids_req: `count` uuids of 32 hex digits (couch_uuids, random
    algorithm), cache-busting headers (Cache-Control no-cache, Pragma no-cache) and an ETag."""
    response = server.anon.get("/_uuids", params={"count": 5})
    assert response.status_code == 200
    uuids = response.json()["uuids"]
    assert len(uuids) == 5 == len(set(uuids))
    assert all(re.fullmatch(r"[0-9a-f]{32}", uuid) for uuid in uuids)
    # couch_httpd:send_json sends its default "must-revalidate" too; the uuid-specific value is what matters
    assert "no-cache" in [value.strip() for value in response.headers["Cache-Control"].split(",")]
    assert response.headers["Pragma"] == "no-cache"


def test_uuids_send_an_etag(server):
    """couch_httpd_misc_handlers:handle_uuids_req: Etag = couch_httpd:make_etag(UUIDs), sent with the cache-busting headers."""
    assert server.anon.get("/_uuids").headers.get("ETag")


def test_uuids_count_above_max_count_is_refused(server):
    """couch_httpd_misc_handlers:handle_uuids_req: count > [uuids] max_count (default 1000) ->
    400 {"error":"bad_request","reason":"count parameter too large"}."""
    response = server.anon.get("/_uuids", params={"count": 1001})
    assert answer(response) == (400, {"error": "bad_request", "reason": "count parameter too large"})


def _all_dbs(server, **params):
    response = server.admin.get("/_all_dbs", params={k: json.dumps(v) if k.endswith("key") else v
                                                     for k, v in params.items()})
    assert response.status_code == 200, response.text
    return response.json()


def test_all_dbs_pages_by_key_range_limit_skip_and_descending(server, new_db, new_name):
    """chttpd_misc:handle_all_dbs_req (couch_mrview_http:parse_params: start_key, end_key, limit, skip,
    descending, keys JSON-encoded); recorded exchanges "all_dbs range" and "all_dbs skip"."""
    prefix = new_name("alldbs")
    names = sorted(new_db(name=f"{prefix}-{suffix}") for suffix in ("a", "b", "c"))
    window = {"start_key": prefix, "end_key": prefix + "\ufff0"}
    assert _all_dbs(server, **window) == names
    assert _all_dbs(server, **window, limit=2) == names[:2]
    assert _all_dbs(server, **window, skip=1, limit=1) == names[1:2]
    assert _all_dbs(server, start_key=prefix + "\ufff0", end_key=prefix, descending="true") == names[::-1]


def test_all_dbs_lists_system_databases(server):
    """A 3.x node has _users and _replicator (couchdb-exchanges.md: "only _users and _replicator exist" on a fresh server)."""
    response = server.admin.get("/_all_dbs")
    assert response.status_code == 200
    assert {"_users", "_replicator"} <= set(response.json())


def test_all_dbs_sends_an_etag(server):
    """chttpd_misc:handle_all_dbs_info_req: Etag = couch_httpd:make_etag({Info}) of the shards db, sent with the list."""
    assert server.admin.get("/_all_dbs").headers.get("ETag")


def test_all_dbs_is_admin_only_by_default(server, new_user):
    """[chttpd] admin_only_all_dbs = true since 3.0 (rel/overlay/etc/default.ini); require_admin ->
    couch_httpd:verify_is_server_admin throws {unauthorized, "You are not a server admin."} for anyone else."""
    user = new_user()
    for client in (server.anon, user.client):
        response = client.get("/_all_dbs")
        assert answer(response) == NOT_SERVER_ADMIN


def test_membership_lists_this_node_in_both_lists(server):
    """chttpd_httpd_handlers / mem3_httpd:handle_membership_req: {"all_nodes": [...], "cluster_nodes": [...]};
    facts: "/_membership lists all_nodes and cluster_nodes"; /_node/_local names the answering node (chttpd_node)."""
    membership = server.admin.get("/_membership").json()
    assert set(membership) == {"all_nodes", "cluster_nodes"}
    node = server.node()
    assert node in membership["all_nodes"]
    assert node in membership["cluster_nodes"]


def test_membership_is_admin_only(server):
    """chttpd_auth_request:server_authorization_check: any /_<handler> not listed (e.g. _membership) requires a server admin."""
    response = server.anon.get("/_membership")
    assert answer(response) == NOT_SERVER_ADMIN


def test_node_local_names_the_answering_node(server):
    """chttpd_node:handle_node_req(path_parts = [_, <<"_local">>]) -> {"name": node()}."""
    response = server.admin.get("/_node/_local")
    assert response.status_code == 200
    assert re.fullmatch(r"[^@]+@[^@]+", response.json()["name"])


def test_active_tasks_is_a_list_for_admins_only(server):
    """chttpd_misc:handle_task_status_req: verify_is_server_admin, then a JSON list; recorded exchange "active tasks"."""
    response = server.admin.get("/_active_tasks")
    assert response.status_code == 200 and isinstance(response.json(), list)
    response = server.anon.get("/_active_tasks")
    assert answer(response) == NOT_SERVER_ADMIN


def test_create_database_answers_201_with_location(server, new_name):
    """chttpd_db:create_db_req: 201 {"ok":true} with a Location header naming the new database."""
    name = new_name("create")
    try:
        response = server.admin.put(db_url(name))
        assert answer(response) == (201, {"ok": True})
        assert response.headers["Location"].endswith("/" + name)
        assert server.admin.head(db_url(name)).status_code == 200
    finally:
        server.admin.delete(db_url(name))


def test_create_existing_database_is_412_file_exists(server, db):
    """chttpd:error_info(file_exists) -> 412 "The database could not be created, the file already exists."."""
    response = server.admin.put(db_url(db))
    assert answer(response) == (
        412, {"error": "file_exists", "reason": "The database could not be created, the file already exists."})


def test_illegal_database_name_is_400_with_the_rule(server):
    """couch_db:validate_dbname + chttpd:error_info({illegal_database_name, Name}) ->
    400 illegal_database_name with CouchDB's wording of the naming rule."""
    response = server.admin.put("/Bad-Name")
    assert response.status_code == 400
    assert response.json() == {
        "error": "illegal_database_name",
        "reason": "Name: 'Bad-Name'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.",
    }


def test_database_names_may_hold_slashes_when_escaped(server, new_name):
    """couch_db DBNAME_REGEX allows `/`; the name travels escaped as %2F (CouchDB docs, API -> Database, "/{db}")."""
    name = new_name("sl") + "/inner"
    try:
        assert server.admin.put(db_url(name)).status_code == 201
        info = server.admin.get(db_url(name)).json()
        assert info["db_name"] == name
    finally:
        server.admin.delete(db_url(name))


def test_only_server_admins_create_and_delete_databases(server, new_user, new_name, db):
    """chttpd_auth_request:authorize_request_int: PUT and DELETE /{db} require_admin ->
    401 "You are not a server admin." for anonymous and for authenticated non-admins alike."""
    user = new_user()
    for client in (server.anon, user.client):
        assert answer(client.put(db_url(new_name("nope")))) == NOT_SERVER_ADMIN
        assert answer(client.delete(db_url(db))) == NOT_SERVER_ADMIN


def test_missing_database_is_404_database_does_not_exist(server, new_name):
    """chttpd:error_info({not_found, no_db_file}) -> 404 "Database does not exist."; recorded exchange "delete rec-b again"."""
    response = server.admin.get(db_url(new_name("missing")))
    assert answer(response) == (404, {"error": "not_found", "reason": "Database does not exist."})


def test_database_info_counts_docs_and_deletions(server, db):
    """chttpd_db:db_req GET /{db} -> fabric:get_db_info: doc_count counts live docs, doc_del_count deleted ones."""
    rev = server.admin.put(db_url(db, "a"), json={}).json()["rev"]
    server.admin.put(db_url(db, "b"), json={})
    server.admin.delete(db_url(db, "a"), params={"rev": rev})
    info = server.admin.get(db_url(db)).json()
    assert (info["db_name"], info["doc_count"], info["doc_del_count"]) == (db, 1, 1)


def test_create_database_with_q_and_partitioned(server, new_name):
    """chttpd_db:create_db_req reads q, n and partitioned; GET /{db} reports cluster.q and props.partitioned
    (CouchDB docs, API -> Database -> PUT /{db})."""
    name = new_name("part")
    try:
        assert server.admin.put(db_url(name), params={"q": 2, "partitioned": "true"}).status_code == 201
        info = server.admin.get(db_url(name)).json()
        assert info["cluster"]["q"] == 2
        assert info["props"] == {"partitioned": True}
    finally:
        server.admin.delete(db_url(name))


def test_shards_map_ranges_to_nodes_and_a_document_to_its_range(server, new_db):
    """mem3_httpd:handle_shards_req/2 (CouchDB docs, API -> Database -> /{db}/_shards): the q ranges of the hash
    ring (mem3_util:make_key_ranges/3), each with the nodes holding a copy; `/_shards/{docid}` names the range
    and nodes of the shard that holds the document. n is at most the node count, so with n = 3 on three nodes
    (or 1 on one) every copy is on every node; POST is 405 "Only GET allowed"."""
    nodes = server.admin.get("/_membership").json()["cluster_nodes"]
    db = new_db(q="4")
    shards = server.admin.get(db_url(db, "_shards")).json()["shards"]
    assert sorted(shards) == ["00000000-3fffffff", "40000000-7fffffff", "80000000-bfffffff", "c0000000-ffffffff"]
    copies = server.admin.get(db_url(db)).json()["cluster"]["n"]
    assert all(len(holders) == min(copies, len(nodes)) and set(holders) <= set(nodes) for holders in shards.values())
    ranges = {server.admin.get(db_url(db, "_shards", f"doc-{i}")).json()["range"] for i in range(20)}
    assert ranges <= set(shards) and len(ranges) > 1
    located = server.admin.get(db_url(db, "_shards", "doc-0")).json()
    assert located["nodes"] == shards[located["range"]]
    refused = server.admin.post(db_url(db, "_shards"), json={})
    assert answer(refused) == (405, {"error": "method_not_allowed", "reason": "Only GET allowed"})


def test_http_1_1_keep_alive(server):
    """Issue 3, HTTP: HTTP/1.1 keep-alive (mochiweb keeps connections open): two requests travel over one socket."""
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request("GET", "/_up")
        first = connection.getresponse()
        first.read()
        socket_used = connection.sock
        connection.request("GET", "/")
        second = connection.getresponse()
        second.read()
        assert (first.version, first.status, second.status) == (11, 200, 200)
        assert socket_used is not None and connection.sock is socket_used
    finally:
        connection.close()
