"""One requests.Session with a bounded pool of keep-alive connections, and a bounded thread pool to use it.

Every stage that talks to CouchDB goes through CouchSession, so the pool size,
TLS settings, timeouts, retries of safe requests and error wording live here once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ProtocolError
from urllib3.util.retry import Retry

from .errors import ReconcileError, ServerError
from .reads import SessionReads

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_POOL = 16
ALL_DOCS_PAGE = 1000  # rows per `_all_docs` page or keyed read: ~1 MB of typical user or replication documents
WRITE_ATTEMPTS = 3  # for idempotent writes, matching the transport's retries of reads
# POST endpoints that only read (CouchDB takes their keys in the body): no answer to one changed nothing.
READING_POSTS = frozenset({"_all_docs", "_dbs_info", "_bulk_get", "_find", "_explain", "_changes", "_revs_diff"})


@dataclass(frozen=True)
class Connection:
    url: str
    user: str | None = None
    password: str | None = None
    pool: int = DEFAULT_POOL
    timeout: float = 30.0
    verify: bool | str = True  # False, True or a CA bundle path (--cacert)


def connection(server: str | None, user: str | None, password_file: str | None, cacert: str | None,
               pool: int = DEFAULT_POOL, timeout: float = 30.0) -> Connection:
    """The connection the command-line options (and their environment variables) name. Credentials written
    in the URL are moved out of it, so the URL can be shown and saved in plan files; the password comes from
    --password-file, else the URL, else $COUCHDB_PASSWORD."""
    if not server:
        raise ReconcileError("no server given: set COUCHDB_URL or pass --server URL")
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The URL itself is not repeated: it may carry a password.
        raise ReconcileError("--server (or COUCHDB_URL) is not an http(s) URL with a host; "
                             "give e.g. http://127.0.0.1:5984")
    password = os.environ.get("COUCHDB_PASSWORD")
    if parts.username is not None:
        user = user or parts.username
        password = parts.password if parts.password is not None else password
    if password_file:
        try:
            with open(password_file, encoding="utf-8") as handle:
                password = handle.read().removesuffix("\n").removesuffix("\r")
        except OSError as error:
            raise ReconcileError(f"--password-file {password_file}: {error.strerror}; give a readable file") \
                from None
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return Connection(url, user, password, pool=pool, timeout=timeout, verify=cacert or True)


def db_path(name: str, *rest: str) -> str:
    """URL path of a database (and what follows); names may hold `/` and `+`, which must be escaped."""
    return "/".join([quote(name, safe="")] + [quote(part, safe="") for part in rest])


class CouchSession:
    def __init__(self, connection: Connection):
        self.connection = connection
        self.base = connection.url.rstrip("/")
        self._sent = 0
        self._sent_lock = threading.Lock()  # requests go out from the pool's threads
        self._http = requests.Session()
        if connection.user is not None:
            self._http.auth = (connection.user, connection.password or "")
        self._http.verify = connection.verify
        # Only idempotent reads are retried by the transport; writes are retried by apply, which knows what is safe.
        retry = Retry(total=3, connect=3, read=2, status=2, backoff_factor=0.2,
                      status_forcelist=(502, 503, 504), allowed_methods=frozenset({"GET", "HEAD"}))
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=connection.pool, pool_block=True, max_retries=retry)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)
        self._pool = ThreadPoolExecutor(max_workers=connection.pool, thread_name_prefix="couch")
        self.reads = SessionReads()  # what stages may reuse of this session's reads (reads.observation...)

    @property
    def requests_sent(self) -> int:
        """Requests sent so far: benchmarks and tests count through this."""
        return self._sent

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.close()

    def __enter__(self) -> "CouchSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, ok: Iterable[int] = (), what: str | None = None,
                retry: bool = False) -> requests.Response:
        """Send one request. Statuses >= 400 not listed in `ok` raise ServerError with one readable line.

        `retry` says the request is idempotent (a PUT of a whole object): like the transport does for
        reads, it is repeated after a 502/503/504, a timeout or a lost connection.
        """
        attempts = WRITE_ATTEMPTS if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._send(method, path, params, body, ok, what)
            except ServerError as error:
                if attempt == attempts or error.status not in (None, 502, 503, 504):
                    raise
                time.sleep(0.2 * 2 ** attempt)
        raise ServerError(f"{method} {path}: no attempt made")  # attempts >= 1: never reached

    def _send(self, method: str, path: str, params: dict[str, Any] | None, body: Any,
              ok: Iterable[int], what: str | None) -> requests.Response:
        url = f"{self.base}/{path.lstrip('/')}"
        data = None if body is None else json.dumps(body)
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        with self._sent_lock:
            self._sent += 1
        try:
            response = self._http.request(method, url, params=params, data=data, headers=headers,
                                          timeout=self.connection.timeout)
        except requests.exceptions.SSLError as exc:
            raise ServerError(f"TLS error talking to {self.base}: {_first_line(exc)}; check --cacert") from None
        except requests.exceptions.ConnectTimeout:
            raise self._unreachable(f" within {self.connection.timeout:g}s") from None
        except requests.exceptions.ReadTimeout:
            raise self._no_answer(method, path, what, f"no answer within {self.connection.timeout:g}s") from None
        except requests.exceptions.RetryError as exc:
            raise ServerError(f"{what or f'{method} {path}'}: the server kept failing ({_first_line(exc)}); rerun later") from None
        except requests.exceptions.ConnectionError as exc:
            if _dropped(exc):
                raise self._no_answer(method, path, what, "the connection was closed before an answer came") from None
            raise self._unreachable("") from None
        except requests.exceptions.ChunkedEncodingError:
            # A chunked answer cut short: a real 3-node CouchDB 3.4.3 began a `_db_updates` longpoll's 200 and
            # then wrote a whole `404 Object Not Found` response where the next chunk belonged.
            raise self._no_answer(method, path, what, "the answer broke off before its end") from None
        if response.status_code >= 400 and response.status_code not in set(ok):
            raise _server_error(method, path, response, what)
        return response

    def _unreachable(self, within: str) -> ServerError:
        return ServerError(f"cannot reach CouchDB at {self.base}{within}; check COUCHDB_URL or --server "
                           "and that the server is running")

    def _no_answer(self, method: str, path: str, what: str | None, why: str) -> ServerError:
        """The request went out and no answer came: for a write, nobody knows whether it happened."""
        subject = f"{what or f'{method} /{path.lstrip(chr(47))}'}: {why} from {self.base}"
        if _writes(method, path):
            return ServerError(f"{subject} after the request was sent: the write may or may not have happened; "
                               "run plan again to see what is left", uncertain=True)
        return ServerError(f"{subject}; the server is overloaded, or is not CouchDB: rerun when it answers")

    def get(self, path: str, **kw: Any) -> Any:
        return decode(self.request("GET", path, **kw), kw.get("what"))

    def put(self, path: str, body: Any, **kw: Any) -> Any:
        return decode(self.request("PUT", path, body=body, **kw), kw.get("what"))

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        return decode(self.request("POST", path, body=body, **kw), kw.get("what"))

    def delete(self, path: str, **kw: Any) -> Any:
        return decode(self.request("DELETE", path, **kw), kw.get("what"))

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """fn over items on the bounded thread pool, results in input order; the first error propagates."""
        return self._pool.map(fn, items)

    def all_docs(self, database: str, what: str, start_key: str | None = None, end_key: str | None = None,
                 page: int = ALL_DOCS_PAGE, conflicts: bool = False) -> Iterator[dict]:
        """Every document of `database` (between the keys when given), a page of `_all_docs?include_docs=true`
        at a time: one more row than the page is asked for, and its key starts the next page, so a page
        boundary neither repeats nor skips a document (CouchDB's docs, "Paging", api/database/bulk-api.rst).
        With `conflicts`, a document in conflict lists its other live revisions in `_conflicts`."""
        start = start_key
        while True:
            params = {"include_docs": "true", "limit": str(page + 1), **_conflicts(conflicts)}
            if start is not None:
                params["start_key"] = json.dumps(start)
            if end_key is not None:
                params["end_key"] = json.dumps(end_key)
            rows = self.get(db_path(database, "_all_docs"), params=params, what=what)["rows"]
            yield from (row["doc"] for row in rows[:page] if row.get("doc"))
            if len(rows) <= page:
                return
            start = rows[page]["key"]

    def docs_by_id(self, database: str, ids: Sequence[str], what: str, per_request: int = ALL_DOCS_PAGE,
                   conflicts: bool = False) -> dict[str, dict]:
        """Id -> document for those of `ids` that exist: `per_request` ids per `POST _all_docs?include_docs=true`
        (`keys` in the body), the requests spread over the pool; `conflicts` as in `all_docs`."""
        def read(chunk: list[str]) -> list[dict]:
            return self.post(db_path(database, "_all_docs"), {"keys": chunk},
                             params={"include_docs": "true", **_conflicts(conflicts)}, what=what)["rows"]

        return {row["id"]: row["doc"] for rows in self.map(read, batched(list(ids), per_request))
                for row in rows if row.get("doc")}

    def bulk_docs(self, database: str, batches: Iterable[Sequence[dict]], what: str,
                  settled: Callable[[dict, dict], bool] = lambda doc, row: False) -> list[dict]:
        """Each batch in one `_bulk_docs` over the pool; the rows CouchDB refused (a row with `error`), but for
        those `settled(doc, row)` says need no report.

        `_bulk_docs` answers 201 even when some documents fail, so the caller must look at the rows. They come
        one per document, in the order of the request (chttpd_db.erl `db_req` for `_bulk_docs`), which is how
        a row is matched with its document: several documents of a batch may share an `_id`.
        """
        sent = [list(batch) for batch in batches]
        answers = self.map(lambda batch: self.post(db_path(database, "_bulk_docs"), {"docs": batch}, what=what),
                           sent)
        return [row for batch, rows in zip(sent, answers) for doc, row in zip(batch, rows)
                if "error" in row and not settled(doc, row)]


def _conflicts(wanted: bool) -> dict[str, str]:
    """The query parameter that makes a document read in bulk list its conflicting revisions in `_conflicts`
    (CouchDB's docs, api/document/common.rst `conflicts`; `_all_docs` passes it to the documents it includes)."""
    return {"conflicts": "true"} if wanted else {}


def bulk_failure(subject: Callable[[str], str], failures: Sequence[dict],
                 advice: str = "fix the manifest and run apply again") -> ReconcileError:
    """One line for the rows a `_bulk_docs` refused (`CouchSession.bulk_docs`): the first by name (`subject` of
    its id), how many more, and what to do (`advice`, for documents a manifest wrote by default); a conflict
    means someone wrote the document since the plan."""
    first = failures[0]
    more = f" ({len(failures) - 1} more failed too)" if len(failures) > 1 else ""
    if first["error"] == "conflict":
        advice = "changed on the server since the plan was made; run plan again"
    return ReconcileError(f"{subject(first.get('id', ''))}: {first['error']}: {first.get('reason', '')}{more}; "
                          f"{advice}")


def batched(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[start:start + size]) for start in range(0, len(items), size)]


def decode(response: requests.Response, what: str | None = None) -> Any:
    """The JSON body; a proxy's HTML page or a truncated answer is one line, not a traceback."""
    try:
        return response.json()
    except ValueError:
        raise _not_couchdb(what or f"{response.request.method} {response.request.path_url}", response) from None


def _writes(method: str, path: str) -> bool:
    if method in ("GET", "HEAD"):
        return False
    return method != "POST" or path.split("?")[0].rstrip("/").rsplit("/", 1)[-1] not in READING_POSTS


def _dropped(exc: requests.exceptions.ConnectionError) -> bool:
    """Whether the connection was made and then lost (urllib3's ProtocolError: reset, closed without an
    answer), rather than never made (refused, no route, unknown host)."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, ProtocolError)


def _not_couchdb(subject: str, response: requests.Response) -> ServerError:
    """An answer that is not CouchDB's JSON (a web server, a proxy's login page): its status, content type
    and Server header say what answered; its body (an HTML page) is never printed."""
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
    server = response.headers.get("Server")
    answered = f"HTTP {response.status_code}, {content_type}" + (f", Server: {server}" if server else "")
    return ServerError(f"{subject}: the answer ({answered}) is not CouchDB's JSON; check that --server "
                       "(COUCHDB_URL) points at CouchDB itself, not a web page or a proxy",
                       status=response.status_code)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _server_error(method: str, path: str, response: requests.Response, what: str | None) -> ServerError:
    subject = what or f"{method} /{path.lstrip('/')}"
    try:
        payload = response.json()
        error, reason = payload.get("error"), payload.get("reason")
    except (ValueError, AttributeError):
        return _not_couchdb(subject, response)
    status = response.status_code
    if status == 401 and "admin" in (reason or ""):  # "You are not a server admin.": known, but not an admin
        advice = "these credentials are not a server admin's; use a server admin"
    elif status == 401:
        advice = "check COUCHDB_USER and COUCHDB_PASSWORD"
    elif status == 403:
        advice = "the credentials lack the rights for this; use a server admin"
    elif status == 409:
        advice = "someone changed it meanwhile; rerun plan and apply"
    elif status >= 500:
        advice = "the server failed; rerun when it is healthy"
    else:
        advice = ""
    detail = ": ".join(part for part in (error, reason) if part)
    line = f"{subject}: HTTP {status}" + (f" {detail}" if detail else "") + (f"; {advice}" if advice else "")
    return ServerError(line, status=status, error=error, reason=reason)
