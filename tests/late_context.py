"""A module the tests' workers have not imported before the first call that uses it: its
variable is created after the call's context values arrived."""

from __future__ import annotations

import asyncio
import threading

import wool

TRACE: wool.ContextVar[object] = wool.ContextVar("trace", namespace="tests.late")


@wool.routine
async def read_trace() -> object:
    return TRACE.get(None)


@wool.routine
async def set_trace(value: str) -> None:
    TRACE.set(value)


@wool.routine
async def set_trace_to_a_lock() -> None:
    TRACE.set(threading.Lock())


@wool.routine
async def set_then_block(address: str) -> None:
    """Set the variable, say so, and wait to be cancelled."""
    from routines import report

    TRACE.set("set before the cancellation")
    await report(address, "set")
    await asyncio.Event().wait()
