"""The routines of the soak run (`benchmarks/soak.py`): importable, so workers import them by
reference. Every non-idempotent call appends its token to the run's ledger file, one line per
execution, so that a call that ran twice shows twice."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator

import wool

_leaked: list[bytes] = []


def _ran(ledger: str, token: str) -> None:
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{token}\n".encode())
    finally:
        os.close(fd)


@wool.routine
async def work(ledger: str, token: str) -> int:
    _ran(ledger, token)
    return os.getpid()


@wool.routine
async def parent(ledger: str, token: str) -> int:
    _ran(ledger, token)
    return await work(ledger, token + "/child")


@wool.routine
async def leak(ledger: str, token: str, megabytes: int) -> int:
    """Keeps `megabytes` for good, as leaking third-party code does."""
    _ran(ledger, token)
    _leaked.append(b"\x01" * (megabytes * 1_000_000))
    return os.getpid()


@wool.routine
async def ticks(n: int) -> AsyncGenerator[int, None]:
    for i in range(n):
        yield i
        await asyncio.sleep(0)


@wool.routine
async def square(x: int) -> int:
    return x * x


@wool.routine(idempotent=True)
async def lookup(key: int) -> int:
    """Idempotent: retried on another worker when its worker is killed."""
    return key * 2


@wool.routine
async def hello() -> int:
    return os.getpid()
