"""Helpers for the kinds' semantic checks (ManifestKind.check): CouchDB's naming rules and the
cross-references every kind checks the same way, each yielding Diagnostics a user acts on."""

from __future__ import annotations

import difflib
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from ..model import DATABASE_MANIFEST, ROLE_MANIFEST, USER_DATABASES_MANIFEST, Diagnostic, Manifest

# CouchDB's rule for database names (couch_db.erl DBNAME_REGEX); `_` names are the system databases.
DATABASE_NAME = re.compile(r"[a-z][a-z0-9_$()+/-]*")
SYSTEM_DATABASES = ("_users", "_replicator", "_global_changes")
# CouchDB 3.x stores a shard as `shards/RANGE/NAME.TIMESTAMP.couch`: NAME + 17 bytes must fit a 255-byte
# file name (apache/couchdb#2174 made the same 238-byte limit explicit for later versions).
DATABASE_NAME_MAX_BYTES = 238
USER_DATABASE_PREFIX = "userdb-"  # [couch_peruser] database_prefix's default


def closest(word: str, choices: Iterable[str], listing: str) -> str:
    """A hint naming the nearest of `choices` to a misspelt `word`, or listing them all."""
    choices = sorted(choices)
    match = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean `{match[0]}`?" if match else f"{listing}: {', '.join(choices)}"


def database_name_problem(name: str) -> str | None:
    """Why CouchDB would refuse `name` as a database name, or None."""
    if name in SYSTEM_DATABASES:
        return None
    if name.startswith("_"):
        return (f"`{name}` is not a system database; names starting with `_` are reserved "
                f"({', '.join(SYSTEM_DATABASES)})")
    if not DATABASE_NAME.fullmatch(name):
        return (f"`{name}` is not a valid CouchDB database name: it must start with a lowercase letter and hold "
                "only a-z, 0-9 and _ $ ( ) + - /")
    if len(name.encode()) > DATABASE_NAME_MAX_BYTES:
        return f"the database name is {len(name.encode())} bytes long, above CouchDB's {DATABASE_NAME_MAX_BYTES}"
    return None


def user_name_problem(name: str) -> str | None:
    """Why `_users` (its _auth validation function) would refuse `name`, or None."""
    if name.startswith("_"):
        return f"user name `{name}` starts with `_`, which `_users` refuses (reserved for system names)"
    if ":" in name:
        return f"user name `{name}` holds `:`, which `_users` refuses (and HTTP basic auth could not carry)"
    if name != name.strip():
        return f"user name `{name}` starts or ends with spaces, which no login form sends"
    return None


# Each manifest with roles asks for the declared roles, each reference to a database whether it is declared;
# computed once per validation (`declaring`, around the checks of the one list a validation passes to every
# check), so 10,000 manifests cost one pass over the manifests, not 10,000. Dropped when the validation ends:
# the manifests are not kept alive through the plan and apply that follow, nor between watch's reloads.
@dataclass(frozen=True)
class _Declared:
    every: Sequence[Manifest]
    roles: frozenset[str]
    databases: frozenset[str]
    prefixes: tuple[str, ...]  # of the databases UserDatabases templates produce


_declared: _Declared | None = None


@contextmanager
def declaring(every: Sequence[Manifest]) -> Iterator[None]:
    """Checks of `every` inside the block share one pass over it."""
    global _declared
    _declared = _declare(every)
    try:
        yield
    finally:
        _declared = None


def _declarations(every: Sequence[Manifest]) -> _Declared:
    return _declared if _declared is not None and _declared.every is every else _declare(every)


def _declare(every: Sequence[Manifest]) -> _Declared:
    return _Declared(every, frozenset(m.name for m in every if m.kind == ROLE_MANIFEST),
                     frozenset(m.name for m in every if m.kind == DATABASE_MANIFEST),
                     tuple(m.spec.get("prefix", USER_DATABASE_PREFIX) for m in every
                           if m.kind == USER_DATABASES_MANIFEST))


def declared_roles(every: Sequence[Manifest]) -> frozenset[str]:
    return _declarations(every).roles


def role_diagnostics(manifest: Manifest, path: tuple[str | int, ...], roles: Sequence[str],
                     every: Sequence[Manifest]) -> Iterator[Diagnostic]:
    """Roles in a security object must be declared by a Role manifest (system roles such as `_admin` excepted)."""
    declared = declared_roles(every)
    for index, role in enumerate(roles):
        if not role.startswith("_") and role not in declared:
            yield Diagnostic.at(manifest, path + (index,), f"role `{role}` is not declared by any Role manifest",
                                closest(role, declared, "declare it with `kind: Role`; declared roles are")
                                if declared else "declare it with `kind: Role`")


def database_is_declared(name: str, every: Sequence[Manifest]) -> bool:
    """A Database manifest declares it, a UserDatabases template produces it, or CouchDB itself owns it."""
    declared = _declarations(every)
    return name in SYSTEM_DATABASES or name in declared.databases or name.startswith(declared.prefixes)


def undeclared_database(manifest: Manifest, path: tuple[str | int, ...], name: str,
                        every: Sequence[Manifest]) -> Iterator[Diagnostic]:
    problem = database_name_problem(name)
    if problem:
        yield Diagnostic.at(manifest, path, problem, "fix the name")
    elif not database_is_declared(name, every):
        declared = [m.name for m in every if m.kind == DATABASE_MANIFEST]
        yield Diagnostic.at(manifest, path, f"database `{name}` is not declared by any manifest",
                            closest(name, declared, "declare it with `kind: Database` (unless it exists already); "
                                                    "declared databases are") if declared
                            else "declare it with `kind: Database` unless it already exists", severity="warning")
