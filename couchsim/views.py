"""Map/reduce view indexes of couchsim, queried as CouchDB 3.x answers ``/{db}/_design/{ddoc}/_view/{view}``.

An index belongs to one design document of one database and follows the database's changes
feed: it remembers the last sequence it has seen and, before a query (unless ``update=false`` /
``stale=ok``), maps only the documents changed since. It depends on nothing of the database
but small callables, so the server wires it with whatever its storage is:

- ``changes_since(seq)``: the documents changed after ``seq`` (``None`` = from the start), as
  ``(doc_id, doc, deleted, seq)`` in sequence order, ``doc`` being the winning revision's JSON body
  (with ``_id`` and ``_rev``);
- ``load_doc(doc_id)``: the winning revision's body for ``include_docs``, ``None`` if missing or deleted.

Sources: ``src/couch_mrview/src/couch_mrview_util.erl`` (``validate_args``: parameter rules and
their error messages; ``update_args``/``key_opts``: ranges), ``couch_mrview_http.erl``
(parameter parsing), ``couch_query_servers.erl`` (built-in reducers), ``couch_ejson_compare``
(collation: rows sort by key, then by doc id as raw bytes). A built-in reducer refusing a value
answers 500 ``invalid_value`` (``throw_sum_error``/``throw_stat_error``, chttpd's default mapping).

Collation approximates CouchDB's ICU (UCA, root locale, tertiary strength) for strings:
compared first ignoring case and accents, with whitespace and punctuation before digits before
letters; then accents; then case, lowercase first (``"a" < "A" < "aa" < "b"``). Non-Latin scripts
and contractions are ordered by code point within that scheme.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from couchsim.js import BUILTIN_REDUCERS, DesignSandbox, QueryServerError, view_definitions

ChangesSince = Callable[[Any], Iterable[tuple[str, dict | None, bool, Any]]]
LoadDoc = Callable[[str], dict | None]

# JavaScript reduce runs over chunks of rows and rereduces the partial results, as CouchDB's
# B-tree nodes make it do; a reduce that ignores `rereduce` fails here as it would there.
JS_REDUCE_CHUNK = 256

SUM_ERROR = (
    "The _sum function requires that map values be numbers, arrays of numbers, or objects. "
    "Objects cannot be mixed with other data structures. Objects can be arbitrarily nested, "
    "provided that the values for all fields are themselves numbers, arrays of numbers, or objects."
)


class QueryParseError(QueryServerError):
    status = 400

    def __init__(self, reason: str):
        super().__init__("query_parse_error", reason)


class BadRequest(QueryServerError):
    status = 400

    def __init__(self, reason: str):
        super().__init__("bad_request", reason)


class NotFound(QueryServerError):
    status = 404

    def __init__(self, reason: str):
        super().__init__("not_found", reason)


# ---------------------------------------------------------------------------------- collation

_PUNCTUATION, _DIGIT, _LETTER = "\x01", "\x02", "\x03"


@functools.lru_cache(maxsize=65536)
def _string_key(text: str) -> tuple:
    primary, accents, cases = [], [], []
    for char in unicodedata.normalize("NFD", text):
        if unicodedata.combining(char):
            accents.append(char)
            continue
        lower = char.lower()
        group = _LETTER if char.isalpha() else _DIGIT if char.isdigit() else _PUNCTUATION
        primary.append(group + lower)
        cases.append(char != lower)
    return ("".join(primary), "".join(accents), tuple(cases), text)


def collation_key(value: Any) -> tuple:
    """A sort key ordering JSON values as CouchDB's view collation does:
    null < false < true < numbers < strings < arrays < objects."""
    # Dispatch on the exact type, most frequent first: view builds compute one key per emitted row.
    kind = type(value)
    if kind is str:
        return (4, _string_key(value))
    if kind is list:
        return (5, tuple(map(collation_key, value)))
    if kind is int or kind is float:
        return (3, value)
    if value is None:
        return (0,)
    if kind is bool:
        return (2,) if value else (1,)
    if kind is dict:
        return (6, tuple((_string_key(k), collation_key(v)) for k, v in value.items()))
    raise TypeError(f"not a JSON value: {value!r}")


# -------------------------------------------------------------------------------- parameters


@dataclass
class ViewQuery:
    reduce: bool | None = None
    group: bool | None = None
    group_level: int | None = None
    keys: list | None = None
    start_key: Any = None
    end_key: Any = None
    has_start_key: bool = False
    has_end_key: bool = False
    start_key_docid: str | None = None
    end_key_docid: str | None = None
    inclusive_end: bool = True
    include_docs: bool = False
    limit: int | None = None
    skip: int = 0
    descending: bool = False
    update: str = "true"
    update_seq: bool = False


def _boolean(name: str, raw: str) -> bool:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise QueryParseError(f'Invalid boolean parameter: "{raw}"')


def _integer(raw: str, positive: bool) -> int:
    try:
        number = int(raw)
    except ValueError:
        raise QueryParseError(f'Invalid value for integer: "{raw}"') from None
    if positive and number < 0:
        raise QueryParseError(f'Invalid value for positive integer: "{raw}"')
    return number


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        # chttpd answers a JSON parameter that does not parse like a body that does not
        raise BadRequest("invalid UTF-8 JSON") from None


def parse_view_query(params: Mapping[str, str], body: Mapping[str, Any] | None = None) -> ViewQuery:
    """Read a view request's query string (and a POST body's ``keys``) as ``couch_mrview_http`` does."""
    query = ViewQuery()
    for name, raw in params.items():
        if name == "reduce":
            query.reduce = _boolean(name, raw)
        elif name == "group":
            query.group = _boolean(name, raw)
        elif name == "group_level":
            query.group_level = _integer(raw, positive=True)
        elif name == "key":
            query.start_key = query.end_key = _json(raw)
            query.has_start_key = query.has_end_key = True
        elif name == "keys":
            query.keys = _json(raw)
        elif name in ("startkey", "start_key"):
            query.start_key, query.has_start_key = _json(raw), True
        elif name in ("endkey", "end_key"):
            query.end_key, query.has_end_key = _json(raw), True
        elif name in ("startkey_docid", "start_key_doc_id"):
            query.start_key_docid = raw
        elif name in ("endkey_docid", "end_key_doc_id"):
            query.end_key_docid = raw
        elif name == "inclusive_end":
            query.inclusive_end = _boolean(name, raw)
        elif name == "include_docs":
            query.include_docs = _boolean(name, raw)
        elif name == "limit":
            query.limit = _integer(raw, positive=True)
        elif name == "skip":
            query.skip = _integer(raw, positive=True)
        elif name == "descending":
            query.descending = _boolean(name, raw)
        elif name == "update":
            if raw not in ("true", "false", "lazy"):
                raise QueryParseError("Invalid value for `update`.")
            query.update = raw
        elif name == "stale":
            if raw not in ("ok", "update_after"):
                raise QueryParseError(f'Invalid value for `stale`: "{raw}"')
            query.update = "false" if raw == "ok" else "lazy"
        elif name == "update_seq":
            query.update_seq = _boolean(name, raw)
        # other parameters (conflicts, attachments, sorted, stable...) are accepted and ignored
    if body and "keys" in body:
        query.keys = body["keys"]
    return query


def _group_level(query: ViewQuery) -> int | str:
    if query.group is None or query.group is False:
        if query.group is False and query.group_level:
            raise QueryParseError("Can't specify group=false and group_level>0 at the same time")
        return query.group_level or 0
    return "exact" if query.group_level is None else query.group_level


def _validate(query: ViewQuery, has_reduce: bool) -> tuple[bool, int | str]:
    """``couch_mrview_util:validate_args``: decide map or reduce output and refuse bad combinations."""
    reduced = has_reduce and query.reduce is not False
    level = _group_level(query)
    if not has_reduce and query.reduce is True:
        raise QueryParseError("Reduce is invalid for map-only views.")
    if reduced and level != "exact" and isinstance(query.keys, list):
        raise QueryParseError("Multi-key fetchs for reduce views must use `group=true`")
    if query.keys is not None and not isinstance(query.keys, list):
        raise QueryParseError("`keys` must be an array of strings.")
    if query.keys and (query.has_start_key or query.has_end_key):
        raise QueryParseError("`keys` is incompatible with `key`, `start_key` and `end_key`")
    if not reduced and level != 0:
        raise QueryParseError("Invalid use of grouping on a map view.")
    if reduced and query.include_docs:
        raise QueryParseError("`include_docs` is invalid for reduce")
    return reduced, level


# ----------------------------------------------------------------------------------- reducers


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _add(left: Any, right: Any) -> Any:
    # couch_query_servers:sum_values: a number mixes with an array as its first element;
    # objects sum field by field and mix with nothing else.
    if _is_number(left) and _is_number(right):
        return left + right
    if _is_number(left) and isinstance(right, list):
        left = [left]
    elif isinstance(left, list) and _is_number(right):
        right = [right]
    if isinstance(left, list) and isinstance(right, list):
        if not all(_is_number(v) for v in left + right):
            raise QueryServerError("invalid_value", SUM_ERROR)
        longer, shorter = (left, right) if len(left) >= len(right) else (right, left)
        return [a + b for a, b in zip(shorter, longer)] + longer[len(shorter):]
    if isinstance(left, dict) and isinstance(right, dict):
        merged = dict(left)
        for name, value in right.items():
            merged[name] = _add(merged[name], value) if name in merged else _checked_sum_value(value)
        return dict(sorted(merged.items()))  # sum_objects merges fields in sorted order
    raise QueryServerError("invalid_value", SUM_ERROR)


def _checked_sum_value(value: Any) -> Any:
    if _is_number(value):
        return value
    if isinstance(value, list) and all(_is_number(v) for v in value):
        return value
    if isinstance(value, dict):
        return {name: _checked_sum_value(v) for name, v in value.items()}
    raise QueryServerError("invalid_value", SUM_ERROR)


def _sum(values: list) -> Any:
    if not values:
        return 0
    return functools.reduce(_add, values[1:], _checked_sum_value(values[0]))


_STATS_FIELDS = ("sum", "count", "min", "max", "sumsqr")


def _stats_of(value: Any) -> Any:
    if _is_number(value):
        return {"sum": value, "count": 1, "min": value, "max": value, "sumsqr": value * value}
    if isinstance(value, list) and all(_is_number(v) for v in value):
        return [_stats_of(v) for v in value]
    if isinstance(value, dict) and all(name in value for name in ("sum", "count", "min", "max", "sumsqr")):
        return {name: value[name] for name in _STATS_FIELDS}
    raise QueryServerError(
        "invalid_value",
        f"The _stats function requires that map values be numbers or arrays of numbers, not '{json.dumps(value)}'",
    )


def _combine_stats(left: Any, right: Any) -> Any:
    if isinstance(left, list):
        return [_combine_stats(a, b) for a, b in zip(left, right)]
    return {
        "sum": left["sum"] + right["sum"],
        "count": left["count"] + right["count"],
        "min": min(left["min"], right["min"]),
        "max": max(left["max"], right["max"]),
        "sumsqr": left["sumsqr"] + right["sumsqr"],
    }


def builtin_reduce(name: str, keys: list, values: list) -> Any:
    """Erlang-side reducers of ``couch_query_servers`` over one group's ``[key, doc_id]`` pairs and values."""
    if name.startswith("_sum"):
        return _sum(values)
    if name.startswith("_count"):
        return len(values)
    if name.startswith("_stats"):
        return functools.reduce(_combine_stats, (_stats_of(v) for v in values))
    # Exact where CouchDB estimates with HyperLogLog: equal for the small sets tests use.
    return len({collation_key(key) for key, _doc_id in keys})


# -------------------------------------------------------------------------------------- index


def view_signature(ddoc: dict) -> str:
    """What an index is built from: a design doc edit that keeps these reuses the index."""
    basis = {"views": ddoc.get("views"), "language": ddoc.get("language", "javascript"), "options": ddoc.get("options")}
    return hashlib.md5(json.dumps(basis, sort_keys=True).encode()).hexdigest()


class DesignIndex:
    """The rows of every view of one design document over one database."""

    def __init__(self, ddoc: dict, sandbox: DesignSandbox | None = None):
        self.ddoc = ddoc
        self.name = ddoc["_id"].removeprefix("_design/")
        self.signature = view_signature(ddoc)
        self.sandbox = sandbox or DesignSandbox(ddoc)
        self.views = view_definitions(ddoc)
        self._view_names = list(self.views)
        self._include_design = bool((ddoc.get("options") or {}).get("include_design"))
        # per view: rows (collation key, doc id, emit number, key, value) kept sorted
        self._rows: dict[str, list[tuple]] = {name: [] for name in self._view_names}
        # per doc: for each view, the rows it emitted (to remove them when the doc changes)
        self._by_doc: dict[str, list[list[tuple]]] = {}
        self.update_seq: Any = None

    def refresh(self, changes_since: ChangesSince) -> None:
        """Map the documents changed since the last refresh."""
        latest: dict[str, dict | None] = {}
        last_seq = self.update_seq
        for doc_id, doc, deleted, seq in changes_since(self.update_seq):
            last_seq = seq
            indexable = not deleted and doc is not None and (self._include_design or not doc_id.startswith("_design/"))
            latest[doc_id] = doc if indexable else None
        if not latest:
            self.update_seq = last_seq
            return
        live_ids = [doc_id for doc_id, doc in latest.items() if doc is not None]
        emitted = self.sandbox.map_docs(self._view_names, (latest[doc_id] for doc_id in live_ids))
        new_rows: dict[str, list[tuple]] = {name: [] for name in self._view_names}
        for doc_id, per_view in zip(live_ids, emitted):
            doc_rows = []
            for name, pairs in zip(self._view_names, per_view):
                rows = [(collation_key(key), doc_id, n, key, value) for n, (key, value) in enumerate(pairs)]
                new_rows[name].extend(rows)
                doc_rows.append(rows)
            latest_rows = self._by_doc.pop(doc_id, None)
            self._remove(latest_rows)
            self._by_doc[doc_id] = doc_rows
        for doc_id in latest.keys() - set(live_ids):
            self._remove(self._by_doc.pop(doc_id, None))
        for name, rows in new_rows.items():
            self._insert(self._rows[name], rows)
        self.update_seq = last_seq

    def _remove(self, doc_rows: list[list[tuple]] | None) -> None:
        for name, rows in zip(self._view_names, doc_rows or ()):
            view_rows = self._rows[name]
            for row in rows:
                del view_rows[bisect.bisect_left(view_rows, row[:3], key=_row_position)]

    @staticmethod
    def _insert(view_rows: list[tuple], rows: list[tuple]) -> None:
        if len(rows) > 64:
            view_rows.extend(rows)
            view_rows.sort(key=_row_position)
        else:
            for row in rows:
                bisect.insort(view_rows, row, key=_row_position)

    def query(self, view: str, query: ViewQuery, changes_since: ChangesSince, load_doc: LoadDoc) -> dict:
        """The JSON body CouchDB answers for ``GET``/``POST /{db}/_design/{ddoc}/_view/{view}``."""
        if view not in self.views:
            raise NotFound("missing_named_view")
        reduce_source = self.views[view].get("reduce")
        reduced, level = _validate(query, reduce_source is not None)
        if query.update == "true":
            self.refresh(changes_since)
        rows = self._rows[view]
        if reduced:
            body = {"rows": self._reduce_rows(view, reduce_source, rows, query, level)}
        else:
            body = self._map_rows(rows, query, load_doc)
        if query.update_seq:
            body["update_seq"] = self.update_seq
        if query.update == "lazy":
            # update=lazy / stale=update_after: answer from the index as it is, then bring it up to date
            self.refresh(changes_since)
        return body

    def _ranges(self, rows: list[tuple], query: ViewQuery) -> list[tuple[int, int]]:
        """Index ranges of ``rows`` to return, each in ascending order (reversed later for descending)."""
        if query.keys is not None:
            single = [self._range(rows, True, key, True, key, None, None, True) for key in query.keys]
            return single
        if query.descending:
            return [self._range(rows, query.has_end_key, query.end_key, query.has_start_key, query.start_key,
                                query.end_key_docid, query.start_key_docid, query.inclusive_end, descending=True)]
        return [self._range(rows, query.has_start_key, query.start_key, query.has_end_key, query.end_key,
                            query.start_key_docid, query.end_key_docid, query.inclusive_end)]

    @staticmethod
    def _range(rows, has_low, low, has_high, high, low_docid, high_docid, inclusive, descending=False):
        # Ascending, the end key may be exclusive; descending, the end key is the low bound.
        low_inclusive = inclusive if descending else True
        high_inclusive = True if descending else inclusive
        start = 0
        if has_low:
            low_position = (collation_key(low),) + ((low_docid,) if low_docid is not None else ())
            find = bisect.bisect_left if low_inclusive else bisect.bisect_right
            start = find(rows, low_position, key=_row_key_position(len(low_position)))
        stop = len(rows)
        if has_high:
            high_position = (collation_key(high),) + ((high_docid,) if high_docid is not None else ())
            find = bisect.bisect_right if high_inclusive else bisect.bisect_left
            stop = find(rows, high_position, key=_row_key_position(len(high_position)))
        return start, max(start, stop)

    def _selected_by_range(self, rows: list[tuple], query: ViewQuery) -> Iterable[Iterable[tuple]]:
        for start, stop in self._ranges(rows, query):
            if query.descending:
                yield (rows[i] for i in range(stop - 1, start - 1, -1))
            else:
                yield (rows[i] for i in range(start, stop))

    def _selected(self, rows: list[tuple], query: ViewQuery) -> Iterable[tuple]:
        for selected in self._selected_by_range(rows, query):
            yield from selected

    def _map_rows(self, rows: list[tuple], query: ViewQuery, load_doc: LoadDoc) -> dict:
        ranges = self._ranges(rows, query)
        first_start, first_stop = ranges[0] if ranges else (0, 0)
        offset = (len(rows) - first_stop) if query.descending else first_start
        selected = _page(self._selected(rows, query), query)
        out = []
        for _ckey, doc_id, _n, key, value in selected:
            row = {"id": doc_id, "key": key, "value": value}
            if query.include_docs:
                linked = value.get("_id") if isinstance(value, dict) and isinstance(value.get("_id"), str) else None
                row["doc"] = load_doc(linked or doc_id)
            out.append(row)
        return {"total_rows": len(rows), "offset": min(offset + query.skip, len(rows)), "rows": out}

    def _reduce_rows(self, view: str, reduce_source: str, rows: list[tuple], query: ViewQuery, level) -> list[dict]:
        groups: list[tuple[Any, list[tuple]]] = []
        # Each requested key is its own group even when `keys` repeats it (one fold per key in couch_mrview).
        for selected in self._selected_by_range(rows, query):
            current_key: Any = None
            fresh_range = True
            for row in selected:
                if level == 0:
                    group_key = None
                elif level == "exact":
                    group_key = row[3]
                else:
                    group_key = row[3][:level] if isinstance(row[3], list) else row[3]
                if not fresh_range and (level == 0 or collation_key(group_key) == current_key):
                    groups[-1][1].append(row)
                else:
                    groups.append((group_key, [row]))
                    current_key = collation_key(group_key)
                    fresh_range = False
        out = [{"key": key, "value": self._reduce(view, reduce_source, members)} for key, members in groups]
        return _page(out, query)

    def _reduce(self, view: str, reduce_source: str, rows: list[tuple]) -> Any:
        keys = [[row[3], row[1]] for row in rows]
        values = [row[4] for row in rows]
        if reduce_source.startswith(BUILTIN_REDUCERS):
            return builtin_reduce(reduce_source, keys, values)
        if len(rows) <= JS_REDUCE_CHUNK:
            return self.sandbox.reduce(view, keys, values, False)
        partial = [
            self.sandbox.reduce(view, keys[i:i + JS_REDUCE_CHUNK], values[i:i + JS_REDUCE_CHUNK], False)
            for i in range(0, len(rows), JS_REDUCE_CHUNK)
        ]
        return self.sandbox.reduce(view, None, partial, True)

    def info(self) -> dict:
        """``GET /{db}/_design/{ddoc}/_info`` (``couch_mrview:get_info``)."""
        size = sum(len(json.dumps([r[3], r[4]])) for rows in self._rows.values() for r in rows)
        return {
            "name": self.name,
            "view_index": {
                "collator_versions": [unicodedata.unidata_version],
                "compact_running": False,
                "language": self.ddoc.get("language", "javascript"),
                "purge_seq": 0,
                "signature": self.signature,
                "sizes": {"active": size, "external": size, "file": size},
                "update_seq": self.update_seq if self.update_seq is not None else 0,
                "updater_running": False,
                "updates_pending": {"minimum": 0, "preferred": 0, "total": 0},
                "waiting_clients": 0,
                "waiting_commit": False,
            },
        }


def _row_position(row: tuple) -> tuple:
    return row[:3]


@functools.lru_cache(maxsize=4)
def _row_key_position(length: int) -> Callable[[tuple], tuple]:
    return lambda row: row[:length]


def _page(rows: Iterable, query: ViewQuery) -> list:
    out = []
    for n, row in enumerate(rows):
        if n < query.skip:
            continue
        if query.limit is not None and len(out) >= query.limit:
            break
        out.append(row)
    return out


class DatabaseViews:
    """The view indexes of one database, keyed by design doc id and rebuilt when the views change."""

    def __init__(self) -> None:
        self._indexes: dict[str, DesignIndex] = {}

    def index(self, ddoc: dict) -> DesignIndex:
        index = self._indexes.get(ddoc["_id"])
        if index is None or index.signature != view_signature(ddoc):
            index = self._indexes[ddoc["_id"]] = DesignIndex(ddoc)
        elif index.ddoc.get("_rev") != ddoc.get("_rev"):
            index.ddoc = ddoc
        return index
