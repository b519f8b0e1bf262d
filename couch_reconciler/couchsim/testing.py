"""The test fixture: a couchsim server on a free loopback port, in a background thread with its own loop.

    with SimServer(admin=("admin", "adminpw"), nodes=1, config={"chttpd_auth": {"iterations": "1000"}}) as sim:
        sim.url, sim.admin, sim.faults, sim.cluster
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from .cluster import Cluster
from .faults import FaultInjector
from .open_dbs import SHARD_CREATE_MS, SHARD_OPEN_MS
from .server import start, stop


class SimServer:
    def __init__(self, admin: tuple[str, str] = ("admin", "adminpw"), nodes: int = 1,
                 config: dict[str, dict[str, str]] | None = None, host: str = "127.0.0.1",
                 shard_open_ms: float = SHARD_OPEN_MS, shard_create_ms: float = SHARD_CREATE_MS):
        self.admin = admin
        self.shard_open_ms = shard_open_ms
        self.shard_create_ms = shard_create_ms
        self.faults = FaultInjector()
        self.host = host
        self.port: int | None = None
        self._nodes = nodes
        self._config = config or {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self.cluster: Cluster | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        ready: Future = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="couchsim", daemon=True)
        self._thread.start()
        ready.result(timeout=30)

    def _run(self, ready: Future) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # noqa: BLE001 - reported to the thread that waits for start-up
            if not ready.done():
                ready.set_exception(exc)
        finally:
            # Handlers still streaming a feed when the server stopped end here, as asyncio.run would end them.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, ready: Future) -> None:
        self._stopped = asyncio.Event()
        self.cluster = Cluster(nodes=self._nodes, admins={self.admin[0]: self.admin[1]}, config=self._config,
                               shard_open_ms=self.shard_open_ms, shard_create_ms=self.shard_create_ms)
        runner, self.port = await start(self.cluster, self.host, 0, self.faults)
        ready.set_result(None)
        await self._stopped.wait()
        await stop(self.cluster, runner)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
