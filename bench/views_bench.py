"""View-build throughput of couchsim (docs/s) on 10,000 documents.

Prints the build rate of a realistic view (map emitting a compound key, ``_sum`` reduce, then one
grouped query) beside its floor: the same documents through a map that emits nothing, i.e. what
moving documents into QuickJS and back costs by itself.

    .venv/bin/python bench/views_bench.py [--docs 10000]
"""

import argparse
import time

from couchsim.views import DesignIndex, parse_view_query


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
    realistic, realistic_total = build_rate(
        docs, "function(d){ if (d.type == 'event') emit([d.user, d.day], d.n); }", "_sum")
    floor, _ = build_rate(docs, "function(d){}", None)
    print(f"view build, {args.docs} docs: {realistic:,.0f} docs/s "
          f"(build + grouped query {realistic_total:.2f} s); floor (map emitting nothing): {floor:,.0f} docs/s")


if __name__ == "__main__":
    main()
