"""`python -m wool.workers --discovery local:NAME`: list the live workers of a namespace
(`--watch`: keep the list on screen, refreshed every second; see `wool._watch`).

Each worker discovery lists is asked, over its own socket, how many calls it has open and
how many wait for a slot; one that does not answer within `--timeout` is shown as
unreachable (discovery is a hint: an entry says where a worker was, not that it lives).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from . import protocol as p
from ._errors import WoolError
from ._keys import Keys
from ._printable import printable
from ._watch import watch
from .caller import Connection
from .discovery import SPEC_HELP, WorkerInfo, discovery_from_args


async def survey(infos: list[WorkerInfo], timeout: float, keys: Keys | None = None) -> list[dict[str, Any]]:
    """One row per worker: its discovery entry, and its answer to a ping (or None). Workers
    that require CURVE keys are asked with `keys`, if given and trusting their key."""

    async def ask(info: WorkerInfo) -> dict[str, Any]:
        row: dict[str, Any] = {**info.to_dict(), "reachable": False, "calls": None, "queued": None}
        if info.public_key is not None and (keys is None or not keys.trusts(info.public_key)):
            row["untrusted"] = True
            return row
        try:
            conn = Connection(info, keys=keys if info.public_key is not None else None)
        except WoolError:
            return row
        try:
            reply = await asyncio.wait_for(conn.request(p.Ping(conn.new_call_id()), False), timeout)
            if isinstance(reply, p.Pong) and reply.worker_id == info.id:
                row.update(reachable=True, calls=reply.calls, queued=reply.queued)
        except (TimeoutError, WoolError):
            pass
        finally:
            conn.close()
        return row

    return list(await asyncio.gather(*(ask(info) for info in infos)))


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("ID", "ENDPOINT", "PID", "HOST", "TAGS", "CALLS", "QUEUED", "MAX")
    lines: list[tuple[str, ...]] = [header]
    for r in rows:
        calls = str(r["calls"]) if r["reachable"] else "untrusted" if r.get("untrusted") else "unreachable"
        queued = str(r["queued"]) if r["reachable"] else "-"
        limit = "-" if r["max_calls"] is None else str(r["max_calls"])
        cells = (r["id"], r["endpoint"], str(r["pid"]), r["host"], ",".join(r["tags"]) or "-", calls, queued, limit)
        lines.append(tuple(printable(cell) for cell in cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)).rstrip() for line in lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wool.workers",
        description="List the workers of a discovery namespace: endpoint, pid, host, tags, and "
        "how many calls each has open and queued (asked over the wire).",
    )
    parser.add_argument("--discovery", required=True, metavar="SPEC", help=f"the namespace to list: {SPEC_HELP}")
    parser.add_argument(
        "--timeout", type=float, default=2.0, metavar="SECONDS", help="how long to wait for each worker's answer (default: 2)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON array instead of a table (with --watch: one JSON object per line)"
    )
    parser.add_argument(
        "--watch",
        action="store_true",
        help="refresh the table in place every --interval seconds until Ctrl-C: state, calls per second, open, queued and finished calls",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="with --watch: time between refreshes (default: 1)"
    )
    parser.add_argument(
        "--keys", metavar="DIR", help="CURVE key directory to ask workers that require keys with (those whose key it trusts)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.interval <= 0:
        parser.error("--interval must be positive")
    discovery, keys = discovery_from_args(parser, args.discovery, args.keys)
    if args.watch:
        try:
            asyncio.run(
                watch(
                    discovery,
                    args.discovery,
                    sys.stdout,
                    interval=args.interval,
                    timeout=args.timeout,
                    keys=keys,
                    as_json=args.json,
                )
            )
        except WoolError as e:
            print(f"wool workers: {printable(e)}", file=sys.stderr)
            return 1
        return 0

    async def run() -> list[dict[str, Any]]:
        return await survey(await discovery.workers(), args.timeout, keys)

    try:
        rows = asyncio.run(run())
    except WoolError as e:
        print(f"wool workers: {printable(e)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows))
    elif rows:
        print(format_table(rows))
    else:
        print(f"no workers in {args.discovery}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
