"""couchsim throughput and memory, measured against `python -m couch_reconciler.couchsim` in its own process.

    .venv/bin/python bench/couchsim_bench.py [--seconds 5] [--dbs 10000,100000] [--concurrency 16]

Prints:
- simple GETs per second (GET /{db}/{doc}, basic auth at the default 600,000 PBKDF2 iterations) through one
  pool of keep-alive connections, and per CPU-second the server process used (the one-core figure, which
  other load on a shared machine does not skew); beside it the floor: the same number of bare requests
  (anonymous GET /_up) through the same pool. Target: >= 3,000/s on one core.
- the server's RSS after creating 10,000 and 100,000 databases, each with its own `_security` object, over
  HTTP (PUT /{db}, PUT /{db}/_security). Target: 100,000 under 1 GiB.

couchsim runs without the costs it models of a real server (opening and creating databases): these are its
own figures. The client is aiohttp (one event loop, `--concurrency` requests in flight over as many
connections), so the client's own CPU stays well below requests'; the machine's cores are shared by client
and server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ADMIN, couchsim  # noqa: E402


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU the server process has used: requests per CPU-second is the one-core figure,
    whatever else the shared machine is doing."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def auth_header() -> dict[str, str]:
    token = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def hammer(http: aiohttp.ClientSession, url: str, headers: dict, count: int, concurrency: int,
                 pid: int) -> tuple[float, float]:
    """Sends `count` GETs with `concurrency` in flight; returns (requests per second, per server CPU-second)."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with http.get(url, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise SystemExit(f"GET {url}: {response.status}")

    started, cpu = time.perf_counter(), cpu_seconds(pid)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started), count / max(cpu_seconds(pid) - cpu, 1e-9)


async def throughput(base: str, pid: int, seconds: float, concurrency: int) -> None:
    headers = auth_header()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        started = time.perf_counter()
        await hammer(http, f"{base}/_session", headers, 1, 1, pid)  # the one PBKDF2 (600,000 rounds) happens here
        first = time.perf_counter() - started
        await http.put(f"{base}/bench", headers=headers)
        await http.put(f"{base}/bench/doc", json={"n": 1}, headers=headers)
        probe, _ = await hammer(http, f"{base}/bench/doc", headers, 1000, concurrency, pid)
        count = max(1000, int(probe * seconds))
        authed, authed_cpu = await hammer(http, f"{base}/bench/doc", headers, count, concurrency, pid)
        bare, bare_cpu = await hammer(http, f"{base}/_up", {}, count, concurrency, pid)
    print(f"first authenticated GET (one PBKDF2-SHA256, 600,000 rounds): {first * 1000:.0f} ms")
    print(f"GET /bench/doc, basic auth, {concurrency} keep-alive connections: {authed:,.0f} req/s, "
          f"{authed_cpu:,.0f} per server CPU-second (floor, bare GET /_up through the same pool: {bare:,.0f} req/s, "
          f"{bare_cpu:,.0f} per server CPU-second; {count:,} requests each)")


async def create_dbs(base: str, start: int, stop: int, concurrency: int) -> None:
    headers = auth_header()
    connector = aiohttp.TCPConnector(limit=concurrency)
    queue = iter(range(start, stop))

    async def worker(http: aiohttp.ClientSession) -> None:
        for i in queue:
            name = f"userdb-{i:08x}"
            async with http.put(f"{base}/{name}", headers=headers) as response:
                if response.status != 201:
                    raise SystemExit(f"PUT /{name}: {response.status}")
            security = {"members": {"roles": ["_admin"], "names": [f"user{i}"]},
                        "admins": {"roles": ["_admin"], "names": [f"user{i}"]}}
            async with http.put(f"{base}/{name}/_security", json=security, headers=headers) as response:
                if response.status != 200:
                    raise SystemExit(f"PUT /{name}/_security: {response.status}")

    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))


async def memory(base: str, pid: int, steps: list[int], concurrency: int) -> None:
    print(f"server RSS at start: {rss_mib(pid):,.0f} MiB")
    done = 0
    for target in steps:
        started = time.perf_counter()
        await create_dbs(base, done, target, concurrency)
        elapsed = time.perf_counter() - started
        rate = (target - done) * 2 / elapsed
        done = target
        print(f"server RSS with {target:,} databases, each with its own _security: {rss_mib(pid):,.0f} MiB "
              f"(created over HTTP at {rate:,.0f} req/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each throughput run")
    parser.add_argument("--dbs", default="10000,100000", help="database counts at which to read RSS")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with couchsim(modelled_costs=False) as server:  # couchsim's own speed, not the real server's it models
        pid = server.process.pid
        print(f"couchsim (python -m couch_reconciler.couchsim, pid {pid}) at {server.url}; {os.cpu_count()} CPUs shared with the client")
        asyncio.run(throughput(server.url, pid, args.seconds, args.concurrency))
        asyncio.run(memory(server.url, pid, [int(n) for n in args.dbs.split(",")], args.concurrency))


if __name__ == "__main__":
    main()
