"""`python -m wool.worker`: run one worker until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pickle
import sys

from ..discovery import Discovery, LocalDiscovery, WorkerInfo
from ._config import DEFAULT_BIND, DEFAULT_GRACE, WorkerConfig
from ._runtime import serve

LOG_FORMAT = "%(asctime)s wool[%(process)d] %(levelname)s %(name)s: %(message)s"


def parse_discovery(spec: str) -> Discovery:
    """`local:NAME` -> LocalDiscovery(NAME); raise ValueError naming the problem."""
    scheme, _, rest = spec.partition(":")
    if scheme == "local":
        return LocalDiscovery(rest)
    raise ValueError(f"unknown discovery {spec!r}: expected local:NAME")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wool.worker",
        description="Run a wool worker: serve routines dispatched by pools that discover it, "
        "until SIGTERM or SIGINT; then finish or cancel running calls, withdraw, and exit 0.",
    )
    parser.add_argument(
        "--discovery",
        metavar="SPEC",
        help="where to publish this worker and find its peers: local:NAME (a registry file "
        "for namespace NAME on this machine; pools join it with wool.LocalDiscovery(NAME))",
    )
    parser.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        metavar="ENDPOINT",
        help=f"ZeroMQ endpoint to listen on, tcp://HOST:PORT (port 0: any free port) or ipc://PATH (default: {DEFAULT_BIND})",
    )
    parser.add_argument("--tag", action="append", default=[], metavar="TAG", help="a tag to publish with this worker (repeatable)")
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"on stop, how long running calls may finish before they are cancelled (default: {DEFAULT_GRACE})",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="level of the 'wool' logger, written to stderr (default: WARNING)",
    )
    parser.add_argument("--spawned", type=int, metavar="FD", help=argparse.SUPPRESS)
    return parser


def _read_config() -> WorkerConfig:
    """A spawned worker's config: a length-prefixed pickle on stdin."""
    def read_exactly(n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            chunk = os.read(0, n - len(chunks))
            if not chunk:
                raise EOFError("the spawning pool closed stdin before sending the config")
            chunks += chunk
        return bytes(chunks)

    size = int.from_bytes(read_exactly(8), "big")
    config = pickle.loads(read_exactly(size))
    if not isinstance(config, WorkerConfig):
        raise TypeError("stdin did not carry a WorkerConfig")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.spawned is not None:
        config = _read_config()
        # Modules the caller could import (routines pickled by reference) import here too.
        sys.path[:] = list(dict.fromkeys([*config.sys_path, *sys.path]))
        ready_fd: int | None = args.spawned
        level = config.log_level or "WARNING"
    else:
        if args.discovery is None:
            parser.error("--discovery is required (for example --discovery local:NAME)")
        try:
            discovery = parse_discovery(args.discovery)
        except (ValueError, TypeError) as e:
            parser.error(str(e))
        if args.grace < 0:
            parser.error("--grace must not be negative")
        config = WorkerConfig(discovery, args.bind, frozenset(args.tag), args.grace, args.log_level)
        ready_fd = None
        level = args.log_level
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("wool").setLevel(level)

    def on_ready(info: WorkerInfo) -> None:
        if ready_fd is None:
            print(f"wool worker {info.id} listening on {info.endpoint} (pid {info.pid})", flush=True)
        else:
            os.write(ready_fd, json.dumps(info.to_dict()).encode() + b"\n")
            os.close(ready_fd)

    try:
        asyncio.run(serve(config, on_ready, watch_fd=0 if ready_fd is not None else None))
    except OSError as e:
        print(f"wool worker: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
