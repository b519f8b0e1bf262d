"""The built-in reducers `_sum`, `_count`, `_stats` and `_approx_count_distinct`, as couch_query_servers.erl
runs them; a value `_sum` or `_stats` refuses answers 500 ``invalid_value`` (throw_sum_error/throw_stat_error)."""

from __future__ import annotations

import functools
import json
from typing import Any

from .collation import collation_key
from .js import QueryServerError

SUM_ERROR = (
    "The _sum function requires that map values be numbers, arrays of numbers, or objects. "
    "Objects cannot be mixed with other data structures. Objects can be arbitrarily nested, "
    "provided that the values for all fields are themselves numbers, arrays of numbers, or objects."
)


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
