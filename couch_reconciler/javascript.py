"""Offline syntax check of design-document JavaScript, with the line to fix.

CouchDB 3.4 compiles view functions when a design document is written and refuses a bad one with
400 ``compilation_error`` whose reason hides the parser's message; checking before ``apply`` lets
``validate``/``plan`` point at the line instead. QuickJS is the engine CouchDB 3.4 ships, patched so
that a script made of an anonymous ``function (doc) {...}`` evaluates to that function
(``src/couch_quickjs/patches/01-spidermonkey-185-mode.patch``); stock QuickJS reads such a
statement as a nameless declaration, so it is checked here as the operand of a comma expression.

The ``quickjs`` module is the optional ``js`` extra: PyPI has its wheels only for some platforms (no
aarch64, no musl, no CPython 3.13 with quickjs 1.19.4), and a tool that cannot install is worse than one
that leaves this check to CouchDB. Without it ``AVAILABLE`` is false and callers say what they skipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

try:
    import quickjs
except ImportError:
    AVAILABLE = False
else:
    AVAILABLE = True

UNAVAILABLE_HINT = "install the `js` extra (pip install 'couch-reconciler[js]') to check them before apply"

_LEADING_TRIVIA = re.compile(r"(?:\s+|//[^\n]*|/\*.*?\*/)*", re.DOTALL)
_ANONYMOUS_FUNCTION = re.compile(r"(?:async\s+)?function\s*\(")

# Evaluating defines the function without calling it; a script's own top-level code does run,
# as it does in CouchDB, hence the time limit.
_EVALUATE = """(function (source) {
  try {
    var value = (0, eval)(source);
    return JSON.stringify(typeof value == "function" ? null : [1, "it does not evaluate to a function"]);
  } catch (error) {
    return JSON.stringify([error.lineNumber || 1, String(error)]);
  }
})"""


@dataclass(frozen=True)
class JavaScriptProblem:
    line: int  # 1-based, within the function's source
    message: str


def check_function(source: str) -> JavaScriptProblem | None:
    """None when CouchDB would compile ``source`` as a function, else where and why it would not."""
    trivia = len(_LEADING_TRIVIA.match(source)[0])  # type: ignore[index]  # the pattern matches "" too
    if _ANONYMOUS_FUNCTION.match(source, trivia):
        source = f"{source[:trivia]}0,{source[trivia:]}"
    context = quickjs.Context()
    context.set_time_limit(1)
    try:
        outcome = json.loads(context.eval(_EVALUATE)(source))
    except quickjs.JSException as error:
        return JavaScriptProblem(1, f"evaluating it does not finish: {str(error).splitlines()[0]}")
    return None if outcome is None else JavaScriptProblem(*outcome)
