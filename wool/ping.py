"""`python -m wool.ping ENDPOINT [--keys DIR] [--timeout SECONDS]`: does a worker answer there?

Exit status 0, printing the worker's id, if a worker at ENDPOINT completes the handshake (with
CURVE keys, when given) and answers a ping within the timeout; 1, saying why not, otherwise.
It asks exactly as a caller would, so it serves as a container readiness probe: a worker whose
event loop is blocked, or that does not trust these keys, is not ready for callers either.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from ._errors import WoolError
from ._keys import Keys
from ._printable import printable
from .discovery import StaticDiscovery, WorkerInfo


async def ping(endpoint: str, timeout: float, keys: Keys | None = None) -> WorkerInfo | None:
    """The worker answering at `endpoint` within `timeout` seconds, or None."""
    found = await StaticDiscovery([endpoint], timeout=timeout, keys=keys).workers()
    return found[0] if found else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wool.ping",
        description="Exit 0 if a wool worker answers a ping at ENDPOINT, 1 if not (a readiness probe).",
    )
    parser.add_argument("endpoint", metavar="ENDPOINT", help="tcp://HOST:PORT or ipc://PATH")
    parser.add_argument(
        "--timeout", type=float, default=2.0, metavar="SECONDS", help="how long to wait for the answer (default: 2)"
    )
    parser.add_argument("--keys", metavar="DIR", help="CURVE key directory, for a worker started with --keys")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be positive")
    try:
        keys = Keys.load(args.keys) if args.keys is not None else None
    except (OSError, ValueError) as e:
        parser.error(f"--keys: {e}")
    try:
        StaticDiscovery([args.endpoint])
    except (ValueError, TypeError) as e:
        parser.error(str(e))
    logging.basicConfig(level=logging.WARNING, format="wool ping: %(message)s")
    try:
        worker = asyncio.run(ping(args.endpoint, args.timeout, keys))
    except WoolError as e:
        print(f"wool ping: {printable(e)}", file=sys.stderr)
        return 1
    if worker is None:
        print(f"wool ping: no worker answered at {args.endpoint} within {args.timeout:g} s", file=sys.stderr)
        return 1
    print(f"worker {printable(worker.id)} answers at {printable(args.endpoint)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
