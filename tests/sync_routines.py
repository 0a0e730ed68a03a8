"""Routines and helpers of the synchronous-API tests (`test_sync`, `test_executor`): an
importable module, so workers import them by reference."""

from __future__ import annotations

import asyncio
import os
import select
import time
from pathlib import Path

import wool


@wool.routine
async def double(x: int) -> int:
    return 2 * x


@wool.routine
async def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


@wool.routine
async def first_fast_then_hang(args: tuple[str, int]) -> int:
    """Item 0 returns at once; the others say "started" through the fifo `started` in
    `directory`, wait until cancelled and leave a file saying so."""
    directory, index = args
    if index == 0:
        return 0
    with open(Path(directory, "started"), "w") as f:
        f.write("started\n")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        Path(directory, f"cancelled-{index}").write_text("")
        raise
    return index


@wool.routine
async def announce_then_hang(fifo: str, marker: str) -> None:
    """Say "started" through the fifo, then wait until cancelled; write what ended it."""
    with open(fifo, "w") as f:
        f.write("started\n")
    try:
        await asyncio.Event().wait()
    except BaseException as e:
        Path(marker).write_text(type(e).__name__)
        raise


def read_fifo(path: str | os.PathLike[str], timeout: float, lines: int = 1) -> str:
    """The first `lines` lines writers put into the fifo at `path`, waiting at most `timeout`
    seconds."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    # A write end of our own: without one, the fifo reads as ended until the writer opens it.
    keep_open = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        data = b""
        deadline = time.monotonic() + timeout
        while data.count(b"\n") < lines:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"nothing written to {path} within {timeout} s")
            data += os.read(fd, 4096)
        return data.decode().strip()
    finally:
        os.close(keep_open)
        os.close(fd)
