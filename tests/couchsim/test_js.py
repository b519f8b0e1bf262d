"""couchsim's JavaScript query server (couch_reconciler/couchsim/js.py) on QuickJS, as CouchDB 3.4 runs design documents.

Sources: apache/couchdb share/server/{util,views,validate,filter,state}.js, src/couch_quickjs (the
patch that makes a top-level anonymous ``function(doc){}`` an expression), and
src/couch/src/couch_query_servers.erl (``try_compile`` wording, ``validate_doc_update`` mapping).
"""

import logging

import pytest

from couch_reconciler.couchsim.js import (
    CompilationError,
    DesignSandbox,
    DesignSandboxes,
    Forbidden,
    InvalidDesignDoc,
    JavaScriptError,
    QueryServerError,
    Unauthorized,
)

# The design document of the recorded exchange "views ddoc" (couchdb-3.4.3-exchanges.jsonl).
DASH = {
    "_id": "_design/dash",
    "views": {
        "by_day": {"map": "function(d){ if(d.day) emit([d.user, d.day], d.n); }", "reduce": "_sum"},
        "count": {"map": "function(d){ emit(d.type || null, 1); }", "reduce": "_count"},
    },
    "validate_doc_update": "function(newDoc, oldDoc, userCtx, secObj){ if (newDoc.forbid) throw({forbidden: 'no ' + userCtx.name}); if (newDoc.unauth) throw({unauthorized: 'who are you'}); }",
}
ADMIN_CTX = {"db": "rec-views", "name": "admin", "roles": ["_admin"]}


def map_one(source: str, doc: dict, **ddoc_fields) -> list:
    sandbox = DesignSandbox({"_id": "_design/t", "views": {"v": {"map": source}, **ddoc_fields}})
    return sandbox.map_docs(["v"], [doc])[0][0]


def test_map_emits_rows_for_each_view_and_doc():
    rows = DesignSandbox(DASH).map_docs(["by_day", "count"], [
        {"_id": "1", "user": "u1", "day": "2026-01-01", "n": 2, "type": "a"},
        {"_id": "z2"},
    ])
    assert rows == [
        [[[["u1", "2026-01-01"], 2]], [["a", 1]]],
        [[], [[None, 1]]],
    ]


@pytest.mark.parametrize("source", [
    "function(doc) { emit(doc._id, 1); }",
    "function (doc) { emit(doc._id, 1); };",
    "  // leading comment\n/* block */ function(doc) {\n emit(doc._id, 1);\n}",
    "(function(doc) { emit(doc._id, 1); })",
    "(doc) => { emit(doc._id, 1); }",
])
def test_function_forms_couchjs_accepts(source):
    """couchjs on QuickJS evaluates the source as a script whose value must be a function."""
    assert map_one(source, {"_id": "a"}) == [["a", 1]]


def test_runtime_error_in_map_emits_nothing_for_that_doc_only():
    """views.js mapDoc: an exception is logged and the doc contributes no rows to that view."""
    sandbox = DesignSandbox({"_id": "_design/t", "views": {
        "v": {"map": "function(doc){ emit(doc.a.b, 1); }"},
        "w": {"map": "function(doc){ emit(doc._id, null); }"},
    }})
    assert sandbox.map_docs(["v", "w"], [{"_id": "x"}, {"_id": "y", "a": {"b": 2}}]) == [
        [[], [["x", None]]],
        [[[2, 1]], [["y", None]]],
    ]


def test_map_cannot_alter_the_doc_the_next_function_sees():
    sandbox = DesignSandbox({"_id": "_design/t", "views": {
        "v": {"map": "function(doc){ doc.n = 99; emit(doc.n, null); }"},
        "w": {"map": "function(doc){ emit(doc.n, null); }"},
    }})
    assert sandbox.map_docs(["v", "w"], [{"_id": "x", "n": 1}]) == [[[[1, None]], [[1, None]]]]


def test_sandbox_helpers(caplog):
    caplog.set_level(logging.INFO, logger="couch_reconciler.couchsim.js")
    assert map_one("function(doc){ emit(sum(doc.xs), isArray(doc.xs)); emit(toJSON(doc.o), isArray(doc.o)); log(doc); }",
                   {"_id": "x", "xs": [1, 2, 3], "o": {"k": 1}}) == [[6, True], ['{"k":1}', False]]
    assert "{\"_id\":\"x\",\"xs\":[1,2,3],\"o\":{\"k\":1}}" in caplog.text


def test_require_from_views_lib_with_relative_paths():
    """Map functions require modules from ``views.lib`` (state.js roots require at {views: {lib}})."""
    lib = {"util": "var c = require('./consts'); exports.tag = function(d){ return c.prefix + d._id; };",
           "consts": "exports.prefix = 'id:';"}
    assert map_one("function(doc){ emit(require('views/lib/util').tag(doc), 1); }", {"_id": "a"}, lib=lib) == [["id:a", 1]]


def test_require_of_a_missing_module_fails_the_map_for_that_doc():
    assert map_one("function(doc){ emit(require('views/lib/nope'), 1); }", {"_id": "a"}, lib={}) == []


def test_validation_forbidden_and_unauthorized_as_recorded():
    """Exchanges "vdu forbidden" (403 "no admin") and "vdu unauthorized" (401 "who are you")."""
    sandbox = DesignSandbox(DASH)
    with pytest.raises(Forbidden) as forbidden:
        sandbox.validate({"_id": "x", "forbid": True}, None, ADMIN_CTX, {})
    assert (forbidden.value.status, forbidden.value.error, forbidden.value.reason) == (403, "forbidden", "no admin")
    with pytest.raises(Unauthorized) as unauthorized:
        sandbox.validate({"_id": "y", "unauth": True}, None, ADMIN_CTX, {})
    assert (unauthorized.value.status, unauthorized.value.reason) == (401, "who are you")
    sandbox.validate({"_id": "z2"}, None, ADMIN_CTX, {})


def test_validation_sees_old_doc_and_security_object():
    sandbox = DesignSandbox({"_id": "_design/v", "validate_doc_update": (
        "function(n, o, u, s){ if (o && o.locked) throw({forbidden: 'locked by ' + s.admins.names[0]}); }")})
    sec = {"admins": {"names": ["boss"]}}
    sandbox.validate({"_id": "a"}, None, ADMIN_CTX, sec)
    with pytest.raises(Forbidden, match="locked by boss"):
        sandbox.validate({"_id": "a"}, {"_id": "a", "locked": True}, ADMIN_CTX, sec)


def test_validation_other_throws():
    """couch_query_servers:validate_doc_update: another one-field object or a string is unknown_error;
    a JavaScript exception is reported with its name."""
    sandbox = DesignSandbox({"_id": "_design/v", "validate_doc_update": (
        "function(n){ if (n.s) throw('plain'); if (n.o) throw({nope: 'odd'}); n.missing.field; }")})
    with pytest.raises(QueryServerError) as plain:
        sandbox.validate({"s": 1}, None, ADMIN_CTX, {})
    assert (plain.value.error, plain.value.reason) == ("unknown_error", "plain")
    with pytest.raises(QueryServerError) as odd:
        sandbox.validate({"o": 1}, None, ADMIN_CTX, {})
    assert (odd.value.error, odd.value.reason) == ("unknown_error", "odd")
    with pytest.raises(JavaScriptError) as type_error:
        sandbox.validate({}, None, ADMIN_CTX, {})
    assert type_error.value.error == "TypeError"


def test_validation_can_require_from_the_design_doc():
    sandbox = DesignSandbox({"_id": "_design/v", "lib": {"rules": "exports.max = 2;"},
                             "validate_doc_update": "function(n){ if (n.n > require('lib/rules').max) throw({forbidden: 'too big'}); }"})
    sandbox.validate({"n": 2}, None, ADMIN_CTX, {})
    with pytest.raises(Forbidden, match="too big"):
        sandbox.validate({"n": 3}, None, ADMIN_CTX, {})


def test_filter_runs_over_docs_with_the_request():
    sandbox = DesignSandbox({"_id": "_design/f", "filters": {"big": "function(doc, req){ return doc.n > Number(req.query.min); }"}})
    assert sandbox.filter_docs("big", [{"n": 1}, {"n": 5}], {"query": {"min": "2"}}) == [False, True]


def test_javascript_reduce_and_rereduce():
    sandbox = DesignSandbox({"_id": "_design/r", "views": {"v": {
        "map": "function(d){ emit(d._id, d.n); }",
        "reduce": "function(keys, values, rereduce){ return rereduce ? sum(values) * 10 : sum(values); }"}}})
    assert sandbox.reduce("v", [["a", "a"], ["b", "b"]], [1, 2], False) == 3
    assert sandbox.reduce("v", None, [3, 4], True) == 70


def test_syntax_error_refused_with_couchdb_wording():
    """couch_query_servers:try_compile wraps util.js's reason (QuickJS stack line, then the source)."""
    source = "function(doc) {\n  emit(doc._id, \n}"
    with pytest.raises(CompilationError) as error:
        DesignSandbox({"_id": "_design/t", "views": {"by_id": {"map": source}}}).check_views()
    assert error.value.status == 400
    assert error.value.error == "compilation_error"
    assert error.value.reason == f"Compilation of the map function in the 'by_id' view failed:     at undefined:3\n ({source})"


def test_source_that_is_not_a_function_is_refused():
    with pytest.raises(CompilationError) as error:
        DesignSandbox({"_id": "_design/t", "views": {"v": {"map": "function named(doc) {}"}}}).check_views()
    assert error.value.reason == ("Compilation of the map function in the 'v' view failed: "
                                  "Expression does not eval to a function. (function named(doc) {})")


def test_reduce_compile_check_and_unknown_builtin():
    """couch_mrview:validate compiles JS reduces and refuses unknown built-ins (invalid_design_doc)."""
    with pytest.raises(CompilationError, match="reduce function in the 'v' view failed"):
        DesignSandbox({"_id": "_design/t", "views": {"v": {"map": "function(d){}", "reduce": "function(k, v {"}}}).check_views()
    with pytest.raises(InvalidDesignDoc) as bad:
        DesignSandbox({"_id": "_design/t", "views": {"v": {"map": "function(d){}", "reduce": "_median"}}}).check_views()
    assert bad.value.reason == "`_median` is not a supported reduce function."
    DesignSandbox({"_id": "_design/t", "views": {"v": {"map": "function(d){}", "reduce": "_approx_count_distinct"},
                                                  "lib": {"m": "exports.x = 1"}}}).check_views()


def test_endless_function_is_stopped():
    """CouchDB gives up on a query server past os_process_timeout: "OS process timed out."."""
    sandbox = DesignSandbox({"_id": "_design/t", "views": {"v": {"map": "function(d){ while (true) {} }"}}}, time_limit=0.2)
    with pytest.raises(QueryServerError) as error:
        sandbox.map_docs(["v"], [{"_id": "a"}])
    assert (error.value.error, error.value.reason) == ("os_process_error", "OS process timed out.")


def test_filter_exception_is_reported_with_its_name():
    sandbox = DesignSandbox({"_id": "_design/f", "filters": {"bad": "function(doc){ return doc.a.b; }"}})
    with pytest.raises(JavaScriptError) as error:
        sandbox.filter_docs("bad", [{}], {})
    assert error.value.error == "InternalError" and "TypeError" in error.value.reason


def test_every_design_doc_validates_a_write_and_edits_take_effect():
    """couch_db:validate_doc_update runs the functions of all design docs of the database."""
    sandboxes = DesignSandboxes()
    lenient = {"_id": "_design/a", "_rev": "1-a", "validate_doc_update": "function(n){}"}
    strict = {"_id": "_design/b", "_rev": "1-b", "validate_doc_update": "function(n){ if (!n.ok) throw({forbidden: 'needs ok'}); }"}
    sandboxes.validate([lenient], {"_id": "x"}, None, ADMIN_CTX, {})
    with pytest.raises(Forbidden, match="needs ok"):
        sandboxes.validate([lenient, strict], {"_id": "x"}, None, ADMIN_CTX, {})
    relaxed = {**strict, "_rev": "2-b", "validate_doc_update": "function(n){}"}
    sandboxes.validate([lenient, relaxed], {"_id": "x"}, None, ADMIN_CTX, {})
    assert sandboxes.get(relaxed) is sandboxes.get(relaxed)
