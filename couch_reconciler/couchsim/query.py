"""Query-string parameters, read as CouchDB reads them: the one parser every couchsim endpoint uses.

Texts follow couch_mrview_http.erl (parse_boolean/1, parse_int/1, parse_pos_int/1: `Invalid boolean
parameter`, `Invalid value for integer`, `Invalid value for positive integer`), chttpd.erl (a JSON
parameter that does not parse answers like a body that does not: `invalid UTF-8 JSON`) and
couch_replicator_httpd_util.erl (parse_int_param/5, parse_replication_state_filter/1) for `/_scheduler`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import CouchError, bad_request

Query = Mapping[str, str]
ABSENT: Any = ...


def parse_error(reason: str) -> CouchError:
    return CouchError(400, "query_parse_error", reason)


def parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise parse_error(f'Invalid boolean parameter: "{raw}"')


def parse_int(raw: str, positive: bool = True) -> int:
    try:
        number = int(raw)
    except ValueError:
        raise parse_error(f'Invalid value for integer: "{raw}"') from None
    if positive and number < 0:
        raise parse_error(f'Invalid value for positive integer: "{raw}"')
    return number


def parse_json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise bad_request("invalid UTF-8 JSON") from None


def boolean(query: Query, name: str, default: bool = False) -> bool:
    raw = query.get(name)
    return default if raw is None else parse_bool(raw)


def integer(query: Query, name: str, default: int | None = None) -> int | None:
    """A non-negative integer parameter."""
    raw = query.get(name)
    return default if raw is None else parse_int(raw)


def json_value(query: Query, *names: str) -> Any:
    """The first of `names` present, JSON-decoded (startkey, start_key, keys...); ABSENT when none is."""
    for name in names:
        raw = query.get(name)
        if raw is not None:
            return parse_json(raw)
    return ABSENT


def ranged_int(query: Query, name: str, default: int | None) -> int | None:
    """couch_replicator_httpd_util:parse_int_param/5 (min 0, no max), as `/_scheduler/*` reads skip/limit."""
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise parse_error(f'Invalid value for {name}: "{raw}"') from None
    if value < 0:
        raise parse_error(f"{name} not in range of [0,infinity]")
    return value


def states(query: Query, known: Sequence[str]) -> list[str]:
    """couch_replicator_httpd_util:parse_replication_state_filter/1: `states=a,b`, each one of `known`."""
    raw = query.get("states")
    if not raw:
        return []
    chosen = [s.lower() for s in raw.split(",") if s]
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise parse_error(f"Unknown states {unknown}. Choose from: [{','.join(known)}]")
    return chosen
