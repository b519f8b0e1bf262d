"""Running the aiohttp app on a socket; shared by `python -m couch_reconciler.couchsim` and the test fixture."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from .http import make_app
from .cluster import Cluster
from .faults import FaultInjector
from .replicator import ClusterReplicator


async def start(cluster: Cluster, host: str, port: int, faults: FaultInjector | None = None
                ) -> tuple[web.AppRunner, int]:
    """Starts serving; returns the runner (to clean up) and the bound port (for port 0)."""
    cluster.replicator = ClusterReplicator(cluster)
    await cluster.replicator.start()
    cluster.peruser.start()
    # Feeds (continuous _changes, _db_updates) never finish by themselves: stopping waits for them briefly.
    runner = web.AppRunner(make_app(cluster, faults), access_log=None, handle_signals=False,
                           shutdown_timeout=0.25)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    sock: socket.socket = site._server.sockets[0]  # aiohttp exposes no public accessor for the bound port
    return runner, sock.getsockname()[1]


async def stop(cluster: Cluster, runner: web.AppRunner) -> None:
    await cluster.replicator.stop()
    for task in list(cluster.tasks):
        task.cancel()
    await runner.cleanup()
    await asyncio.sleep(0)
