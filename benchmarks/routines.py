"""The wool routines the workloads call. They live in an importable module (not in the
script) so that they travel by reference, as a real application's would, and workers can
import them: spawned workers get the caller's `sys.path`, whose first entry `run.py` makes
the checkout's root."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator

import wool


@wool.routine
async def add(x: int, y: int) -> int:
    return x + y


@wool.routine
async def echo(data: bytes) -> bytes:
    return data


@wool.routine
async def fanout(n: int) -> int:
    """On a worker: `n` nested `add` calls, spread by the worker's own mesh over its peers
    (itself included), summed."""
    return sum(await asyncio.gather(*(add(i, 1) for i in range(n))))


@wool.routine
async def count(n: int) -> AsyncGenerator[int, None]:
    for i in range(n):
        yield i


_calls_here = 0


@wool.routine(idempotent=True)
async def sometimes_stalls(x: int, slow_pid: int, every: int, stall_s: float) -> int:
    """`x + 1`; on the worker whose pid is `slow_pid`, every `every`-th call first stalls
    for `stall_s` seconds (a GC pause, a noisy neighbour)."""
    global _calls_here
    if os.getpid() == slow_pid:
        _calls_here += 1
        if _calls_here % every == 0:
            await asyncio.sleep(stall_s)
    return x + 1


@wool.routine
async def spin(ms: float) -> None:
    """Hold the worker's CPU for `ms` milliseconds (a fine-grained task)."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


@wool.routine
def spin_plain(ms: float) -> None:
    """`spin` as a plain `def`: the worker runs it in a thread."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass
