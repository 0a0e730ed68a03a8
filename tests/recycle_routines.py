"""Routines for the recycling and memory-limit tests: importable, so workers import them by
reference."""

from __future__ import annotations

import asyncio
import os

import wool

_leaked: list[bytes] = []  # what `leak` keeps: this worker's growing module global


@wool.routine
async def record(path: str, token: int) -> int:
    """Append `token` to `path` (one line per run: a call that ran twice shows twice)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{token} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return os.getpid()


@wool.routine
async def leak(megabytes: int) -> int:
    """Keep `megabytes` more for good, as a leaking C extension or cache would."""
    _leaked.append(b"\x01" * (megabytes * 1_000_000))
    return os.getpid()


@wool.routine
async def allocate(megabytes: int) -> int:
    """Hold `megabytes` (touched, so resident) for a while."""
    held = b"\x01" * (megabytes * 1_000_000)
    await asyncio.sleep(30)
    return len(held)


@wool.routine
async def pid() -> int:
    return os.getpid()


@wool.routine
async def priority_here() -> int:
    """The priority in force for this routine's own nested calls."""
    with wool.options() as current:
        return current.priority


@wool.routine
async def nested_priority() -> tuple[int, int]:
    """The priority a nested call sees: inherited, then overridden."""
    inherited = await priority_here()
    with wool.options(priority=-3):
        overridden = await priority_here()
    return inherited, overridden


@wool.routine
async def chatty(text: str) -> int:
    """Print and log `text`."""
    import logging
    import sys

    print(f"out: {text}")
    print(f"err: {text}", file=sys.stderr)
    logging.getLogger("app.reports").warning("log: %s", text)
    return os.getpid()


@wool.routine
async def chatty_parent(text: str) -> int:
    """Print, then have a peer print: both reach the top-level caller."""
    print(f"parent: {text}")
    return await chatty(text)


@wool.routine
async def flood(megabytes: int) -> int:
    """Print `megabytes` of output in a loop."""
    line = "x" * 999
    for _ in range(megabytes * 1000):
        print(line)
    return os.getpid()
