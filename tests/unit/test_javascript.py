"""couch_reconciler.javascript: the syntax check a user gets before CouchDB's opaque 400 compilation_error.

What CouchDB 3.4 on QuickJS accepts: apache/couchdb src/couch_quickjs/patches/01-spidermonkey-185-mode.patch
(anonymous top-level function statements are expressions) and share/server/util.js (the value must be a function).
"""

import pytest

from couch_reconciler.javascript import JavaScriptProblem, check_function


@pytest.mark.parametrize("source", [
    "function(doc) { emit(doc._id, 1); }",
    "function (doc) {\n  emit(doc._id, 1);\n};\n",
    "// by type\nfunction(doc) { if (doc.type) emit(doc.type, null); }",
    "(function(doc) { emit(doc._id, null); })",
    "(doc) => emit(doc._id, null)",
    "function(keys, values, rereduce) { return sum(values); }",
])
def test_sources_couchdb_compiles(source):
    assert check_function(source) is None


def test_syntax_error_reports_its_line_and_message():
    problem = check_function("function(doc) {\n  if (doc.type) {\n    emit(doc.type, 1;\n  }\n}")
    assert problem.line == 3
    assert problem.message.startswith("SyntaxError: ")


def test_a_named_function_is_not_a_function_value_for_couchdb():
    assert check_function("function byType(doc) { emit(doc.type, 1); }") == JavaScriptProblem(
        1, "it does not evaluate to a function")


def test_never_ending_top_level_code_is_reported():
    assert check_function("while (true) {}").message.startswith("evaluating it does not finish")
