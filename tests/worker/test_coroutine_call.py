"""A coroutine call on a worker, with a stand-in server and no sockets: every outcome is
exactly one reply, sent as the routine ends, and a call cancelled before its task ever ran
is answered at once (and never runs)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import make_call

import wool
from wool import protocol as p
from wool._transport import DEFAULT_MAX_MESSAGE_SIZE
from wool.worker import _calls
from wool.worker._admission import Admission, CallSlot
from wool.worker._calls import CoroutineCall


class Host:
    endpoint = "inproc://test"
    max_message_size = DEFAULT_MAX_MESSAGE_SIZE

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.replies: list[p.Reply] = []
        self.finished_keys: list[tuple[bytes, int]] = []

    def check_routine(self, msg: p.Call) -> None:
        pass

    def load_routine(self, msg: p.Call) -> Callable[..., Any]:
        return self.fn

    def reply(self, identity: bytes, msg: p.Reply) -> None:
        self.replies.append(msg)

    def finished(self, key: tuple[bytes, int]) -> None:
        self.finished_keys.append(key)

    def background(self, aw: Awaitable[Any]) -> None:
        raise AssertionError("a coroutine call leaves nothing behind")


def start(fn: Callable[..., Any], *args: Any) -> tuple[Host, CoroutineCall]:
    host = Host(fn)
    call = CoroutineCall(host, b"caller", make_call("w", 7, fn, *args), CallSlot(Admission(None)))
    call.start()
    return host, call


async def ended(call: CoroutineCall) -> None:
    """Wait until the call's task has ended (it sends its reply before it ends)."""
    assert call._task is not None
    await asyncio.wait({call._task})


async def test_return_is_one_reply_sent_by_the_task() -> None:
    async def add(x: int, y: int) -> int:
        return x + y

    host, call = start(add, 1, 2)
    await ended(call)
    assert host.finished_keys == [(b"caller", 7)]
    (reply,) = host.replies
    assert isinstance(reply, p.Return) and p.loads(reply.payload) == 3


async def test_exception_is_one_raise_reply() -> None:
    async def fail() -> None:
        raise ValueError("no")

    host, call = start(fail)
    await ended(call)
    (reply,) = host.replies
    assert isinstance(reply, p.Raise) and reply.type_name == "ValueError" and reply.message == "no"


async def test_base_exception_is_reported_and_does_not_reach_the_loop() -> None:
    async def interrupt() -> None:
        raise KeyboardInterrupt

    host, call = start(interrupt)
    await ended(call)
    (reply,) = host.replies
    assert isinstance(reply, p.Raise)
    assert isinstance(p.loads_exception(reply.type_name, reply.message, reply.traceback, reply.payload), wool.RemoteBaseException)


async def test_cancel_before_the_task_ran_answers_at_once_and_it_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # A task that has not taken a step exists only when calls start lazily: always on 3.11,
    # on 3.12+ for calls started during another call's eager step (see test_eager_start).
    monkeypatch.setattr(_calls, "EAGER", False)
    ran = []

    async def record() -> None:
        ran.append(True)

    host, call = start(record)
    call.cancel()  # in the same loop iteration as start: the task has not taken a step
    assert host.finished_keys == [(b"caller", 7)]
    (reply,) = host.replies
    assert isinstance(reply, p.Raise) and reply.type_name == "asyncio.exceptions.CancelledError"
    await ended(call)
    assert ran == [] and len(host.replies) == 1 and len(host.finished_keys) == 1


async def test_cancel_while_running_is_one_reply_with_the_reason() -> None:
    started = asyncio.Event()

    async def wait() -> None:
        started.set()
        await asyncio.Event().wait()

    host, call = start(wait)
    await started.wait()
    call.cancel(wool.WorkerLost("stopping"))
    await ended(call)
    assert host.finished_keys == [(b"caller", 7)]
    (reply,) = host.replies
    assert isinstance(reply, p.Raise) and reply.type_name.endswith("WorkerLost") and reply.message == "stopping"


async def test_routine_that_swallows_its_cancellation_returns_its_value() -> None:
    started = asyncio.Event()

    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return "kept going"
        return "unreachable"

    host, call = start(stubborn)
    await started.wait()
    call.cancel()
    await ended(call)
    (reply,) = host.replies
    assert isinstance(reply, p.Return) and p.loads(reply.payload) == "kept going"
