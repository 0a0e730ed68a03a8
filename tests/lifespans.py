"""Lifespans and routines for the lifespan tests: importable, so workers import them by
reference. Each reports to the test's `Observer` (its address bound with functools.partial)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from routines import add, report

import wool


@asynccontextmanager
async def curves(address: str) -> AsyncIterator[dict[str, Any]]:
    """Loads "curves" once per worker; its exit is reported."""
    pid = os.getpid()
    await report(address, f"enter {pid}")
    try:
        yield {"pid": pid, "curve": [1.0, 2.0, 3.0]}
    finally:
        await report(address, f"exit {pid}")


@asynccontextmanager
async def nested(address: str) -> AsyncIterator[int]:
    """Calls a routine while it is being entered: the worker's mesh is up."""
    total = await add(20, 22)
    await report(address, f"nested {total}")
    yield total


class CurvesMissing(Exception):
    pass


def load_curves() -> None:
    raise CurvesMissing("no curves in /data/curves")


@asynccontextmanager
async def failing() -> AsyncIterator[None]:
    load_curves()
    yield


@asynccontextmanager
async def failing_on_exit() -> AsyncIterator[str]:
    yield "ok"
    raise RuntimeError("could not flush the cache")


def not_a_context_manager() -> int:
    return 3


@wool.routine
async def read_state() -> Any:
    return wool.state()


@wool.routine
async def read_state_here() -> Any:
    """wool.state() as seen by a routine, compared with its worker's pid."""
    return wool.state(), os.getpid()


@asynccontextmanager
async def observed() -> AsyncIterator[int]:
    """For workers started by hand: reports to the Observer named by $WOOL_TEST_OBSERVER."""
    address = os.environ["WOOL_TEST_OBSERVER"]
    await report(address, "entered")
    try:
        yield os.getpid()
    finally:
        await report(address, "exited")


@asynccontextmanager
async def hanging() -> AsyncIterator[None]:
    """Never finishes entering (reports that it started, and that it was cancelled)."""
    address = os.environ["WOOL_TEST_OBSERVER"]
    try:
        await report(address, "entering")
        await asyncio.Event().wait()
    finally:
        await report(address, "entry cancelled")
    yield
