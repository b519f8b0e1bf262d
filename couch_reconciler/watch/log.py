"""Watch's output: one line per action, as text or as a JSON object."""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timezone
from typing import Any, Protocol, Sequence, TextIO


class Log(Protocol):
    """What the parts of watch call to say what they did (ActionLog, or a test's recorder)."""

    def __call__(self, action: str, kind: str = "", key: str = "", outcome: str = "ok",
                 level: str = "info") -> None: ...


class ActionLog:
    """One line per action on `stream`: text, or a JSON object (ts, level, action, kind, key, outcome).
    Callers pass names, keys and outcomes only, never a document, so no secret can reach a line. An
    outcome quoting the server (a real CouchDB's error reasons may hold newlines, an Erlang term printed
    over several lines) is folded onto one line, so that one action stays one line for `grep` and log
    shippers."""

    def __init__(self, fmt: str = "text", stream: TextIO | None = None):
        self.fmt = fmt
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, action: str, kind: str = "", key: str = "", outcome: str = "ok", level: str = "info") -> None:
        ts = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        outcome = one_line(outcome)
        if self.fmt == "json":
            line = json.dumps({"ts": ts, "level": level, "action": action, "kind": kind, "key": key,
                               "outcome": outcome}, ensure_ascii=False)
        else:
            subject = f"{kind}/{key}" if kind and key else kind or key
            line = f"{ts} {level:<7} {action:<10} {subject}{': ' if subject else ''}{outcome}"
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


# A burst of thousands of sign-ups stays one line that log shippers take whole (Docker splits a line over 16 KiB
# into partial messages: moby daemon/logger/copier.go `defaultBufSize`); a burst of up to this many is named in full.
LISTED_NAMES = 100


def listed(names: Sequence[str]) -> str:
    """`names` for a line's key: every one up to LISTED_NAMES, then how many more, never cut mid-name."""
    more = [f"{len(names) - LISTED_NAMES} more"] if len(names) > LISTED_NAMES else []
    return ", ".join([*names[:LISTED_NAMES], *more])


def short(seq: Any) -> str:
    """A feed position for a log line: CouchDB's are long opaque strings; the number before `-` says enough."""
    text = str(seq)
    return text.split("-", 1)[0] if "-" in text else text
