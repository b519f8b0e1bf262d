"""View collation: a sort key ordering JSON values as CouchDB's views do (couch_ejson_compare, "Views
Collation" in CouchDB's documentation): null < false < true < numbers < strings < arrays < objects.

Strings approximate CouchDB's ICU collation (UCA, root locale, tertiary strength): compared first ignoring
case and accents, with whitespace and punctuation before digits before letters; then accents; then case,
lowercase first (``"a" < "A" < "aa" < "b"``). Non-Latin scripts and contractions are ordered by code point
within that scheme.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Any

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
