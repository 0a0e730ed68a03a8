"""Routines that call each other across workers, for deadline and placement tests: a tree
of nested calls whose deepest level reports to the test's `Observer`."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from routines import report

import wool


@wool.routine
async def level(depth: int, address: str) -> None:
    """Call down to depth 0, which reports that it runs, then waits until cancelled and
    reports that too (the report is made before the cancellation unwinds further)."""
    if depth > 0:
        await level(depth - 1, address)
        return
    try:  # from before the report: the test may cancel as soon as it has it
        await report(address, f"deepest running in {os.getpid()}")
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await report(address, "deepest cancelled")
        raise


@wool.routine
async def remaining_down(depth: int) -> list[float | None]:
    """`wool.remaining()` at each level, top first."""
    here = wool.remaining()
    below = await remaining_down(depth - 1) if depth > 0 else []
    return [here, *below]


@wool.routine
async def remaining_with(timeout: float) -> list[float | None]:
    """The deadline below a nested `wool.options(timeout=...)`: it can only shorten it."""
    with wool.options(timeout=timeout):
        return [wool.remaining(), *(await remaining_down(0))]


@wool.routine(tags="gpu")
async def on_gpu() -> int:
    return os.getpid()


@wool.routine(tags={"gpu", "big"})
async def on_big_gpu() -> int:
    return os.getpid()


@wool.routine
async def plain_pid() -> int:
    return os.getpid()


@wool.routine(tags="gpu")
async def gpu_stream(n: int) -> AsyncIterator[int]:
    for _ in range(n):
        yield os.getpid()


@wool.routine
async def fan_out_pids(count: int) -> list[int]:
    """Pids of `count` untagged nested calls (placed by the options in force here)."""
    return list(await asyncio.gather(*(plain_pid() for _ in range(count))))


@wool.routine
async def one_then_wait(address: str) -> AsyncIterator[int]:
    yield 1
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await report(address, "stream cancelled")
        raise
    yield 2
