"""Design-document JavaScript as CouchDB 3.x runs it: validate_doc_update on every write path, map/reduce views
over HTTP, the compile check at design-doc PUT, CommonJS require, `_info`.

Sources: facts "Bulk reads" (compilation_error at PUT, a runtime error in a map emits nothing); recorded
exchanges "views ddoc" to "ddoc info"; couch_mrview.erl (validate), couch_mrview_util.erl (validate_args
messages), couch_query_servers.erl (try_compile wording, validate_doc_update), share/server/util.js (require).
"""

from urllib.parse import quote

import pytest

from waiting import ONE_COPY


def db_url(name, *rest):
    return "/" + "/".join([quote(name, safe="")] + [quote(part, safe="/") for part in rest])


class Client:
    """Requests relative to the server root, as one identity."""

    def __init__(self, couch, auth):
        self.url = couch.url
        self.http = couch.session()
        self.http.auth = auth

    def __getattr__(self, method):
        return lambda path, **kw: self.http.request(method.upper(), self.url + path, timeout=30, **kw)


class Server:
    def __init__(self, couch):
        self.couch = couch
        self.admin_name = couch.user
        self.admin = Client(couch, couch.admin)


@pytest.fixture
def server(couch):
    return Server(couch)


@pytest.fixture
def db(server, unique):
    name = unique("js")
    assert server.admin.put(db_url(name), params=ONE_COPY).status_code == 201
    yield name
    server.admin.delete(db_url(name))


@pytest.fixture
def new_user(server, unique):
    def make(roles):
        name = unique("u")
        doc = {"_id": f"org.couchdb.user:{name}", "name": name, "type": "user", "roles": roles, "password": "pw"}
        assert server.admin.put("/_users/" + quote(doc["_id"], safe=":"), json=doc).status_code == 201
        return Client(server.couch, (name, "pw"))
    return make

VALIDATING_DDOC = {
    "validate_doc_update": (
        "function(newDoc, oldDoc, userCtx, secObj) {"
        "  if (newDoc.forbid) throw({forbidden: 'no ' + userCtx.name});"
        "  if (newDoc.unauth) throw({unauthorized: 'who are you'});"
        "  if (oldDoc && oldDoc.frozen && !newDoc._deleted) throw({forbidden: 'frozen since ' + oldDoc._rev.split('-')[0]});"
        "}"
    ),
}


def answer(response):
    return response.status_code, response.json()


def test_validation_refuses_writes_with_403_and_401(server, db):
    """Recorded "vdu forbidden" / "vdu unauthorized"; couch_query_servers:validate_doc_update maps the thrown objects."""
    assert server.admin.put(db_url(db, "_design/v"), json=VALIDATING_DDOC).status_code == 201
    assert answer(server.admin.put(db_url(db, "a"), json={"forbid": True})) == (403, {"error": "forbidden", "reason": f"no {server.admin_name}"})
    assert answer(server.admin.put(db_url(db, "b"), json={"unauth": True})) == (401, {"error": "unauthorized", "reason": "who are you"})
    assert server.admin.get(db_url(db, "a")).status_code == 404


def test_validation_sees_the_stored_doc(server, db):
    assert server.admin.put(db_url(db, "_design/v"), json=VALIDATING_DDOC).status_code == 201
    created = server.admin.put(db_url(db, "f"), json={"frozen": True}).json()
    refused = server.admin.put(db_url(db, "f"), json={"_rev": created["rev"], "frozen": False})
    assert answer(refused) == (403, {"error": "forbidden", "reason": "frozen since 1"})


def test_validation_in_bulk_refuses_only_the_bad_doc(server, db):
    """Recorded "vdu in bulk": the refused doc gets an error row, the others are written."""
    assert server.admin.put(db_url(db, "_design/v"), json=VALIDATING_DDOC).status_code == 201
    response = server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [{"_id": "z1", "forbid": True}, {"_id": "z2"}]})
    assert response.status_code == 201
    rows = response.json()
    assert rows[0] == {"id": "z1", "error": "forbidden", "reason": f"no {server.admin_name}"}
    assert rows[1]["ok"] is True and rows[1]["id"] == "z2"


def test_map_syntax_error_is_refused_at_put(server, db):
    """Facts: "A map function with a syntax error is refused at design-doc PUT (400 compilation_error)";
    couch_query_servers:try_compile words the reason."""
    response = server.admin.put(db_url(db, "_design/bad"), json={"views": {"v": {"map": "function(doc) { emit(doc._id, }"}}})
    assert response.status_code == 400
    assert response.json()["error"] == "compilation_error"
    assert response.json()["reason"].startswith("Compilation of the map function in the 'v' view failed: ")
    assert server.admin.get(db_url(db, "_design/bad")).status_code == 404


def test_unknown_builtin_reduce_is_refused_at_put(server, db):
    """couch_mrview:validate: "`_median` is not a supported reduce function." (invalid_design_doc)."""
    response = server.admin.put(db_url(db, "_design/bad"), json={"views": {"v": {"map": "function(d){}", "reduce": "_median"}}})
    assert answer(response) == (400, {"error": "invalid_design_doc", "reason": "`_median` is not a supported reduce function."})


def test_runtime_error_in_map_emits_nothing_for_that_doc(server, db):
    """Facts: "a runtime error in a map silently emits nothing"."""
    server.admin.put(db_url(db, "_design/d"), json={"views": {"v": {"map": "function(doc) { emit(doc.a.b, 1); }"}}})
    server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [{"_id": "bad"}, {"_id": "good", "a": {"b": "k"}}]})
    body = server.admin.get(db_url(db, "_design/d", "_view", "v")).json()
    assert (body["total_rows"], body["rows"]) == (1, [{"id": "good", "key": "k", "value": 1}])


def test_views_follow_writes_and_deletes(server, db):
    server.admin.put(db_url(db, "_design/d"), json={"views": {"by_type": {"map": "function(doc) { emit(doc.type, 1); }", "reduce": "_count"}}})
    a = server.admin.put(db_url(db, "a"), json={"type": "x"}).json()
    server.admin.put(db_url(db, "b"), json={"type": "y"})
    view = db_url(db, "_design/d", "_view", "by_type")
    assert server.admin.get(view, params={"group": "true"}).json()["rows"] == [{"key": "x", "value": 1}, {"key": "y", "value": 1}]
    server.admin.delete(db_url(db, "a"), params={"rev": a["rev"]})
    server.admin.put(db_url(db, "c"), json={"type": "y"})
    assert server.admin.get(view, params={"group": "true"}).json()["rows"] == [{"key": "y", "value": 2}]


def test_view_query_parameters(server, db):
    server.admin.put(db_url(db, "_design/d"), json={"views": {"ids": {"map": "function(doc) { emit(doc._id, null); }"}}})
    server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [{"_id": i} for i in "abcde"]})
    view = db_url(db, "_design/d", "_view", "ids")

    def ids(**params):
        return [row["id"] for row in server.admin.get(view, params=params).json()["rows"]]

    assert ids(startkey='"b"', endkey='"d"') == ["b", "c", "d"]
    assert ids(start_key='"b"', end_key='"d"', inclusive_end="false") == ["b", "c"]
    assert ids(descending="true", limit="2") == ["e", "d"]
    assert ids(skip="3") == ["d", "e"]
    body = server.admin.post(view, json={"keys": ["e", "nope", "a"]}).json()
    assert [row["id"] for row in body["rows"]] == ["e", "a"]


def test_view_parameter_errors(server, db):
    """couch_mrview_util:validate_args messages, 400 query_parse_error."""
    server.admin.put(db_url(db, "_design/d"), json={"views": {
        "ids": {"map": "function(doc) { emit(doc._id, null); }"},
        "n": {"map": "function(doc) { emit(doc._id, 1); }", "reduce": "_sum"}}})
    assert answer(server.admin.get(db_url(db, "_design/d", "_view", "ids"), params={"group": "true"})) == (
        400, {"error": "query_parse_error", "reason": "Invalid use of grouping on a map view."})
    assert answer(server.admin.get(db_url(db, "_design/d", "_view", "n"), params={"include_docs": "true"})) == (
        400, {"error": "query_parse_error", "reason": "`include_docs` is invalid for reduce"})
    assert answer(server.admin.post(db_url(db, "_design/d", "_view", "n"), json={"keys": ["a", "b"]})) == (
        400, {"error": "query_parse_error", "reason": "Multi-key fetches for reduce views must use `group=true`"})
    assert answer(server.admin.get(db_url(db, "_design/d", "_view", "nope"))) == (
        404, {"error": "not_found", "reason": "missing_named_view"})


def test_views_require_commonjs_modules_from_views_lib(server, db):
    """share/server/state.js: map functions require from {views: {lib: ddoc.views.lib}}."""
    ddoc = {"views": {
        "lib": {"tags": "exports.tag = function(doc) { return 'tag:' + doc._id; };"},
        "tagged": {"map": "function(doc) { emit(require('views/lib/tags').tag(doc), null); }"},
    }}
    assert server.admin.put(db_url(db, "_design/d"), json=ddoc).status_code == 201
    server.admin.put(db_url(db, "a"), json={})
    assert [row["key"] for row in server.admin.get(db_url(db, "_design/d", "_view", "tagged")).json()["rows"]] == ["tag:a"]


def test_javascript_reduce(server, db):
    ddoc = {"views": {"longest": {
        "map": "function(doc) { emit(doc.g, doc.word.length); }",
        "reduce": "function(keys, values, rereduce) { return Math.max.apply(null, values); }"}}}
    server.admin.put(db_url(db, "_design/d"), json=ddoc)
    server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [{"g": 1, "word": "ab"}, {"g": 1, "word": "abcd"}, {"g": 2, "word": "a"}]})
    view = db_url(db, "_design/d", "_view", "longest")
    assert server.admin.get(view).json()["rows"] == [{"key": None, "value": 4}]
    assert server.admin.get(view, params={"group": "true"}).json()["rows"] == [{"key": 1, "value": 4}, {"key": 2, "value": 1}]


def test_design_info(server, db):
    """Recorded "ddoc info": top-level keys name and view_index."""
    server.admin.put(db_url(db, "_design/d"), json={"views": {"v": {"map": "function(doc) { emit(null, 1); }"}}})
    response = server.admin.get(db_url(db, "_design/d", "_info"))
    assert response.status_code == 200
    assert response.json()["name"] == "d"
    assert {"signature", "language", "update_seq", "sizes"} <= response.json()["view_index"].keys()


@pytest.mark.parametrize("reader", ["member", "non_member"])
def test_view_reads_follow_database_security(server, db, new_user, reader):
    """Views are document reads: members may query (chttpd_auth_request db_authorization_check), others get 403."""
    user = new_user(["readers"] if reader == "member" else [])
    server.admin.put(db_url(db, "_security"), json={"members": {"roles": ["readers"]}})
    server.admin.put(db_url(db, "_design/d"), json={"views": {"v": {"map": "function(doc) { emit(null, 1); }"}}})
    status = user.get(db_url(db, "_design/d", "_view", "v")).status_code
    assert status == (200 if reader == "member" else 403)


def test_changes_filtered_by_a_design_doc_filter(server, db):
    """chttpd_db:handle_changes_req with filter=ddoc/name runs filters[name](doc, req); req.query carries the
    request's parameters (couch_httpd_external:json_req_obj)."""
    server.admin.put(db_url(db, "_design/f"), json={"filters": {
        "typed": "function(doc, req) { return doc.type == req.query.type; }"}})
    server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [{"_id": "a", "type": "x"}, {"_id": "b", "type": "y"}]})
    response = server.admin.get(db_url(db, "_changes"), params={"filter": "f/typed", "type": "x"})
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == ["a"]


def test_design_docs_are_checked_on_every_write_path_and_skip_validation_functions(server, db, new_user):
    """couch_db:validate_doc_update/3: a design doc is checked by the db-admin rule, then validate_ddoc (views
    compile), and never by validate_doc_update functions; the same for _bulk_docs as for PUT."""
    strict = {"validate_doc_update": "function(doc) { if (!doc.type) throw({forbidden: 'type required'}); }"}
    assert server.admin.put(db_url(db, "_design/strict"), json=strict).status_code == 201
    assert server.admin.put(db_url(db, "_design/other"), json={"views": {}}).status_code == 201
    bad = {"_id": "_design/bad", "views": {"v": {"map": "function(doc) { emit( }"}}}
    rows = server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [bad]}).json()
    assert rows[0]["error"] == "compilation_error" and rows[0]["id"] == "_design/bad"
    member = new_user(["writers"])
    server.admin.put(db_url(db, "_security"), json={"members": {"roles": ["writers"]}})
    refused = member.put(db_url(db, "_design/bad"), json={"views": bad["views"]})
    assert refused.status_code == 403


def test_changes_filtered_by_a_view(server, db):
    """couch_changes:configure_filter("_view"): a change passes when the view's map emits for the doc."""
    server.admin.put(db_url(db, "_design/d"), json={"views": {"typed": {"map": "function(doc) { if (doc.type == 'x') emit(doc._id, null); }"}}})
    server.admin.post(db_url(db, "_bulk_docs"), json={"docs": [{"_id": "a", "type": "x"}, {"_id": "b", "type": "y"}]})
    response = server.admin.get(db_url(db, "_changes"), params={"filter": "_view", "view": "d/typed"})
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == ["a"]
    assert answer(server.admin.get(db_url(db, "_changes"), params={"filter": "_view"})) == (
        400, {"error": "bad_request", "reason": "`view` filter parameter is not provided."})


def test_map_functions_see_conflicts_and_local_seq_on_request(server, db):
    """couch_index_updater opens docs with [conflicts, deleted_conflicts] (+ local_seq when the design doc's
    options.local_seq is true): the classic conflicts view."""
    server.admin.put(db_url(db, "_design/c"), json={"options": {"local_seq": True}, "views": {
        "conflicts": {"map": "function(doc) { if (doc._conflicts) emit(doc._id, doc._conflicts.length); }"},
        "seqs": {"map": "function(doc) { emit(doc._id, typeof doc._local_seq); }"}}})
    server.admin.post(db_url(db, "_bulk_docs"), json={"new_edits": False, "docs": [
        {"_id": "a", "_rev": "1-aaaa", "v": 1}, {"_id": "a", "_rev": "1-bbbb", "v": 2}]})
    assert server.admin.get(db_url(db, "_design/c", "_view", "conflicts")).json()["rows"] == [{"id": "a", "key": "a", "value": 1}]
    assert server.admin.get(db_url(db, "_design/c", "_view", "seqs")).json()["rows"] == [{"id": "a", "key": "a", "value": "number"}]
