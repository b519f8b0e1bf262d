"""View-build throughput of couchsim (docs/s) on 10,000 documents.

1. The index alone: the build rate of a realistic view (map emitting a compound key, ``_sum``
   reduce, then one grouped query) beside its floor, the same documents through a map that emits
   nothing (what moving documents into QuickJS and back costs by itself).
2. Over HTTP: the first query of that view on a couchsim database holding the documents (the index
   builds during the request) beside its floor, reading the same documents with
   ``_all_docs?include_docs=true`` through the same keep-alive session.

    .venv/bin/python bench/views_bench.py [--docs 10000]
"""

import argparse
import time

import requests

from couch_reconciler.couchsim.testing import SimServer
from couch_reconciler.couchsim.views import DesignIndex, parse_view_query

MAP = "function(d){ if (d.type == 'event') emit([d.user, d.day], d.n); }"


def documents(count: int) -> list[tuple[str, dict, bool, int]]:
    return [
        (f"doc{n:06}", {"_id": f"doc{n:06}", "_rev": "1-abc", "user": f"u{n % 97}", "day": f"2026-01-{n % 28 + 1:02}",
                        "n": n % 10, "type": "event", "tags": ["a", "b"], "payload": {"x": n, "y": "text " * 5}}, False, n)
        for n in range(1, count + 1)
    ]


def build_rate(docs: list, map_source: str, reduce: str | None) -> tuple[float, float]:
    view = {"map": map_source, **({"reduce": reduce} if reduce else {})}
    index = DesignIndex({"_id": "_design/bench", "views": {"v": view}})
    started = time.perf_counter()
    index.refresh(lambda since: docs)
    built = time.perf_counter() - started
    if reduce:
        index.query("v", parse_view_query({"group_level": "1"}), lambda since: [], lambda doc_id: None)
    total = time.perf_counter() - started
    return len(docs) / built, total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=10_000)
    args = parser.parse_args()
    docs = documents(args.docs)
    realistic, realistic_total = build_rate(docs, MAP, "_sum")
    floor, _ = build_rate(docs, "function(d){}", None)
    print(f"index build, {args.docs} docs: {realistic:,.0f} docs/s "
          f"(build + grouped query {realistic_total:.2f} s); floor (map emitting nothing): {floor:,.0f} docs/s")
    http_build, http_floor = over_http(docs)
    print(f"HTTP, first view query on {args.docs} docs: {args.docs / http_build:,.0f} docs/s ({http_build:.2f} s); "
          f"floor (_all_docs?include_docs=true, same session): {args.docs / http_floor:,.0f} docs/s ({http_floor:.2f} s)")


def over_http(docs: list) -> tuple[float, float]:
    with SimServer(config={"chttpd_auth": {"iterations": "1000"}}) as sim, requests.Session() as http:
        http.auth = sim.admin
        db = f"{sim.url}/bench"
        http.put(db).raise_for_status()
        for start in range(0, len(docs), 1000):
            batch = [{k: v for k, v in doc.items() if k != "_rev"} for _, doc, _, _ in docs[start:start + 1000]]
            http.post(f"{db}/_bulk_docs", json={"docs": batch}).raise_for_status()
        http.put(f"{db}/_design/bench", json={"views": {"v": {"map": MAP, "reduce": "_sum"}}}).raise_for_status()
        started = time.perf_counter()
        http.get(f"{db}/_design/bench/_view/v", params={"group_level": "1"}).raise_for_status()
        build = time.perf_counter() - started
        started = time.perf_counter()
        http.get(f"{db}/_all_docs", params={"include_docs": "true"}).raise_for_status()
        return build, time.perf_counter() - started


if __name__ == "__main__":
    main()
