"""The caller side of the DNS discovery tests across network namespaces
(`tests/discovery/test_dns_netns.py`), run in a namespace as
`python -c "... dns_scenarios.caller(...)"`. It prints one JSON object per line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import routines

import wool


def emit(**message: Any) -> None:
    print(json.dumps(message), flush=True)


class _Relay(logging.Handler):
    """Discovery warnings, printed as `{"warning": ...}` lines for the test to wait on."""

    def emit(self, record: logging.LogRecord) -> None:
        emit(warning=record.getMessage())


async def caller(name: str, port: str, nameserver: str, keys: str) -> None:
    """A pool over `DnsDiscovery(name, port)` asking `nameserver`. For each line on stdin (a
    JSON list of worker ids): wait until exactly those workers are in rotation, then print
    them, the pids that served six calls, and the workers the first worker's own mesh knows.
    Ends when stdin closes."""
    logging.getLogger("wool.discovery").addHandler(_Relay(logging.WARNING))
    discovery = wool.DnsDiscovery(name, int(port), interval=0.1, poll_interval=0.1, nameservers=[nameserver])
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with wool.WorkerPool(discovery=discovery, keys=keys) as pool:
        emit(ready=True)
        while line := await reader.readline():
            want = set(json.loads(line))

            def exactly(workers: list[wool.WorkerInfo], want: set[str] = want) -> bool:
                return {w.id for w in workers} == want

            try:
                found = await pool.wait_for_workers(exactly, 20)
            except TimeoutError:
                emit(error=f"workers {sorted(w.id for w in pool.workers)}, not {sorted(want)}")
                return
            pids = await asyncio.gather(*(routines.pid() for _ in range(6)))
            peers = await routines.peer_ids(len(want))
            emit(workers=sorted(w.id for w in found), pids=sorted(set(pids)), peers=peers)
