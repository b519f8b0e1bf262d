"""Watch's log: one action, one line, whatever the server's error text holds.

A real CouchDB's error reasons can span lines: an Erlang term printed by `io_lib:format("~p", ...)` breaks
long terms over several lines (e.g. a `_replication_state_reason` or a 500's `reason`)."""

from __future__ import annotations

import io
import json

from couch_reconciler.kinds.user_databases import user_database
from couch_reconciler.watch import ActionLog
from couch_reconciler.watch.log import listed

REASON = "{badmatch,\n    {error,\n        {conn_failed,{error,econnrefused}}}}"


def test_a_multi_line_server_error_is_one_text_line():
    stream = io.StringIO()
    ActionLog("text", stream)("reconcile", "full", "", f"failed: 500 {REASON}", level="error")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("failed: 500 {badmatch, {error, {conn_failed,{error,econnrefused}}}}")


def test_a_multi_line_server_error_is_one_json_line_with_the_text_folded():
    stream = io.StringIO()
    ActionLog("json", stream)("replicate", "replication", "a.b", f"failed: {REASON}", level="error")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["outcome"] == "failed: {badmatch, {error, {conn_failed,{error,econnrefused}}}}"


def test_a_burst_is_named_in_full_up_to_a_hundred_then_counted():
    """A targeted reconcile's key says what it acted on: every user and database, whole, however long their
    names (a user database's name is twice its user's in hex); past a hundred, how many more."""
    databases = [user_database("userdb-", f"user-{n:03}-" + "x" * 40) for n in range(101)]
    assert listed(databases[:100]) == ", ".join(databases[:100])
    assert listed(databases) == ", ".join(databases[:100]) + ", 1 more"
