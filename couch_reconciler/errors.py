"""Errors a user sees as one line (never a traceback)."""

from __future__ import annotations


class ReconcileError(Exception):
    """Anything that stops a command; its message is the one line the user reads."""


class ServerError(ReconcileError):
    """The server refused, failed, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, error: str | None = None, uncertain: bool = False,
                 reason: str | None = None):
        super().__init__(message)
        self.status = status  # HTTP status, None when no answer came
        self.error = error  # CouchDB's `error` field: "conflict", "not_found", "unauthorized"...
        self.reason = reason  # and its `reason`
        self.uncertain = uncertain  # a write was sent and no answer came: it may or may not have happened
