"""`python -m couch_reconciler.couchsim --port 5984 --admin admin:PASSWORD [--nodes 3] [--config section/key=value ...]`"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

try:
    from .cluster import Cluster
    from .open_dbs import SHARD_CREATE_MS, SHARD_OPEN_MS
    from .server import start, stop
except ModuleNotFoundError as missing:
    if missing.name not in ("aiohttp", "quickjs"):
        raise
    sys.exit(f"couchsim needs the `sim` extra ({missing.name} is not installed): "
             "pip install 'couch-reconciler[sim]'")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m couch_reconciler.couchsim",
                                     description="An in-memory server that answers like Apache CouchDB 3.x.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5984)
    parser.add_argument("--admin", action="append", default=[], metavar="NAME:PASSWORD",
                        help="a server admin (repeatable)")
    parser.add_argument("--nodes", type=int, default=1, help="cluster size (each node has its own config)")
    parser.add_argument("--config", action="append", default=[], metavar="SECTION/KEY=VALUE",
                        help="set a config key on every node at start-up (repeatable)")
    parser.add_argument("--shard-open-ms", type=float, default=SHARD_OPEN_MS, metavar="MS",
                        help="what opening a closed database shard costs a request (0: nothing); "
                             "[couchdb] max_dbs_open bounds the shards kept open")
    parser.add_argument("--shard-create-ms", type=float, default=SHARD_CREATE_MS, metavar="MS",
                        help="what making one shard file of a database being created costs (0: nothing)")
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    for admin in args.admin:
        if ":" not in admin:
            parser.error(f"--admin {admin!r}: expected NAME:PASSWORD")
    for item in args.config:
        key, eq, _ = item.partition("=")
        if not eq or "/" not in key:
            parser.error(f"--config {item!r}: expected SECTION/KEY=VALUE")
    return args


def config_from(items: list[str]) -> dict[str, dict[str, str]]:
    config: dict[str, dict[str, str]] = {}
    for item in items:
        key, _, value = item.partition("=")
        section, _, name = key.partition("/")
        config.setdefault(section, {})[name] = value
    return config


async def serve(args: argparse.Namespace) -> None:
    admins = dict(admin.split(":", 1) for admin in args.admin)
    cluster = Cluster(nodes=args.nodes, admins=admins, config=config_from(args.config),
                      shard_open_ms=args.shard_open_ms, shard_create_ms=args.shard_create_ms)
    runner, port = await start(cluster, args.host, args.port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    print(f"couchsim listening on http://{args.host}:{port}", flush=True)  # with --port 0, the port it got
    await stopping.wait()
    await stop(cluster, runner)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        print(f"couchsim: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
