"""couchsim's view indexes (couch_reconciler/couchsim/views.py) answer as CouchDB 3.x's couch_mrview does.

The first tests replay the view steps of the recorded exchanges (couchdb-3.4.3-exchanges.jsonl,
"views data" to "view include_docs") on the index alone, fed by a stand-in database. Sources for
the rest: couch_mrview_util.erl (validate_args messages, key ranges, inclusive_end), couch_query_servers.erl
(_sum, _count, _stats), the CouchDB documentation "Views Collation" (type order, ICU string order).
"""

import pytest

from couch_reconciler.couchsim.collation import collation_key
from couch_reconciler.couchsim.errors import CouchError
from couch_reconciler.couchsim.js import QueryServerError
from couch_reconciler.couchsim.views import DatabaseViews, DesignIndex, NotFound, QueryParseError, parse_view_query

DASH = {
    "_id": "_design/dash",
    "_rev": "1-a",
    "views": {
        "by_day": {"map": "function(d){ if(d.day) emit([d.user, d.day], d.n); }", "reduce": "_sum"},
        "stats": {"map": "function(d){ if(d.n) emit(d.user, d.n); }", "reduce": "_stats"},
        "count": {"map": "function(d){ emit(d.type || null, 1); }", "reduce": "_count"},
    },
}


class StandInDb:
    """Winning revisions and a changes feed, the two things an index reads."""

    def __init__(self):
        self.seq = 0
        self.latest: dict[str, tuple[int, dict, bool]] = {}

    def put(self, doc: dict, deleted: bool = False) -> None:
        self.seq += 1
        body = {"_rev": f"{self.seq}-x", **doc}
        self.latest[doc["_id"]] = (self.seq, body, deleted)

    def changes_since(self, since):
        rows = sorted((seq, doc_id, doc, deleted) for doc_id, (seq, doc, deleted) in self.latest.items())
        return [(doc_id, doc, deleted, seq) for seq, doc_id, doc, deleted in rows if since is None or seq > since]

    def load(self, doc_id):
        seq, doc, deleted = self.latest.get(doc_id, (None, None, True))
        return None if deleted else doc


@pytest.fixture
def recorded():
    """The database of the recorded steps: the ddoc, three docs, z2 (z1, x, y were refused)."""
    db = StandInDb()
    db.put(DASH)
    for doc in (
        {"_id": "1", "user": "u1", "day": "2026-01-01", "n": 2, "type": "a"},
        {"_id": "2", "user": "u1", "day": "2026-01-02", "n": 3, "type": "a"},
        {"_id": "3", "user": "u2", "day": "2026-01-01", "n": 5, "type": "b"},
        {"_id": "z2"},
    ):
        db.put(doc)
    return db, DesignIndex(DASH)


def query(fixture, view, params=None, body=None):
    db, index = fixture
    return index.query(view, parse_view_query(params or {}, body), db.changes_since, db.load)


def test_recorded_sum_grouped(recorded):
    assert query(recorded, "by_day", {"group": "true"}) == {"rows": [
        {"key": ["u1", "2026-01-01"], "value": 2},
        {"key": ["u1", "2026-01-02"], "value": 3},
        {"key": ["u2", "2026-01-01"], "value": 5},
    ]}


def test_recorded_sum_group_level_and_total(recorded):
    assert query(recorded, "by_day", {"group_level": "1"}) == {"rows": [{"key": ["u1"], "value": 5}, {"key": ["u2"], "value": 5}]}
    assert query(recorded, "by_day") == {"rows": [{"key": None, "value": 10}]}


def test_recorded_stats(recorded):
    assert query(recorded, "stats", {"group": "true"}) == {"rows": [
        {"key": "u1", "value": {"sum": 5, "count": 2, "min": 2, "max": 3, "sumsqr": 13}},
        {"key": "u2", "value": {"sum": 5, "count": 1, "min": 5, "max": 5, "sumsqr": 25}},
    ]}


def test_recorded_count_map_rows_sorted_by_key_then_id(recorded):
    assert query(recorded, "count", {"reduce": "false"}) == {"total_rows": 4, "offset": 0, "rows": [
        {"id": "z2", "key": None, "value": 1},
        {"id": "1", "key": "a", "value": 1},
        {"id": "2", "key": "a", "value": 1},
        {"id": "3", "key": "b", "value": 1},
    ]}


def test_recorded_key_and_keys(recorded):
    assert query(recorded, "count", {"key": '"a"'}) == {"rows": [{"key": None, "value": 2}]}
    assert query(recorded, "count", {"group": "true"}, {"keys": ["b", "zz"]}) == {"rows": [{"key": "b", "value": 1}]}
    assert query(recorded, "count", {"group": "true"}, {"keys": ["a", "a"]}) == {"rows": [{"key": "a", "value": 2}] * 2}


def test_recorded_include_docs(recorded):
    assert query(recorded, "count", {"reduce": "false", "include_docs": "true", "limit": "1"}) == {
        "total_rows": 4, "offset": 0,
        "rows": [{"id": "z2", "key": None, "value": 1, "doc": {"_id": "z2", "_rev": "5-x"}}],
    }


def test_index_follows_updates_and_deletions(recorded):
    db, index = recorded
    query(recorded, "count", {"reduce": "false"})
    db.put({"_id": "1", "type": "c"})
    db.put({"_id": "3"}, deleted=True)
    db.put({"_id": "4", "type": "a"})
    assert [(r["id"], r["key"]) for r in query(recorded, "count", {"reduce": "false"})["rows"]] == [
        ("z2", None), ("2", "a"), ("4", "a"), ("1", "c")]
    assert index.update_seq == db.seq


def test_stale_query_does_not_update(recorded):
    db, _ = recorded
    assert query(recorded, "count")["rows"] == [{"key": None, "value": 4}]
    db.put({"_id": "5"})
    assert query(recorded, "count", {"stale": "ok"})["rows"] == [{"key": None, "value": 4}]
    assert query(recorded, "count", {"update": "false"})["rows"] == [{"key": None, "value": 4}]
    assert query(recorded, "count")["rows"] == [{"key": None, "value": 5}]
    db.put({"_id": "6"})
    assert query(recorded, "count", {"stale": "update_after"})["rows"] == [{"key": None, "value": 5}]
    assert query(recorded, "count", {"update": "false"})["rows"] == [{"key": None, "value": 6}]


def test_design_docs_are_not_mapped_unless_include_design(recorded):
    db, _ = recorded
    ddoc = {"_id": "_design/all", "options": {"include_design": True}, "views": {"ids": {"map": "function(d){ emit(d._id, null); }"}}}
    db.put(ddoc)
    ids = [r["id"] for r in DesignIndex(ddoc).query("ids", parse_view_query({}), db.changes_since, db.load)["rows"]]
    assert "_design/dash" in ids and "_design/all" in ids


def key_range(fixture, params):
    return [r["id"] for r in query(fixture, "ids", params)["rows"]]


@pytest.fixture
def letters():
    db = StandInDb()
    for doc_id in ["a", "b", "c", "d"]:
        db.put({"_id": doc_id})
    ddoc = {"_id": "_design/l", "views": {"ids": {"map": "function(d){ emit(d._id, 1); }"}}}
    return db, DesignIndex(ddoc)


def test_ranges_limit_skip_descending(letters):
    assert key_range(letters, {"startkey": '"b"', "endkey": '"c"'}) == ["b", "c"]
    assert key_range(letters, {"start_key": '"b"', "end_key": '"c"', "inclusive_end": "false"}) == ["b"]
    assert key_range(letters, {"descending": "true", "startkey": '"c"', "endkey": '"a"'}) == ["c", "b", "a"]
    assert key_range(letters, {"descending": "true", "startkey": '"c"', "endkey": '"a"', "inclusive_end": "false"}) == ["c", "b"]
    assert key_range(letters, {"skip": "1", "limit": "2"}) == ["b", "c"]
    body = query(letters, "ids", {"descending": "true", "skip": "1", "limit": "1"})
    assert (body["offset"], [r["id"] for r in body["rows"]]) == (1, ["c"])
    assert key_range(letters, {"keys": '["d", "a", "zz"]'}) == ["d", "a"]


def test_start_key_docid_narrows_equal_keys():
    db = StandInDb()
    for doc_id in ["p", "q", "r"]:
        db.put({"_id": doc_id})
    ddoc = {"_id": "_design/s", "views": {"same": {"map": "function(d){ emit('k', d._id); }"}}}
    index = DesignIndex(ddoc)
    body = index.query("same", parse_view_query({"startkey": '"k"', "startkey_docid": "q"}), db.changes_since, db.load)
    assert [r["id"] for r in body["rows"]] == ["q", "r"]
    assert body["offset"] == 1


@pytest.mark.parametrize("params,body,message", [
    ({"group": "true"}, None, "Invalid use of grouping on a map view."),
    ({"reduce": "true"}, None, "Reduce is invalid for map-only views."),
    ({"limit": "-1"}, None, 'Invalid value for positive integer: "-1"'),
    ({"limit": "x"}, None, 'Invalid value for integer: "x"'),
    ({"descending": "maybe"}, None, 'Invalid boolean parameter: "maybe"'),
    ({"key": '"a"'}, {"keys": ["a"]}, "`keys` is incompatible with `key`, `start_key` and `end_key`"),
])
def test_map_view_parameter_errors(letters, params, body, message):
    with pytest.raises(CouchError) as error:
        query(letters, "ids", params, body)
    assert (error.value.status, error.value.error, error.value.reason) == (400, "query_parse_error", message)


@pytest.mark.parametrize("params,body,message", [
    ({}, {"keys": ["a", "b"]}, "Multi-key fetches for reduce views must use `group=true`"),
    ({"include_docs": "true"}, None, "`include_docs` is invalid for reduce"),
    ({"group": "false", "group_level": "1"}, None, "Can't specify group=false and group_level>0 at the same time"),
])
def test_reduce_view_parameter_errors(recorded, params, body, message):
    with pytest.raises(QueryParseError, match=message.replace("`", ".").replace("(", ".").replace(")", ".")):
        query(recorded, "count", params, body)


def test_key_that_is_not_json(letters):
    with pytest.raises(CouchError) as error:
        query(letters, "ids", {"key": "a"})
    assert (error.value.status, error.value.error, error.value.reason) == (400, "bad_request", "invalid UTF-8 JSON")


def test_missing_view(recorded):
    with pytest.raises(NotFound) as error:
        query(recorded, "nope")
    assert (error.value.status, error.value.reason) == (404, "missing_named_view")


def test_builtin_sum_of_arrays_and_objects_and_bad_values():
    db = StandInDb()
    db.put({"_id": "1", "v": [1, 2], "o": {"a": 1, "b": {"c": 2}}})
    db.put({"_id": "2", "v": [3], "o": {"a": 4}})
    ddoc = {"_id": "_design/s", "views": {
        "arr": {"map": "function(d){ emit(d._id, d.v); }", "reduce": "_sum"},
        "obj": {"map": "function(d){ emit(d._id, d.o); }", "reduce": "_sum"},
        "bad": {"map": "function(d){ emit(d._id, 'x'); }", "reduce": "_sum"},
    }}
    index = DesignIndex(ddoc)
    run = lambda view: index.query(view, parse_view_query({}), db.changes_since, db.load)["rows"]
    assert run("arr") == [{"key": None, "value": [4, 2]}]
    assert run("obj") == [{"key": None, "value": {"a": 5, "b": {"c": 2}}}]
    with pytest.raises(QueryServerError, match="The _sum function requires that map values be numbers"):
        run("bad")


def test_javascript_reduce_with_rereduce_over_many_rows():
    """A reduce must handle rereduce: CouchDB reduces B-tree nodes and rereduces their results."""
    db = StandInDb()
    for n in range(600):
        db.put({"_id": f"{n:04}", "g": n % 2})
    ddoc = {"_id": "_design/r", "views": {"v": {
        "map": "function(d){ emit(d.g, 1); }",
        "reduce": "function(keys, values, rereduce){ return rereduce ? {calls: values.length, total: values.reduce(function(a, v){ return a + v.total; }, 0)} : {calls: 0, total: values.length}; }",
    }}}
    index = DesignIndex(ddoc)
    total = index.query("v", parse_view_query({}), db.changes_since, db.load)["rows"][0]["value"]
    assert total == {"calls": 3, "total": 600}
    grouped = index.query("v", parse_view_query({"group": "true"}), db.changes_since, db.load)["rows"]
    assert [(row["key"], row["value"]["total"]) for row in grouped] == [(0, 300), (1, 300)]


def test_collation_order():
    """Views Collation (docs.couchdb.org): null, false, true, numbers, strings (ICU: case-insensitive
    first, lowercase before uppercase), arrays, objects."""
    ordered = [None, False, True, -1, 0, 1.5, 2, " ", "_", "1", "a", "A", "aa", "b", "B", "ba", "é",
               [], [1], [1, 2], [2], ["a"], {}, {"a": 1}, {"b": 1}]
    shuffled = list(reversed(ordered))
    assert sorted(shuffled, key=collation_key) == ordered
    assert collation_key(1) == collation_key(1.0)


def test_info_shape_and_index_reuse(recorded):
    db, index = recorded
    query(recorded, "count")
    info = index.info()
    assert info["name"] == "dash"
    assert info["view_index"]["update_seq"] == db.seq
    assert {"signature", "language", "sizes", "updater_running", "compact_running"} <= info["view_index"].keys()
    views = DatabaseViews()
    first = views.index(DASH)
    assert views.index({**DASH, "_rev": "2-b", "validate_doc_update": "function(){}"}) is first
    assert views.index({**DASH, "_rev": "3-c", "views": {"x": {"map": "function(d){}"}}}) is not first
