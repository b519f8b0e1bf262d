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
their error messages; ``update_args``/``key_opts``: ranges), ``couch_mrview_http.erl`` (parameter
parsing, with couch_reconciler/couchsim/query.py). Rows sort by key (couch_reconciler/couchsim/collation.py), then by doc id as raw
bytes; the built-in reducers are couch_reconciler/couchsim/reducers.py.
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

from .collation import collation_key
from .js import BUILTIN_REDUCERS, DesignSandbox, QueryServerError, view_definitions
from .query import parse_bool, parse_int, parse_json
from .reducers import builtin_reduce

ChangesSince = Callable[[Any], Iterable[tuple[str, dict | None, bool, Any]]]
LoadDoc = Callable[[str], dict | None]

# JavaScript reduce runs over chunks of rows and rereduces the partial results, as CouchDB's
# B-tree nodes make it do; a reduce that ignores `rereduce` fails here as it would there.
JS_REDUCE_CHUNK = 256


class QueryParseError(QueryServerError):
    status = 400

    def __init__(self, reason: str):
        super().__init__("query_parse_error", reason)


class NotFound(QueryServerError):
    status = 404

    def __init__(self, reason: str):
        super().__init__("not_found", reason)



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


def parse_view_query(params: Mapping[str, str], body: Mapping[str, Any] | None = None) -> ViewQuery:
    """Read a view request's query string (and a POST body's ``keys``) as ``couch_mrview_http`` does."""
    query = ViewQuery()
    for name, raw in params.items():
        if name == "reduce":
            query.reduce = parse_bool(raw)
        elif name == "group":
            query.group = parse_bool(raw)
        elif name == "group_level":
            query.group_level = parse_int(raw)
        elif name == "key":
            query.start_key = query.end_key = parse_json(raw)
            query.has_start_key = query.has_end_key = True
        elif name == "keys":
            query.keys = parse_json(raw)
        elif name in ("startkey", "start_key"):
            query.start_key, query.has_start_key = parse_json(raw), True
        elif name in ("endkey", "end_key"):
            query.end_key, query.has_end_key = parse_json(raw), True
        elif name in ("startkey_docid", "start_key_doc_id"):
            query.start_key_docid = raw
        elif name in ("endkey_docid", "end_key_doc_id"):
            query.end_key_docid = raw
        elif name == "inclusive_end":
            query.inclusive_end = parse_bool(raw)
        elif name == "include_docs":
            query.include_docs = parse_bool(raw)
        elif name == "limit":
            query.limit = parse_int(raw)
        elif name == "skip":
            query.skip = parse_int(raw)
        elif name == "descending":
            query.descending = parse_bool(raw)
        elif name == "update":
            if raw not in ("true", "false", "lazy"):
                raise QueryParseError("Invalid value for `update`.")
            query.update = raw
        elif name == "stale":
            if raw not in ("ok", "update_after"):
                raise QueryParseError(f'Invalid value for `stale`: "{raw}"')
            query.update = "false" if raw == "ok" else "lazy"
        elif name == "update_seq":
            query.update_seq = parse_bool(raw)
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
        raise QueryParseError("Multi-key fetches for reduce views must use `group=true`")
    if query.keys is not None and not isinstance(query.keys, list):
        raise QueryParseError("`keys` must be an array of strings.")
    if query.keys and (query.has_start_key or query.has_end_key):
        raise QueryParseError("`keys` is incompatible with `key`, `start_key` and `end_key`")
    if not reduced and level != 0:
        raise QueryParseError("Invalid use of grouping on a map view.")
    if reduced and query.include_docs:
        raise QueryParseError("`include_docs` is invalid for reduce")
    return reduced, level




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
