"""Watch's log: one action, one line, whatever the server's error text holds.

A real CouchDB's error reasons can span lines: an Erlang term printed by `io_lib:format("~p", ...)` breaks
long terms over several lines (e.g. a `_replication_state_reason` or a 500's `reason`)."""

from __future__ import annotations

import io
import json

from couch_reconciler.watch import ActionLog

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
