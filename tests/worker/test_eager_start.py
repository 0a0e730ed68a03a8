"""Eager first steps (Python 3.12+): a coroutine call that returns without suspending is
answered inside `start`, and everything a routine can observe is as with a lazily started
task: `asyncio.current_task()`, the call's own context, cancellation. The same tests run on
3.11, where every call starts lazily, and there assert the lazy path."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from helpers import make_call

from wool import protocol as p
from wool._transport import DEFAULT_MAX_MESSAGE_SIZE
from wool.caller import current_slot_var
from wool.worker import _calls
from wool.worker._admission import Admission, CallSlot
from wool.worker._calls import CoroutineCall

EAGER = sys.version_info >= (3, 12)
seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


async def _stand_in(*args: Any) -> None:
    pass


class Host:
    """A stand-in server whose finished calls free their admission slot, as the real one's do."""

    endpoint = "inproc://test"
    max_message_size = DEFAULT_MAX_MESSAGE_SIZE

    def __init__(self, fn: Callable[..., Any], limit: int | None = None) -> None:
        self.fn = fn
        self.admission = Admission(limit)
        self.calls: dict[tuple[bytes, int], CoroutineCall] = {}
        self.replies: list[p.Reply] = []

    def check_routine(self, msg: p.Call) -> None:
        pass

    def load_routine(self, msg: p.Call) -> Callable[..., Any]:
        return self.fn

    def reply(self, identity: bytes, msg: p.Reply) -> None:
        self.replies.append(msg)

    def finished(self, key: tuple[bytes, int]) -> None:
        call = self.calls.pop(key)
        self.admission.ended(call, call.slot)

    def background(self, aw: Awaitable[Any]) -> None:
        raise AssertionError("a coroutine call leaves nothing behind")

    def admit(self, call_id: int, *args: Any) -> CoroutineCall:
        slot = CallSlot(self.admission)
        # `load_routine` hands out `fn` itself: the pickled routine is a stand-in.
        call = CoroutineCall(self, b"caller", make_call("w", call_id, _stand_in, *args), slot)
        self.calls[(b"caller", call_id)] = call
        self.admission.admit(call, slot)
        return call


def test_eager_starts_exactly_from_python_3_12() -> None:
    assert _calls.EAGER is EAGER


async def test_a_routine_that_does_not_suspend_is_answered_within_start() -> None:
    async def add(x: int, y: int) -> int:
        return x + y

    host = Host(add)
    call = host.admit(1, 1, 2)
    assert len(host.replies) == (1 if EAGER else 0)  # eager: answered before start returned
    assert call._task is not None
    await asyncio.wait({call._task})
    (reply,) = host.replies
    assert isinstance(reply, p.Return) and p.loads(reply.payload) == 3


async def test_current_task_inside_the_routine_is_the_calls_task() -> None:
    tasks: list[asyncio.Task[Any] | None] = []

    async def which() -> None:
        tasks.append(asyncio.current_task())

    host = Host(which)
    call = host.admit(1)
    assert call._task is not None
    await asyncio.wait({call._task})
    assert tasks == [call._task]
    assert asyncio.current_task() is not call._task  # and the test's own task is back


async def test_each_call_runs_in_its_own_context() -> None:
    async def mark(value: str) -> tuple[str, bool]:
        before = seen.get()
        seen.set(value)
        return before, current_slot_var.get() is not None

    host = Host(mark)
    calls = [host.admit(1, "first"), host.admit(2, "second")]
    await asyncio.wait({c._task for c in calls if c._task is not None})
    assert [p.loads(r.payload) for r in host.replies if isinstance(r, p.Return)] == [("unset", True), ("unset", True)]
    assert seen.get() == "unset"  # nothing leaked into the context that started them


async def test_a_call_cancelled_after_its_eager_first_step_is_answered_cancelled() -> None:
    started = asyncio.Event()

    async def wait() -> None:
        started.set()
        await asyncio.Event().wait()

    host = Host(wait)
    call = host.admit(1)
    assert started.is_set() == EAGER  # eager: the first step ran inside start
    await started.wait()
    call.cancel()
    assert call._task is not None
    await asyncio.wait({call._task})
    (reply,) = host.replies
    assert isinstance(reply, p.Raise) and reply.type_name == "asyncio.exceptions.CancelledError"


async def test_a_routine_cancelling_its_own_task_in_its_first_step_is_cancelled() -> None:
    async def cancel_self() -> str:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)
        return "not cancelled"

    host = Host(cancel_self)
    call = host.admit(1)
    assert call._task is not None
    await asyncio.wait({call._task})
    (reply,) = host.replies
    assert isinstance(reply, p.Raise) and reply.type_name == "asyncio.exceptions.CancelledError"


async def test_thousands_of_waiting_calls_start_one_after_another_without_recursing() -> None:
    """With one slot, each call that ends starts the next waiting one: eagerly, that would
    nest one start inside the other for every waiting call."""

    blocker = asyncio.Event()

    async def add(x: int, y: int) -> int:
        if x == 0:  # the first call holds the slot while the others queue
            await blocker.wait()
        return x + y

    host = Host(add, limit=1)
    first = host.admit(0, 0, 0)
    n = 3 * sys.getrecursionlimit()
    for i in range(1, n + 1):
        host.admit(i, i, 1)
    assert host.admission.queued == n
    blocker.set()
    assert first._task is not None
    await asyncio.wait({first._task})
    while host.calls:  # each lazily started call runs in a later loop iteration
        await asyncio.sleep(0)
    returns = [p.loads(r.payload) for r in host.replies if isinstance(r, p.Return)]
    assert len(host.replies) == n + 1 and sorted(returns) == [0, *range(2, n + 2)]


@pytest.mark.skipif(not EAGER, reason="eager first steps need Python 3.12+")
async def test_eager_start_is_off_when_eager_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_calls, "EAGER", False)

    async def add(x: int, y: int) -> int:
        return x + y

    host = Host(add)
    call = host.admit(1, 1, 2)
    assert host.replies == []
    assert call._task is not None
    await asyncio.wait({call._task})
    assert len(host.replies) == 1
