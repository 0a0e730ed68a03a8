"""The caller of the Kubernetes example (`caller-job.yaml`): a pool over the workers that DNS
discovery finds, a fan-out of calls, and a count of which pod served them.

    python caller.py --discovery dns:_wool._tcp.wool-workers.wool.svc.cluster.local \\
        --keys /run/wool/keys --workers 3 --calls 100

The routine is defined here, in `__main__`: wool sends it by value, so the workers' image
needs wool but not this file. Exit status 0 when every call returned, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import socket
import sys

import wool
from wool.discovery import parse_discovery


@wool.routine
async def hostname(i: int) -> str:
    """Which pod ran call `i` (a pod's hostname is its name)."""
    return socket.gethostname()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Fan calls out to the wool workers DNS discovery finds.")
    parser.add_argument("--discovery", required=True, metavar="SPEC", help="where the workers are, e.g. dns:NAME")
    parser.add_argument("--keys", required=True, metavar="DIR", help="CURVE key directory the workers trust")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="wait until N workers are found (default: 1)")
    parser.add_argument("--calls", type=int, default=100, metavar="N", help="how many calls to make (default: 100)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS", help="how long to wait for the workers")
    return parser


async def run(spec: str, keys: str, workers: int, calls: int, timeout: float) -> int:
    discovery = parse_discovery(spec, wool.Keys.load(keys))
    async with wool.WorkerPool(discovery=discovery, keys=keys) as pool:
        found = await pool.wait_for_workers(lambda ws: len(ws) >= workers, timeout)
        print(f"{len(found)} workers: {', '.join(sorted(w.endpoint for w in found))}", flush=True)
        served = collections.Counter(await asyncio.gather(*(hostname(i) for i in range(calls))))
    for host, count in sorted(served.items()):
        print(f"{host}: {count} calls")
    return 0 if sum(served.values()) == calls else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1 or args.calls < 0 or not args.timeout > 0:
        parser.error("--workers must be at least 1, --calls not negative, --timeout positive")
    try:
        return asyncio.run(run(args.discovery, args.keys, args.workers, args.calls, args.timeout))
    except (wool.WoolError, TimeoutError, OSError, ValueError) as e:
        print(f"caller: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
