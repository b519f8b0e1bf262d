"""The JavaScript query server of couchsim: design-document functions run in QuickJS.

CouchDB 3.4 can run its query server on QuickJS (``src/couch_quickjs``); the ``quickjs`` wheel embeds
the same engine, so syntax and runtime behaviour match what a real server accepts. What follows
mirrors ``share/server/*.js`` of apache/couchdb without copying it:

- functions are compiled from source strings the way ``couchjs`` evaluates them: CouchDB patches
  QuickJS (``patches/01-spidermonkey-185-mode.patch``) so a top-level anonymous ``function(doc){...}``
  is an expression whose value the evaluation returns; stock QuickJS refuses it, so we prefix such
  a statement with ``0,`` (same line, same column count is irrelevant: errors report lines);
- a view's map functions see ``require`` rooted at ``{views: {lib: ddoc.views.lib}}`` (``state.js``),
  other design-document functions see it rooted at the design document (``util.js``);
- each document is frozen before mapping, so one map function cannot alter what the next sees
  (``views.js`` ``recursivelySeal``); a map function that throws emits nothing for that document;
- ``validate_doc_update`` throwing ``{forbidden: msg}`` / ``{unauthorized: msg}`` becomes 403 / 401
  (``couch_query_servers:validate_doc_update``); another thrown object or string becomes
  ``unknown_error``; a JavaScript exception (TypeError...) surfaces as :class:`JavaScriptError`.

One :class:`DesignSandbox` is one QuickJS context (one runtime) per design-document revision: the
functions of one design doc share a global object, where couchjs gives each its own; nothing
observable by well-behaved functions depends on it. A context must be used from the thread that
created it (QuickJS checks the native stack against the creating thread's).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

import quickjs

from .errors import CouchError

LOG = logging.getLogger("couch_reconciler.couchsim.js")

# couchjs: os_process_timeout (5 s) bounds one call into the query server.
CALL_TIME_LIMIT_SECONDS = 5
# Docs per call into the engine: one JSON string in, one out, instead of a call per doc.
MAP_BATCH_SIZE = 500

_ANONYMOUS_FUNCTION_STATEMENT = re.compile(
    r"\A((?:\s|//[^\n]*(?:\n|\Z)|/\*.*?\*/)*)(?=(?:async\s+)?function\s*\()", re.DOTALL
)

_PRELUDE = r"""
var __couchsim = (function () {
  var emitted = null;
  // Python cannot be called while a time limit is set: messages wait here until the call returns.
  var logged = [];

  function emit(key, value) {
    emitted.push([key, value]);
  }

  function sum(values) {
    var total = 0;
    for (var i = 0; i < values.length; i++) total += values[i];
    return total;
  }

  function isArray(value) {
    return Array.isArray(value);
  }

  function log(message) {
    if (logged.length < 1000) logged.push(typeof message == "string" ? message : JSON.stringify(message));
  }

  function deepFreeze(value) {
    if (value !== null && typeof value == "object") {
      Object.freeze(value);
      for (var name in value) deepFreeze(value[name]);
    }
    return value;
  }

  // CommonJS modules are strings inside a design document; a path walks the object from
  // `root`, "." and ".." are relative to the requiring module, and each module runs once.
  function makeRequire(root) {
    var cache = {};
    function resolve(path, parentId) {
      var parts = parentId !== null && (path.indexOf("./") == 0 || path.indexOf("../") == 0)
        ? parentId.split("/").slice(0, -1).concat(path.split("/"))
        : path.split("/");
      var resolved = [];
      for (var i = 0; i < parts.length; i++) {
        if (parts[i] == "." || parts[i] == "") continue;
        if (parts[i] == "..") {
          if (resolved.length == 0) {
            throw ["error", "invalid_require_path", "Object has no parent " + JSON.stringify(path)];
          }
          resolved.pop();
        } else {
          resolved.push(parts[i]);
        }
      }
      var node = root;
      for (var j = 0; j < resolved.length; j++) {
        if (node === null || typeof node != "object" || node[resolved[j]] === undefined) {
          throw ["error", "invalid_require_path",
                 'Object has no property "' + resolved[j] + '". ' + JSON.stringify(node)];
        }
        node = node[resolved[j]];
      }
      if (typeof node != "string") {
        throw ["error", "invalid_require_path",
               "Must require a JavaScript string, not: " + typeof node];
      }
      return {id: resolved.join("/"), source: node};
    }
    function requireFrom(parentId) {
      return function (path) {
        var target = resolve(path, parentId);
        if (!Object.prototype.hasOwnProperty.call(cache, target.id)) {
          var module = {id: target.id, exports: {}};
          cache[target.id] = module.exports;
          try {
            var body = (0, eval)("(function (module, exports, require) { " + target.source + "\n })");
            body.call(globalThis, module, module.exports, requireFrom(target.id));
          } catch (e) {
            throw ["error", "compilation_error",
                   "Module require('" + path + "') raised error " + (e && e.stack || String(e))];
          }
          cache[target.id] = module.exports;
        }
        return cache[target.id];
      };
    }
    return requireFrom(null);
  }

  var functions = [];

  function register(outcome) {
    if (typeof outcome != "function") return outcome;
    functions.push(outcome);
    return {index: functions.length - 1};
  }

  function describe(e) {
    if (e instanceof Error) return {kind: "exception", name: e.name, message: e.message};
    if (Array.isArray(e) && e.length == 3) return {kind: "error", name: e[1], message: String(e[2])};
    return {kind: "thrown", value: e === undefined ? null : e};
  }

  return {
    emit: emit, sum: sum, isArray: isArray, log: log,

    drainLog: function () {
      var out = JSON.stringify(logged);
      logged = [];
      return out;
    },

    compileView: function (source, lib) {
      return JSON.stringify(register(__couchsim_compile(source, makeRequire({views: {lib: lib}}))));
    },
    compileDesign: function (source, ddoc) {
      return JSON.stringify(register(__couchsim_compile(source, makeRequire(ddoc))));
    },

    // For each doc, for each map function: the [key, value] pairs it emitted.
    mapBatch: function (indexesJson, docsJson) {
      var indexes = JSON.parse(indexesJson), docs = JSON.parse(docsJson), out = [];
      for (var d = 0; d < docs.length; d++) {
        var doc = deepFreeze(docs[d]), perView = [];
        for (var f = 0; f < indexes.length; f++) {
          emitted = [];
          try {
            functions[indexes[f]](doc);
          } catch (e) {
            emitted = [];
            log("function raised exception " + JSON.stringify(describe(e)) + " with doc._id " + doc._id);
          }
          perView.push(emitted);
        }
        out.push(perView);
      }
      emitted = null;
      return JSON.stringify(out);
    },

    call: function (index, argsJson) {
      try {
        var result = functions[index].apply(null, JSON.parse(argsJson));
        return JSON.stringify({ok: result === undefined ? null : result});
      } catch (e) {
        return JSON.stringify({thrown: describe(e)});
      }
    },

    validate: function (index, argsJson) {
      try {
        functions[index].apply(null, JSON.parse(argsJson));
        return JSON.stringify({ok: true});
      } catch (e) {
        return JSON.stringify({thrown: describe(e)});
      }
    },

    filterBatch: function (index, docsJson, reqJson) {
      var docs = JSON.parse(docsJson), req = JSON.parse(reqJson), passes = [];
      for (var i = 0; i < docs.length; i++) {
        passes.push(Boolean(functions[index](deepFreeze(docs[i]), req)));
      }
      return JSON.stringify(passes);
    }
  };
})();
// Outside the engine's closure so that the evaluated source sees only globals and `require`,
// a local of this frame that the direct eval exposes to it.
function __couchsim_compile(__source, require) {
  var __fn;
  try {
    __fn = eval(__source);
  } catch (e) {
    return {error: "compilation_error", line: e.lineNumber || 1};
  }
  return typeof __fn == "function" ? __fn : {error: "not_a_function"};
}
var emit = __couchsim.emit, sum = __couchsim.sum, isArray = __couchsim.isArray;
var log = __couchsim.log, toJSON = JSON.stringify;
"""


class QueryServerError(CouchError):
    """An error of the query server, answered as CouchDB does: ``{"error": error, "reason": reason}`` with
    the status of its class."""

    status = 500

    def __init__(self, error: str, reason: str):
        super().__init__(self.status, error, reason)


class CompilationError(QueryServerError):
    status = 400

    def __init__(self, reason: str):
        super().__init__("compilation_error", reason)


class InvalidDesignDoc(QueryServerError):
    status = 400

    def __init__(self, reason: str):
        super().__init__("invalid_design_doc", reason)


class Forbidden(QueryServerError):
    status = 403

    def __init__(self, reason: str):
        super().__init__("forbidden", reason)


class Unauthorized(QueryServerError):
    status = 401

    def __init__(self, reason: str):
        super().__init__("unauthorized", reason)


class JavaScriptError(QueryServerError):
    """A function raised a JavaScript exception (TypeError...) or threw CouchDB's error triple."""


BUILTIN_REDUCERS = ("_sum", "_count", "_stats", "_approx_count_distinct")


def _as_expression(source: str) -> str:
    return _ANONYMOUS_FUNCTION_STATEMENT.sub(r"\g<1>0,", source, count=1)


def _compilation_reason(source: str, outcome: dict) -> str:
    # util.js builds the reason from the QuickJS error's stack, which names the (undefined)
    # script and the line, followed by the source in parentheses.
    if outcome["error"] == "not_a_function":
        return f"Expression does not eval to a function. ({source})"
    return f"    at undefined:{outcome['line']}\n ({source})"


def _raise_thrown(thrown: dict) -> None:
    if thrown["kind"] == "thrown":
        value = thrown["value"]
        if isinstance(value, dict) and len(value) == 1:
            ((error, reason),) = value.items()
            if error == "forbidden":
                raise Forbidden(reason)
            if error == "unauthorized":
                raise Unauthorized(reason)
            raise QueryServerError("unknown_error", reason)
        raise QueryServerError("unknown_error", value if isinstance(value, str) else json.dumps(value))
    raise JavaScriptError(thrown["name"], thrown["message"])


class DesignSandbox:
    """The compiled JavaScript of one design-document revision."""

    def __init__(self, ddoc: dict, time_limit: float = CALL_TIME_LIMIT_SECONDS):
        self.ddoc = ddoc
        self._context = quickjs.Context()
        self._context.set_time_limit(time_limit)
        self._context.eval(_PRELUDE)
        self._compile_view = self._context.eval("__couchsim.compileView")
        self._compile_design = self._context.eval("__couchsim.compileDesign")
        self._map_batch = self._context.eval("__couchsim.mapBatch")
        self._call = self._context.eval("__couchsim.call")
        self._validate = self._context.eval("__couchsim.validate")
        self._filter_batch = self._context.eval("__couchsim.filterBatch")
        self._drain_log = self._context.eval("__couchsim.drainLog")
        self._compiled: dict[tuple[str, ...], int] = {}
        self._views_lib = json.dumps((ddoc.get("views") or {}).get("lib"))
        self._ddoc_json = json.dumps(ddoc)

    def _function(self, path: tuple[str, ...], source: str, *, for_view: bool) -> int:
        index = self._compiled.get(path)
        if index is None:
            if for_view:
                outcome = json.loads(self._invoke(self._compile_view, _as_expression(source), self._parse(self._views_lib)))
            else:
                outcome = json.loads(self._invoke(self._compile_design, _as_expression(source), self._parse(self._ddoc_json)))
            if "error" in outcome:
                raise CompilationError(_compilation_reason(source, outcome))
            index = self._compiled[path] = outcome["index"]
        return index

    def _invoke(self, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except quickjs.JSException as error:
            # Interrupts (the time limit) and engine limits cannot be caught inside JavaScript.
            if str(error).startswith("InternalError: interrupted"):
                raise QueryServerError("os_process_error", "OS process timed out.") from None
            raise JavaScriptError("InternalError", str(error).splitlines()[0]) from None
        finally:
            for message in json.loads(self._drain_log()):
                LOG.info("%s", message)

    def _parse(self, text: str) -> Any:
        return self._context.parse_json(text)

    def view_source(self, view: str, part: str) -> str:
        source = self.ddoc["views"][view][part]
        if not isinstance(source, str):
            raise InvalidDesignDoc(f"`views.{view}.{part}` field must have string type")
        return source

    def check_views(self) -> None:
        """Compile every view as CouchDB does when a design document is written
        (``couch_mrview:validate`` calling ``couch_query_servers:try_compile``)."""
        for name, view in view_definitions(self.ddoc).items():
            try:
                self._function(("views", name, "map"), self.view_source(name, "map"), for_view=True)
            except CompilationError as error:
                raise CompilationError(
                    f"Compilation of the map function in the '{name}' view failed: {error.reason}"
                ) from None
            reduce = view.get("reduce")
            if reduce is None:
                continue
            if reduce.startswith("_"):
                if not reduce.startswith(BUILTIN_REDUCERS):
                    raise InvalidDesignDoc(f"`{reduce}` is not a supported reduce function.")
                continue
            try:
                self._function(("views", name, "reduce"), reduce, for_view=True)
            except CompilationError as error:
                raise CompilationError(
                    f"Compilation of the reduce function in the '{name}' view failed: {error.reason}"
                ) from None

    def map_docs(self, views: Sequence[str], docs: Iterable[dict]) -> list[list[list[list[Any]]]]:
        """For each doc, for each of ``views``: the ``[key, value]`` pairs its map emitted."""
        indexes = json.dumps([self._function(("views", v, "map"), self.view_source(v, "map"), for_view=True) for v in views])
        results: list = []
        batch: list[dict] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) == MAP_BATCH_SIZE:
                results.extend(json.loads(self._invoke(self._map_batch, indexes, json.dumps(batch))))
                batch = []
        if batch:
            results.extend(json.loads(self._invoke(self._map_batch, indexes, json.dumps(batch))))
        return results

    def reduce(self, view: str, keys: list | None, values: list, rereduce: bool) -> Any:
        """Run the view's JavaScript reduce: ``keys`` are ``[key, doc_id]`` pairs, None on rereduce."""
        index = self._function(("views", view, "reduce"), self.view_source(view, "reduce"), for_view=True)
        outcome = json.loads(self._invoke(self._call, index, json.dumps([keys, values, rereduce])))
        if "thrown" in outcome:
            _raise_thrown(outcome["thrown"])
        return outcome["ok"]

    def validate(self, new_doc: dict, old_doc: dict | None, user_ctx: dict, sec_obj: dict) -> None:
        """Raise :class:`Forbidden` / :class:`Unauthorized` as CouchDB does when the design
        document's ``validate_doc_update`` throws; return quietly when it accepts the write."""
        index = self._function(("validate_doc_update",), self.ddoc["validate_doc_update"], for_view=False)
        outcome = json.loads(self._invoke(self._validate, index, json.dumps([new_doc, old_doc, user_ctx, sec_obj])))
        if "thrown" in outcome:
            _raise_thrown(outcome["thrown"])

    def filter_docs(self, name: str, docs: Sequence[dict], req: dict) -> list[bool]:
        """Run ``filters[name](doc, req)`` over ``docs`` (``_changes?filter=ddoc/name``)."""
        source = (self.ddoc.get("filters") or {}).get(name)
        if not isinstance(source, str):
            raise QueryServerError("not_found", f"missing filters function {name} on design doc {self.ddoc.get('_id')}")
        index = self._function(("filters", name), source, for_view=False)
        return json.loads(self._invoke(self._filter_batch, index, json.dumps(list(docs)), json.dumps(req)))


def view_definitions(ddoc: dict) -> dict[str, dict]:
    """The views of a design doc with a map function (``views.lib`` holds modules, not a view)."""
    views = ddoc.get("views")
    if not isinstance(views, dict):
        return {}
    return {name: view for name, view in views.items() if name != "lib" and isinstance(view, dict) and "map" in view}


class DesignSandboxes:
    """Compiled design documents by id and revision, so a write is validated without recompiling.

    Bounded because each sandbox is a QuickJS runtime (~100 KB); like couchjs processes, an
    evicted one is simply compiled again when needed."""

    def __init__(self, capacity: int = 256):
        self._capacity = capacity
        self._by_revision: dict[tuple[str, str | None], DesignSandbox] = {}

    def get(self, ddoc: dict) -> DesignSandbox:
        revision = (ddoc["_id"], ddoc.get("_rev"))
        sandbox = self._by_revision.pop(revision, None)
        if sandbox is None or sandbox.ddoc != ddoc:
            sandbox = DesignSandbox(ddoc)
        self._by_revision[revision] = sandbox
        while len(self._by_revision) > self._capacity:
            del self._by_revision[next(iter(self._by_revision))]
        return sandbox

    def validate(self, ddocs: Iterable[dict], new_doc: dict, old_doc: dict | None, user_ctx: dict, sec_obj: dict) -> None:
        """Run every ``validate_doc_update`` of ``ddocs`` on a write, as ``couch_db`` does before
        storing any document; the first refusal raises :class:`Forbidden` or :class:`Unauthorized`."""
        for ddoc in ddocs:
            if isinstance(ddoc.get("validate_doc_update"), str):
                self.get(ddoc).validate(new_doc, old_doc, user_ctx, sec_obj)
