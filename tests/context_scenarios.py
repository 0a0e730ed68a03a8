"""Scenarios run twice by the parity tests: once with a stdlib `contextvars.ContextVar` and
plain local coroutines, once with a `wool.ContextVar` and the same coroutines made routines
(dispatched to workers). Each scenario returns what it observed; the two runs must agree.

The routines are built in a closure, so workers receive them pickled by value, the variable
with them (by its name)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import wool

LOCAL: contextvars.ContextVar[Any] = contextvars.ContextVar("parity")
REMOTE: wool.ContextVar[Any] = wool.ContextVar("parity", namespace="tests")


def build(var: Any, routine: Callable[[Any], Any]) -> SimpleNamespace:
    """The coroutines of the scenarios, each decorated with `routine`."""

    @routine
    async def read() -> Any:
        return var.get("unset")

    @routine
    async def write(value: Any) -> Any:
        var.set(value)
        return var.get()

    @routine
    async def write_then_fail(value: Any) -> None:
        var.set(value)
        raise ValueError(value)

    @routine
    async def set_and_reset(value: Any) -> Any:
        token = var.set(value)
        inside = var.get()
        var.reset(token)
        return inside, var.get("unset")

    @routine
    async def relay() -> Any:
        """A nested call each way: sees the caller's value, and its child's change."""
        before = await read()
        after_write = await write(f"{before}>nested")
        return before, after_write, var.get("unset")

    @routine
    async def deep(depth: int) -> Any:
        if depth == 0:
            seen = var.get("unset")
            var.set(f"{seen}|bottom")
            return seen
        var.set(f"{var.get('unset')}|{depth}")
        below = await deep(depth - 1)
        return [below, var.get("unset")]

    @routine
    async def fan_out() -> Any:
        """Children in `gather` fork the context: their writes stay theirs."""
        var.set("parent")
        results = await asyncio.gather(write("a"), write("b"), read())
        return results, var.get()

    @routine
    async def steps(count: int) -> Any:
        for i in range(count):
            seen = var.get("unset")
            var.set(f"gen{i}")
            sent = yield seen
            if sent is not None:
                var.set(f"sent:{sent}")

    @routine
    async def token_across_steps() -> Any:
        token = var.set("inside")
        yield var.get()
        var.reset(token)
        yield var.get("unset")

    return SimpleNamespace(**{k: v for k, v in locals().items() if k not in ("var", "routine")})


async def basic(var: Any, r: SimpleNamespace) -> list[Any]:
    seen: list[Any] = [await r.read()]
    token = var.set("a")
    seen.append(await r.read())
    seen.append(await r.write("b"))
    seen.append(var.get("unset"))
    seen.append(await r.set_and_reset("c"))
    seen.append(var.get("unset"))
    try:
        await r.write_then_fail("d")
    except ValueError as e:
        seen.append(("raised", str(e), var.get("unset")))
    var.reset(token)
    seen.append(var.get("unset"))
    return seen


async def gather_and_taskgroup(var: Any, r: SimpleNamespace) -> list[Any]:
    var.set("caller")
    seen: list[Any] = [await asyncio.gather(r.write("x"), r.write("y"), r.read()), var.get()]

    async def child(value: str) -> Any:
        var.set(value)
        got = await r.read()
        return got, await r.write(f"{value}!"), var.get()

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(child("t1")), tg.create_task(child("t2")), tg.create_task(r.read())]
    seen.append([t.result() for t in tasks])
    seen.append(var.get())
    seen.append(await r.fan_out())
    seen.append(var.get())
    return seen


async def generator_steps(var: Any, r: SimpleNamespace) -> list[Any]:
    var.set("c0")
    agen = r.steps(4)
    seen: list[Any] = [await agen.__anext__(), var.get()]
    var.set("c1")
    seen += [await agen.__anext__(), var.get()]
    seen += [await agen.asend("hello"), var.get()]
    seen += [await agen.__anext__(), var.get()]
    await agen.aclose()
    seen.append(var.get())
    async for item in r.token_across_steps():
        seen += [item, var.get("unset")]
    seen.append(var.get())
    return seen


async def nested_dispatch(var: Any, r: SimpleNamespace) -> list[Any]:
    seen: list[Any] = [await r.relay(), var.get("unset")]
    var.set("top")
    seen += [await r.relay(), var.get()]
    seen += [await r.deep(3), var.get()]
    return seen


SCENARIOS: dict[str, Callable[[Any, SimpleNamespace], Awaitable[list[Any]]]] = {
    "basic": basic,
    "gather_and_taskgroup": gather_and_taskgroup,
    "generator_steps": generator_steps,
    "nested_dispatch": nested_dispatch,
}
