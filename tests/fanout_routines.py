"""Routines for the broadcast, map, retry and hedging tests (importable: workers import them
by reference). Those taking an `address` report to the test's `Observer`."""

from __future__ import annotations

import asyncio
import os

from routines import gate, report

import wool


@wool.routine
async def whoami() -> int:
    return os.getpid()


@wool.routine(tags="gpu")
async def gpu_pid() -> int:
    return os.getpid()


@wool.routine
async def fail_on(pid: int) -> int:
    if os.getpid() == pid:
        raise ValueError(f"refused on {pid}")
    return os.getpid()


@wool.routine
async def die_on(pid: int) -> int:
    if os.getpid() == pid:
        os._exit(3)
    return os.getpid()


@wool.routine
async def held(address: str, name: str) -> int:
    """Reports that it ran, then waits at gate `name`."""
    await report(address, f"ran {os.getpid()}")
    await gate(address, name)
    return os.getpid()


@wool.routine
async def stuck(address: str) -> None:
    """Runs until cancelled; reports its start and its cleanup."""
    try:
        await report(address, f"started {os.getpid()}")
        await asyncio.Event().wait()
    finally:
        await report(address, f"cleanup {os.getpid()}")


@wool.routine
async def square(x: int) -> int:
    return x * x


@wool.routine
async def slow_square(address: str, x: int) -> int:
    """`x * x`, after gate `x` opens; reports its start and its cleanup."""
    try:
        await report(address, f"start {x}")
        await gate(address, str(x))
        return x * x
    finally:
        await report(address, f"end {x}")


@wool.routine
async def fail_at(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x


@wool.routine
async def nested_map(n: int) -> list[int]:
    """wool.map inside a routine: nested fan-out."""
    return [y async for y in wool.map(square, range(n), concurrency=4)]


# Idempotent routines for retry and hedging.


@wool.routine(idempotent=True)
async def die_unless(survivor: int) -> int:
    """Kills every worker but `survivor`; there, returns its pid."""
    if os.getpid() != survivor:
        os._exit(3)
    return os.getpid()


@wool.routine(idempotent=True)
async def always_die() -> int:
    os._exit(3)


@wool.routine(idempotent=True)
async def stall_on(address: str, pid: int) -> int:
    """Hangs on worker `pid` (reporting it, and its cleanup when cancelled); answers at once
    elsewhere."""
    if os.getpid() == pid:
        try:
            await report(address, f"stalled {pid}")
            await asyncio.Event().wait()
        finally:
            await report(address, f"cleanup {pid}")
    return os.getpid()


@wool.routine(idempotent=True)
async def idempotent_pid() -> int:
    return os.getpid()


@wool.routine(idempotent=True)
async def stream_dying_unless(survivor: int, n: int):  # type: ignore[no-untyped-def]
    if os.getpid() != survivor:
        os._exit(3)
    for i in range(n):
        yield i


@wool.routine(idempotent=True)
async def stream_dying_after_first(n: int):  # type: ignore[no-untyped-def]
    yield 0
    os._exit(3)
