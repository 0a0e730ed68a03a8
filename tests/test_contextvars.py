"""`wool.ContextVar`: the stdlib API, and values that follow routine calls to workers and back.

The parity tests run each scenario of `context_scenarios` locally with a stdlib
`contextvars.ContextVar` and remotely with a `wool.ContextVar` on real workers, and compare
everything observed."""

from __future__ import annotations

import asyncio
import contextvars
import pickle
import threading
from typing import Any

import cloudpickle
import context_scenarios
import late_context
import pytest
from helpers import Observer

import wool
from wool.caller import _contextvars as cv

pytestmark = pytest.mark.timeout(60)

REQUEST = wool.ContextVar("request_id", namespace="tests")
TENANT = wool.ContextVar("tenant", namespace="tests", default="nobody")


def identity(fn: Any) -> Any:
    return fn


async def run_in_fresh_context(scenario: Any, var: Any, routines: Any) -> list[Any]:
    return await asyncio.create_task(scenario(var, routines), context=contextvars.copy_context())


# -- the API, in one process ---------------------------------------------------------------


def test_get_set_reset_mirror_the_stdlib() -> None:
    var: wool.ContextVar[int] = wool.ContextVar("api", namespace="tests.api")
    local: contextvars.ContextVar[int] = contextvars.ContextVar("api")

    def observe(v: Any) -> list[Any]:
        seen: list[Any] = []
        with pytest.raises(LookupError):
            v.get()
        seen.append(v.get(7))
        t1 = v.set(1)
        seen.append(t1.old_value is contextvars.Token.MISSING)
        t2 = v.set(2)
        seen += [v.get(), t2.old_value, t2.var is v]
        v.reset(t2)
        seen.append(v.get())
        with pytest.raises(RuntimeError):
            v.reset(t2)  # a token is used once
        v.reset(t1)
        seen.append(v.get(None))
        return seen

    assert contextvars.Context().run(observe, var) == contextvars.Context().run(observe, local)
    assert wool.Token.MISSING is contextvars.Token.MISSING


def test_default_name_and_namespace() -> None:
    assert contextvars.Context().run(TENANT.get) == "nobody"
    assert contextvars.Context().run(TENANT.get, "given") == "given"
    assert (TENANT.name, TENANT.namespace) == ("tenant", "tests")
    assert wool.ContextVar("plain").namespace is None
    assert "tests:tenant" in repr(TENANT)


def test_a_variable_is_its_name() -> None:
    """Two objects with one name and namespace are one variable; namespaces keep apart."""
    a, b = wool.ContextVar("same", namespace="tests.same"), wool.ContextVar("same", namespace="tests.same")
    other = wool.ContextVar("same", namespace="tests.other")

    def run() -> tuple[Any, Any]:
        a.set("value")
        return b.get(), other.get(None)

    assert contextvars.Context().run(run) == ("value", None)


def test_reset_refuses_tokens_of_other_variables_and_other_contexts() -> None:
    a, b = wool.ContextVar("ra", namespace="tests"), wool.ContextVar("rb", namespace="tests")

    def wrong_var() -> None:
        token = a.set(1)
        with pytest.raises(ValueError, match="different ContextVar"):
            b.reset(token)
        with pytest.raises(TypeError, match="wool.Token"):
            a.reset(object())  # type: ignore[arg-type]

    contextvars.Context().run(wrong_var)
    token = contextvars.Context().run(a.set, 1)
    with pytest.raises(ValueError):
        contextvars.Context().run(a.reset, token)


@pytest.mark.parametrize("bad", ["", 3, None, b"x"])
def test_bad_names_are_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match="non-empty str"):
        wool.ContextVar(bad)
    with pytest.raises(TypeError, match="namespace"):
        wool.ContextVar("ok", namespace=bad if bad is not None else 5)


def test_pickles_by_name_and_tokens_do_not_travel() -> None:
    copy = pickle.loads(cloudpickle.dumps(REQUEST))
    assert copy is not REQUEST

    def run() -> Any:
        REQUEST.set("r-1")
        return copy.get()

    assert contextvars.Context().run(run) == "r-1"
    token = contextvars.Context().run(REQUEST.set, "x")
    with pytest.raises(TypeError, match="cannot travel"):
        pickle.dumps(token)


def test_only_variables_that_were_set_travel() -> None:
    def run() -> dict[Any, Any]:
        assert cv.capture() == b"" or "tests" not in repr(cv.unpickle("x", cv.capture()))
        REQUEST.set("r-2")
        return cv.unpickle("x", cv.capture())

    carried = contextvars.Context().run(run)
    assert carried == {("tests", "request_id"): "r-2"}  # TENANT has a default, but was not set


# -- parity with the stdlib, on workers ------------------------------------------------------


@pytest.mark.multiprocess
async def test_parity_with_stdlib_context_variables() -> None:
    local = context_scenarios.build(context_scenarios.LOCAL, identity)
    remote = context_scenarios.build(context_scenarios.REMOTE, wool.routine)
    async with wool.WorkerPool(size=2):
        for name, scenario in context_scenarios.SCENARIOS.items():
            expected = await run_in_fresh_context(scenario, context_scenarios.LOCAL, local)
            got = await run_in_fresh_context(scenario, context_scenarios.REMOTE, remote)
            assert got == expected, name


@pytest.mark.multiprocess
async def test_parity_holds_on_read_ahead_streams() -> None:
    """A read-ahead stream brings back the generator's changes with each item."""
    local = context_scenarios.build(context_scenarios.LOCAL, identity)
    remote = context_scenarios.build(context_scenarios.REMOTE, wool.routine)

    async def scenario(var: Any, r: Any, ahead: Any) -> list[Any]:
        var.set("before")
        seen = []
        async for item in ahead(r.steps(5)):
            seen.append((item, var.get()))
        return seen

    expected = await run_in_fresh_context(lambda v, r: scenario(v, r, identity), context_scenarios.LOCAL, local)
    async with wool.WorkerPool(size=1):
        got = await run_in_fresh_context(
            lambda v, r: scenario(v, r, lambda g: wool.readahead(g, 2)), context_scenarios.REMOTE, remote
        )
    # Read ahead, the generator runs on without the caller's later values: it sees its own.
    assert [item for item, _ in got] == ["before", "gen0", "gen1", "gen2", "gen3"]
    assert [after for _, after in got] == [after for _, after in expected]


@pytest.mark.multiprocess
async def test_a_worker_matches_variables_of_a_module_it_imports_later() -> None:
    """The call's values arrive before the routine's module is imported on the worker; the
    variable that module creates finds them by name."""
    mine = wool.ContextVar("trace", namespace="tests.late")  # the same variable, another object
    async with wool.WorkerPool(size=1):
        token = mine.set("trace-42")
        assert await late_context.read_trace() == "trace-42"
        assert await late_context.set_trace("trace-43") is None
        assert mine.get() == "trace-43" and late_context.TRACE.get() == "trace-43"
        mine.reset(token)


@pytest.mark.multiprocess
async def test_unpicklable_values_fail_the_call_naming_the_variable() -> None:
    async with wool.WorkerPool(size=1):
        token = REQUEST.set(threading.Lock())
        with pytest.raises(TypeError, match=r"'tests:request_id'.*cannot be pickled"):
            await late_context.read_trace()
        REQUEST.reset(token)
        with pytest.raises(TypeError, match=r"'tests.late:trace'.*cannot be pickled"):
            await late_context.set_trace_to_a_lock()
        assert late_context.TRACE.get(None) is None  # the call failed: nothing came back
        assert await late_context.read_trace() is None  # and the worker is fine


@pytest.mark.multiprocess
async def test_a_cancelled_call_still_brings_back_what_it_set() -> None:
    """As with a local coroutine: what it set before it was cancelled is visible after."""
    async with Observer() as observer, wool.WorkerPool(size=1):

        async def call() -> object:
            try:
                await late_context.set_then_block(observer.address)
            except asyncio.CancelledError:
                return late_context.TRACE.get(None)
            raise AssertionError("not cancelled")

        task = asyncio.create_task(call())
        await observer.wait_for("set")
        task.cancel()
        assert await task == "set before the cancellation"
