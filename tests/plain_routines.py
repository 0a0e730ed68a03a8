"""Plain `def` routines for the tests of threaded routines: importable, so workers import them
by reference. They talk to the test's `Observer` with blocking sockets (they run in a thread,
where nothing can be awaited)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import routines

import wool

REQUEST: wool.ContextVar[str] = wool.ContextVar("plain_request", namespace="tests.plain", default="none")


def _tell(address: str, line: str) -> None:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(f"{line}\n".encode())
        conn.makefile("rb").readline()


def report(address: str, event: str) -> None:
    _tell(address, f"event {event}")


def gate(address: str, name: str) -> None:
    _tell(address, f"gate {name}")


@wool.routine
def blocking_sleep(address: str, name: str, seconds: float) -> tuple[int, str]:
    """Reports that it runs, waits for gate `name`, then blocks its thread for `seconds`."""
    report(address, f"running {name}")
    gate(address, name)
    time.sleep(seconds)
    return os.getpid(), threading.current_thread().name


@wool.routine
def at_gate(address: str, name: str) -> str:
    """Reports its start, waits for gate `name`, reports its end."""
    report(address, f"start {name}")
    gate(address, name)
    report(address, f"end {name}")
    return name


@wool.routine
def inside() -> dict[str, Any]:
    """What a plain `def` routine sees of its call, and a variable it changes."""
    seen = {"request": REQUEST.get(), "remaining": wool.remaining(), "state": wool.state(), "pid": os.getpid()}
    REQUEST.set("changed on the worker")
    return seen


@wool.routine
def nested_add(x: int) -> int:
    """Calls an async routine through `wool.run`."""
    return wool.run(routines.add(x, 1)) * 10


@wool.routine
def chain(n: int) -> int:
    """Calls itself `n` deep through `wool.run`: on a one-thread worker it must lend its thread."""
    return 0 if n == 0 else wool.run(chain(n - 1)) + 1


@wool.routine
def nested_after_cancel(address: str) -> None:
    """Waits at gate "cancelled", then tries a nested call: its own call was cancelled by then."""
    report(address, "waiting")
    gate(address, "cancelled")
    try:
        wool.run(routines.add(1, 2))
    except BaseException as e:
        report(address, f"nested raised {type(e).__name__}")
        raise
    report(address, "nested ran")


@wool.routine
def fails(message: str) -> None:
    raise ValueError(message)


@wool.routine
def spin(seconds: float) -> int:
    """Burns CPU for `seconds` (thread time), for the benchmark."""
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


@asynccontextmanager
async def answer() -> AsyncIterator[int]:
    yield 42
