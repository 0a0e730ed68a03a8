"""Routines the multi-process tests dispatch: an importable module, so workers import them by
reference (tests of routines defined in `__main__` run scripts instead)."""

from __future__ import annotations

import asyncio
import os
import pickle
import time
from collections.abc import AsyncIterator
from typing import Any

import wool
from wool.caller._context import current_mesh_var


async def _tell(address: str, line: str) -> None:
    """Send `line` to the test's `Observer` and wait for its answer."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"{line}\n".encode())
    await writer.drain()
    await reader.readline()
    writer.close()
    await writer.wait_closed()


async def report(address: str, event: str) -> None:
    """Tell the test's `Observer` that `event` happened (and wait until it was recorded)."""
    await _tell(address, f"event {event}")


async def gate(address: str, name: str) -> None:
    """Wait until the test opens gate `name`."""
    await _tell(address, f"gate {name}")


class Oops(Exception):
    """An exception with an extra attribute and a custom constructor."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, code)
        self.code = code


class PickledByBuffer(bytearray):
    """A bytearray that pickles through `PickleBuffer`, as numpy arrays do: when large, it
    travels out of band and is rebuilt from the received buffer."""

    def __reduce_ex__(self, protocol: Any) -> Any:
        if protocol >= 5:
            return type(self), (pickle.PickleBuffer(self),)
        return type(self), (bytearray(self),)


@wool.routine
async def add(x: int, y: int) -> int:
    """Add two numbers on a worker."""
    return x + y


@wool.routine
async def echo(value: Any) -> Any:
    return value


@wool.routine
async def pid() -> int:
    return os.getpid()


@wool.routine
async def append_line(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


@wool.routine
async def mutate(items: list[int]) -> list[int]:
    items.append(99)
    return items


@wool.routine
async def apply(fn: Any, *args: Any) -> Any:
    return fn(*args)


@wool.routine
async def fail(message: str, code: int = 7) -> None:
    try:
        raise KeyError("inner")
    except KeyError as e:
        raise Oops(message, code) from e


@wool.routine
async def raise_base(kind: str) -> None:
    raise {"KeyboardInterrupt": KeyboardInterrupt, "SystemExit": SystemExit, "GeneratorExit": GeneratorExit}[kind]("bye")


@wool.routine
async def raise_cancelled() -> None:
    raise asyncio.CancelledError()


@wool.routine
async def unpicklable_result() -> Any:
    import threading

    return threading.Lock()


@wool.routine
async def wait_at(address: str, name: str) -> str:
    """Report arrival, wait at a gate; report cancellation or completion."""
    try:
        await gate(address, name)
    except asyncio.CancelledError:
        await report(address, f"cancelled {name}")
        raise
    await report(address, f"done {name}")
    return name


@wool.routine
async def block(address: str, name: str) -> None:
    """Report that it runs, then wait forever (until cancelled or the worker dies)."""
    try:
        await report(address, f"running {name} {os.getpid()}")
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await report(address, f"cancelled {name}")
        raise


@wool.routine
async def exit_now(code: int = 3) -> None:
    os._exit(code)


@wool.routine
async def fib(n: int) -> int:
    if n < 2:
        return n
    async with asyncio.TaskGroup() as tg:
        a = tg.create_task(fib(n - 1))
        b = tg.create_task(fib(n - 2))
    return a.result() + b.result()


@wool.routine
async def pids_of_nested(count: int) -> list[int]:
    """The pids of `count` nested calls: which peers a worker dispatches to."""
    return list(await asyncio.gather(*(pid() for _ in range(count))))


@wool.routine
async def countdown(n: int, address: str = "") -> AsyncIterator[int]:
    try:
        for i in range(n, 0, -1):
            if address:
                await report(address, f"step {i}")
            yield i
    finally:
        if address:
            await report(address, "finally")


@wool.routine
async def accumulate() -> AsyncIterator[int]:
    """Yields the running total of the values sent to it."""
    total = 0
    while True:
        value = yield total
        if value is not None:
            total += value


@wool.routine
async def resilient(address: str = "") -> AsyncIterator[str]:
    """Yields 'ready'; an exception thrown in is caught and its repr yielded back."""
    try:
        message = "ready"
        while True:
            try:
                yield message
            except ValueError as e:
                message = f"caught {e}"
    finally:
        if address:
            await report(address, "finally")


@wool.routine
async def fail_after(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i
    raise Oops("after yields", n)


@wool.routine
async def gen_wait_at(address: str, name: str) -> AsyncIterator[int]:
    try:
        yield 1
        await gate(address, name)
        yield 2
    except asyncio.CancelledError:
        await report(address, f"cancelled {name}")
        raise


@wool.routine
async def pid_stream() -> AsyncIterator[int]:
    """Yield this worker's pid, forever."""
    while True:
        yield os.getpid()


@wool.routine
async def produce(address: str, n: int, fail_at: int = -1) -> AsyncIterator[int]:
    """Report each item before yielding it, and the generator's end."""
    try:
        for i in range(n):
            if i == fail_at:
                raise Oops(f"failed at {i}", i)
            await report(address, f"produced {i}")
            yield i
    finally:
        await report(address, "closed")


@wool.routine
async def numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


class Calculator:
    def __init__(self, base: int) -> None:
        self.base = base

    @wool.routine
    async def plus(self, x: int) -> int:
        return self.base + x

    @staticmethod
    @wool.routine
    async def double(x: int) -> int:
        return 2 * x

    @wool.routine
    @staticmethod
    async def triple(x: int) -> int:
        return 3 * x

    @classmethod
    @wool.routine
    async def name(cls) -> str:
        return cls.__name__


# -- counting serialization ---------------------------------------------------------------------

PICKLED = 0  # in the caller: how often a `Marker` was pickled
UNPICKLED = 0  # in a worker: how often a `Marker` was unpickled


def _unpickle_marker() -> Marker:
    global UNPICKLED
    UNPICKLED += 1
    return Marker()


def unpickled() -> int:
    return UNPICKLED


@wool.routine
async def unpickled_count() -> int:
    """How many `Marker`s this worker has unpickled."""
    return UNPICKLED


class Marker:
    def __reduce__(self) -> tuple[object, ...]:
        global PICKLED
        PICKLED += 1
        return (_unpickle_marker, ())


def routine_capturing_a_marker() -> Any:
    """A routine whose pickle (a closure, so by value) contains a `Marker`."""
    marker = Marker()

    @wool.routine
    async def unpickled_so_far() -> int:
        assert isinstance(marker, Marker)
        return unpickled()  # by reference: this module's global, not the closure's snapshot

    return unpickled_so_far


# -- at-most-once load test ---------------------------------------------------------------------


@wool.routine
async def record_execution(log_dir: str, token: str) -> str:
    """Append `token` to this worker process's execution log, `<log_dir>/<pid>.log` (one line
    per execution, a single O_APPEND write), and return it."""
    await asyncio.sleep(0)  # let calls interleave on the worker, as real routines do
    fd = os.open(os.path.join(log_dir, f"{os.getpid()}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{token}\n".encode())
    finally:
        os.close(fd)
    return token


@wool.routine
async def hog(address: str, seconds: float) -> None:
    """Report, then block the worker's event loop for `seconds`, as CPU-bound code does."""
    await report(address, "hogging")
    time.sleep(seconds)


@wool.routine
async def peer_ids(count: int) -> list[str]:
    """The ids of the workers this worker's own mesh (its discovery) knows, once it knows at
    least `count`: whether workers found each other."""
    mesh = current_mesh_var.get()
    assert mesh is not None
    return sorted(w.id for w in await mesh.wait_until(lambda workers: len(workers) >= count, 20))


# -- connections on demand ----------------------------------------------------------------------


@wool.routine
async def connected_peers() -> list[str]:
    """The ids of the workers this worker's own mesh holds a connection to, now."""
    mesh = current_mesh_var.get()
    assert mesh is not None
    return sorted(c.worker.id for c in mesh.connections)
