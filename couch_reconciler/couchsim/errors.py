"""CouchDB's error answers: an HTTP status plus the exact `{"error": ..., "reason": ...}` body."""

from __future__ import annotations


class CouchError(Exception):
    """Raised anywhere in couchsim; http/app.py turns it into CouchDB's JSON error response."""

    def __init__(self, status: int, error: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {error}: {reason}")
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": self.error, "reason": self.reason}


def bad_request(reason: str) -> CouchError:
    return CouchError(400, "bad_request", reason)


def not_found(reason: str = "missing") -> CouchError:
    return CouchError(404, "not_found", reason)


def db_not_found() -> CouchError:
    return CouchError(404, "not_found", "Database does not exist.")


def conflict() -> CouchError:
    return CouchError(409, "conflict", "Document update conflict.")


def forbidden(reason: str) -> CouchError:
    return CouchError(403, "forbidden", reason)


def unauthorized(reason: str) -> CouchError:
    return CouchError(401, "unauthorized", reason)


def method_not_allowed(allowed: str) -> CouchError:
    # chttpd:send_method_not_allowed/2
    return CouchError(405, "method_not_allowed", f"Only {allowed} allowed", {"Allow": allowed})


def erlang_term(value) -> str:
    """A JSON value as Erlang's `~w` prints its jiffy term: CouchDB puts these in some reasons verbatim
    (e.g. mango's `Selector must be a JSON object, not: <<120>>`)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return "<<" + ",".join(str(b) for b in value.encode("utf-8")) + ">>"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(erlang_term(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{[" + ",".join("{" + erlang_term(k) + "," + erlang_term(v) + "}" for k, v in value.items()) + "]}"
    raise TypeError(type(value))
