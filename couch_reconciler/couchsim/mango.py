"""`_find` (mango) over the `_all_docs` index: selectors with the common operators, `fields`, `sort`,
`limit`, `skip`, `bookmark`, and mango's 400 errors (src/mango/src/mango_selector.erl, mango_opts.erl,
mango_error.erl). Comparisons use CouchDB's view collation, as mango_json:cmp does."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Callable

from .errors import CouchError, erlang_term

NO_INDEX_WARNING = "No matching index found, create an index to optimize query time."
MISSING = object()


def invalid_operator(op: str) -> CouchError:
    return CouchError(400, "invalid_operator", f"Invalid operator: {op}")


def collation_key(value: Any):
    """CouchDB view collation: null < false < true < numbers < strings (ICU-like) < arrays < objects."""
    if value is None:
        return (0,)
    if value is False:
        return (1,)
    if value is True:
        return (2,)
    if isinstance(value, (int, float)):
        return (3, value)
    if isinstance(value, str):
        return (4, value.lower(), value.swapcase())
    if isinstance(value, list):
        return (5, tuple(collation_key(v) for v in value))
    if isinstance(value, dict):
        return (6, tuple((collation_key(k), collation_key(v)) for k, v in value.items()))
    raise TypeError(type(value))


def compare(a: Any, b: Any) -> int:
    ka, kb = collation_key(a), collation_key(b)
    return (ka > kb) - (ka < kb)


def get_field(doc: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            return MISSING
    return doc


def split_field(name: str) -> list[str]:
    """mango_util:parse_field/1: dots separate levels, `\\.` is a literal dot."""
    return [p.replace("\\.", ".") for p in re.split(r"(?<!\\)\.", name)]


JSON_TYPES = {"null": type(None), "boolean": bool, "string": str, "array": list, "object": dict}


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    for name, kind in JSON_TYPES.items():
        if isinstance(value, kind):
            return name
    raise TypeError(type(value))


class Selector:
    """A normalised selector: a tree of (op, ...) tuples built once, then matched against many docs."""

    def __init__(self, selector: Any):
        if not isinstance(selector, dict):
            raise CouchError(400, "invalid_selector_json",
                             f"Selector must be a JSON object, not: {erlang_term(selector)}")
        self.tree = self._normalise(selector, [])

    def _normalise(self, selector: dict, path: list[str]):
        clauses = []
        for key, value in selector.items():
            if key in ("$and", "$or", "$nor"):
                if not isinstance(value, list):
                    self._bad(key, value)
                clauses.append((key, [self._normalise(v, path) if isinstance(v, dict) else self._bad(key, v)
                                      for v in value]))
            elif key == "$not":
                if not isinstance(value, dict):
                    self._bad(key, value)
                clauses.append(("$not", self._normalise(value, path)))
            elif key.startswith("$"):
                clauses.append(self._condition(key, value, path))
            else:
                field = path + split_field(key)
                if isinstance(value, dict) and value:  # operators on the field, or sub-fields (a.b)
                    clauses.append(self._normalise(value, field))
                else:
                    clauses.append(("$eq", field, value))
        return clauses[0] if len(clauses) == 1 else ("$and", clauses)

    @staticmethod
    def _bad(op: str, value: Any):
        raise CouchError(400, "bad_arg", f"Bad argument for operator {op}: {erlang_term(value)}")

    def _condition(self, op: str, arg: Any, path: list[str]):
        """One operator on a field, with its argument checked as mango_selector:norm_ops/1 does."""
        if op in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$type"):
            return (op, path, arg)
        if op == "$exists":
            return (op, path, arg) if isinstance(arg, bool) else self._bad(op, arg)
        if op in ("$in", "$nin", "$all"):
            return (op, path, arg) if isinstance(arg, list) else self._bad(op, arg)
        if op == "$size":
            return (op, path, arg) if isinstance(arg, int) and not isinstance(arg, bool) else self._bad(op, arg)
        if op == "$mod":
            valid = (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, int) for a in arg)
                     and arg[0] != 0)
            return (op, path, arg) if valid else self._bad(op, arg)
        if op == "$regex":
            try:
                return (op, path, re.compile(arg)) if isinstance(arg, str) else self._bad(op, arg)
            except re.error:
                self._bad(op, arg)
        if op in ("$elemMatch", "$allMatch"):
            return (op, path, self._normalise(arg, [])) if isinstance(arg, dict) else self._bad(op, arg)
        if op == "$beginsWith" and isinstance(arg, str):  # 3.4: a prefix must be a string, else no such operator
            return (op, path, arg)
        raise invalid_operator(op)

    def matches(self, doc: dict) -> bool:
        return self._match(self.tree, doc)

    def _match(self, node, doc) -> bool:
        op = node[0]
        if op == "$and":
            return all(self._match(n, doc) for n in node[1])
        if op == "$or":
            return any(self._match(n, doc) for n in node[1])
        if op == "$nor":
            return not any(self._match(n, doc) for n in node[1])
        if op == "$not":
            return not self._match(node[1], doc)
        _, path, arg = node
        value = get_field(doc, path) if path else doc
        if value is MISSING:
            return op == "$exists" and arg is False
        if op == "$exists":
            return arg is True
        if op == "$eq":
            return compare(value, arg) == 0
        if op == "$ne":
            return compare(value, arg) != 0
        if op == "$gt":
            return compare(value, arg) > 0
        if op == "$gte":
            return compare(value, arg) >= 0
        if op == "$lt":
            return compare(value, arg) < 0
        if op == "$lte":
            return compare(value, arg) <= 0
        if op == "$in":
            candidates = value if isinstance(value, list) else [value]
            return any(compare(v, a) == 0 for v in candidates for a in arg)
        if op == "$nin":
            candidates = value if isinstance(value, list) else [value]
            return not any(compare(v, a) == 0 for v in candidates for a in arg)
        if op == "$all":
            return isinstance(value, list) and all(any(compare(v, a) == 0 for v in value) for a in arg)
        if op == "$size":
            return isinstance(value, list) and len(value) == arg
        if op == "$type":
            return json_type(value) == arg
        if op == "$regex":
            return isinstance(value, str) and arg.search(value) is not None
        if op == "$beginsWith":
            return isinstance(value, str) and value.startswith(arg)
        if op == "$mod":
            return isinstance(value, int) and not isinstance(value, bool) and value % arg[0] == arg[1]
        if op == "$elemMatch":
            return isinstance(value, list) and any(self._match(arg, v) for v in value)
        if op == "$allMatch":
            return isinstance(value, list) and bool(value) and all(self._match(arg, v) for v in value)
        raise invalid_operator(op)


def parse_sort(sort: Any) -> list[tuple[str, str]]:
    if not isinstance(sort, list):
        raise CouchError(400, "invalid_sort_json", f"Sort must be an array of sort specs, not: {erlang_term(sort)}")
    fields = []
    for spec in sort:
        if isinstance(spec, str):
            fields.append((spec, "asc"))
        elif isinstance(spec, dict) and len(spec) == 1 and list(spec.values())[0] in ("asc", "desc"):
            fields.append(next(iter(spec.items())))
        else:
            raise CouchError(400, "invalid_sort_field", f"Invalid sort field: {erlang_term(spec)}")
    if len({direction for _, direction in fields}) > 1:
        raise CouchError(400, "unsupported_mixed_sort", "Sorts currently only support a single direction for all fields.")
    return fields


def non_negative(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CouchError(400, "invalid_non_negative_integer", f"Value is not a non-negative integer: {erlang_term(value)}")
    return value


def project(doc: dict, fields: list[str]) -> dict:
    """mango_doc:fields/2: only the listed (possibly nested) fields, in the given order."""
    out: dict = {}
    for name in fields:
        path = split_field(name)
        value = get_field(doc, path)
        if value is MISSING:
            continue
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return out


def json_indexes(db) -> list[dict]:
    """The json indexes `_index` created: views of `language: query` design docs, as mango_idx:list/1 reads them."""
    found = []
    for ddoc in db.design_docs():
        if ddoc.get("language") != "query" or not isinstance(ddoc.get("views"), dict):
            continue
        for name, view in sorted(ddoc["views"].items()):
            definition = (view.get("options") or {}).get("def") if isinstance(view, dict) else None
            if isinstance(definition, dict) and isinstance(definition.get("fields"), list):
                found.append({"ddoc": ddoc["_id"], "name": name, "type": "json", "partitioned": False,
                              "def": definition})
    return found


SPECIAL_INDEX = {"ddoc": None, "name": "_all_docs", "type": "special", "def": {"fields": [{"_id": "asc"}]}}


def index_fields(definition: dict) -> list[tuple[str, str]]:
    return [(f, "asc") if isinstance(f, str) else next(iter(f.items())) for f in definition["fields"]]


def new_index(body: Any) -> tuple[str, str, dict]:
    """mango_opts:validate_idx_create/1 + mango_idx:new/2: (ddoc id, index name, definition) of a json index."""
    if not isinstance(body, dict):
        raise CouchError(400, "bad_request", "Request body must be a JSON object")
    index = body.get("index")
    if index is None:
        raise CouchError(400, "missing_required_key", "Missing required key: index")
    kind = body.get("type", "json")
    if kind != "json":
        raise CouchError(400, "invalid_index_type", f"Invalid type for index: {kind}")
    if not isinstance(index, dict) or not isinstance(index.get("fields"), list) or not index["fields"]:
        raise CouchError(400, "invalid_index_fields", "Index fields must be a non-empty list of field names")
    definition = {"fields": [{f: "asc"} if isinstance(f, str) else f for f in index["fields"]]}
    parse_sort(definition["fields"])
    if isinstance(index.get("partial_filter_selector"), dict):
        definition["partial_filter_selector"] = index["partial_filter_selector"]
    digest = hashlib.sha1(json.dumps(definition, sort_keys=True).encode()).hexdigest()
    ddoc = body.get("ddoc") or digest
    ddoc_id = ddoc if ddoc.startswith("_design/") else "_design/" + ddoc
    return ddoc_id, body.get("name") or digest, definition


def index_view(definition: dict) -> dict:
    """The view a json index is stored as in its design document (mango_idx_view)."""
    return {"map": {"fields": dict(index_fields(definition)),
                    "partial_filter_selector": definition.get("partial_filter_selector", {})},
            "reduce": "_count", "options": {"def": definition}}


def usable_index(db, sort: list[tuple[str, str]]) -> dict | None:
    """A json index whose leading fields are the sort fields (mango_idx_view:is_usable/3, simplified)."""
    wanted = [name for name, _ in sort]
    for index in json_indexes(db):
        names = [name for name, _ in index_fields(index["def"])]
        if names[: len(wanted)] == wanted:
            return index
    return None


def indexed_ids(db, index: dict) -> list[str]:
    """Doc ids in the json index's key order; docs lacking an indexed field are not in the index."""
    paths = [split_field(name) for name, _ in index_fields(index["def"])]
    keyed = []
    for docid in db.ids():
        entry = db.docs[docid]
        if entry.deleted or docid.startswith("_design/"):
            continue
        doc = db.doc_json(entry, entry.winner)
        values = [get_field(doc, path) for path in paths]
        if all(v is not MISSING for v in values):
            keyed.append((tuple(collation_key(v) for v in values), docid))
    keyed.sort()
    return [docid for _, docid in keyed]


def find(db, body: Any, read: Callable) -> dict:
    """Runs a `_find` request body against the database; `read(entry)` applies the db's read rules."""
    if not isinstance(body, dict):
        raise CouchError(400, "bad_request", "Request body must be a JSON object")
    if "selector" not in body:
        raise CouchError(400, "missing_required_key", "Missing required key: selector")
    selector = Selector(body["selector"])
    limit = non_negative(body.get("limit", 25))
    skip = non_negative(body.get("skip", 0))
    fields = body.get("fields")
    if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
        raise CouchError(400, "invalid_field_json", f"Invalid JSON for field spec: {erlang_term(fields)}")
    sort = parse_sort(body.get("sort", []))
    index = None
    if any(name != "_id" for name, _ in sort):
        # The special _all_docs index sorts by _id alone; other sorts need a json index.
        index = usable_index(db, sort)
        if index is None:
            raise CouchError(400, "no_usable_index",
                             "No index exists for this sort, try indexing by the sort fields.")
    descending = bool(sort) and sort[0][1] == "desc"
    ids = db.ids()
    start_after = None
    bookmark = body.get("bookmark")
    if isinstance(bookmark, str) and bookmark not in ("", "nil"):
        try:
            start_after = json.loads(base64.urlsafe_b64decode(bookmark + "=" * (-len(bookmark) % 4)))
        except ValueError:
            raise CouchError(400, "invalid_bookmark", f"Invalid bookmark value: {erlang_term(bookmark)}")
    matched: list[dict] = []
    examined = 0
    last_id = None
    if index is not None:
        ids = indexed_ids(db, index)
    waiting = start_after is not None
    for docid in (reversed(ids) if descending else ids):
        if waiting:  # resume after the bookmark's document, in this index's order
            waiting = docid != start_after
            continue
        entry = db.docs[docid]
        if entry.deleted or docid.startswith("_design/"):
            continue
        examined += 1
        try:
            doc = read(entry)
        except CouchError:  # a document this user may not read (another user's, in _users) is not a match
            continue
        if not selector.matches(doc):
            continue
        if skip:
            skip -= 1
            continue
        matched.append(project(doc, fields) if fields else doc)
        last_id = docid
        if len(matched) >= limit:
            break
    token = base64.urlsafe_b64encode(json.dumps(last_id).encode()).decode().rstrip("=") if last_id else "nil"
    answer = {"docs": matched, "bookmark": token}
    if index is None:
        answer["warning"] = NO_INDEX_WARNING
    if body.get("execution_stats") is True:
        answer["execution_stats"] = {"total_keys_examined": 0, "total_docs_examined": examined,
                                     "total_quorum_docs_examined": 0, "results_returned": len(matched),
                                     "execution_time_ms": 0.0}
    return answer
