"""Routines for the corners of local semantics: async generators for
`contextlib.asynccontextmanager`, after the generators that CPython's own tests of it use
(Lib/test/test_contextlib_async.py), and read-ahead streams closed early. An importable
module, so workers import them by reference."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from routines import gate, report

import wool


class Interrupt(BaseException):
    """Not an `Exception`: a worker reports one its routine raises as `RemoteBaseException`,
    but one thrown in by the caller and let through is the caller's own."""


@wool.routine
async def plain(value: Any = 42) -> AsyncIterator[Any]:
    yield value


@wool.routine
async def recording(path: str) -> AsyncIterator[int]:
    """Records on the worker what happened to it, in `path`, before the step ends."""
    with open(path, "a") as f:
        f.write("entered\n")
    try:
        yield 42
    except BaseException as e:
        with open(path, "a") as f:
            f.write(f"thrown {type(e).__name__}\n")
        raise
    finally:
        with open(path, "a") as f:
            f.write("finally\n")


@wool.routine
async def suppressing() -> AsyncIterator[None]:
    """Swallows a ZeroDivisionError raised in the block."""
    try:
        yield
    except ZeroDivisionError:
        pass


@wool.routine
async def wrapping() -> AsyncIterator[None]:
    """Raises a RuntimeError caused by whatever the block raised."""
    try:
        yield
    except Exception as exc:
        raise RuntimeError(f"caught {exc}") from exc


@wool.routine
async def chaining() -> AsyncIterator[None]:
    """Raises a KeyError while handling what the block raised (its `__context__`)."""
    try:
        yield
    except Exception:
        raise KeyError("while handling")  # noqa: B904 (the context is the point)


@wool.routine
async def chaining_deeper() -> AsyncIterator[None]:
    """Raises an error whose cause's context is what the block raised."""
    try:
        yield
    except Exception:
        try:
            raise OSError("in between")
        except OSError as middle:
            raise LookupError("outer") from middle


@wool.routine
async def noting() -> AsyncIterator[None]:
    """Lets what the block raised through, with a note added."""
    try:
        yield
    except Exception as e:
        e.add_note("seen on the worker")
        raise


@wool.routine
async def yields_after_throw() -> AsyncIterator[None]:
    try:
        yield
    except BaseException:
        yield


@wool.routine
async def never_yields() -> AsyncIterator[None]:
    if False:
        yield


@wool.routine
async def yields_twice() -> AsyncIterator[None]:
    yield
    yield


@wool.routine
async def replacing() -> AsyncIterator[None]:
    """Turns a RuntimeError into a SyntaxError (CPython's non-normalised test)."""
    try:
        yield
    except RuntimeError:
        raise SyntaxError("replaced") from None


@wool.routine
async def keywords(a: Any, *, b: Any) -> AsyncIterator[tuple[Any, Any]]:
    yield a, b


@wool.routine
async def ahead_then_wait(address: str, items: int) -> AsyncIterator[int]:
    """Yields `items` items, then waits at gate "stuck" in the middle of the next; reports how
    its `finally` was reached."""
    try:
        for i in range(items):
            yield i
        await gate(address, "stuck")
        yield items
    except BaseException as e:
        await report(address, f"ended by {type(e).__name__}")
        raise
    finally:
        await report(address, "closed")


@wool.routine
async def failing_finally(address: str) -> AsyncIterator[int]:
    try:
        while True:
            await report(address, "produced")
            yield 1
    finally:
        raise LookupError("the finally failed")
