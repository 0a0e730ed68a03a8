"""A generator call on a worker, with a stand-in server and no sockets: its one `CallState`
moves as the lifecycle table says, and each request is accepted or rejected by that table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from helpers import make_call

from wool import protocol as p
from wool._transport import DEFAULT_MAX_MESSAGE_SIZE
from wool.worker._admission import Admission, CallSlot
from wool.worker._generator_call import GeneratorCall

S = p.CallState
K = p.Kind


class Host:
    endpoint = "inproc://test"
    max_message_size = DEFAULT_MAX_MESSAGE_SIZE

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.replies: asyncio.Queue[p.Reply] = asyncio.Queue()
        self.finished_keys: list[tuple[bytes, int]] = []
        self.closing: list[asyncio.Task[Any]] = []

    def check_routine(self, msg: p.Call) -> None:
        pass

    def load_routine(self, msg: p.Call) -> Callable[..., Any]:
        return self.fn

    def reply(self, identity: bytes, msg: p.Reply) -> None:
        self.replies.put_nowait(msg)

    def finished(self, key: tuple[bytes, int]) -> None:
        self.finished_keys.append(key)

    def background(self, aw: Awaitable[Any]) -> None:
        self.closing.append(asyncio.ensure_future(aw))

    async def reply_of(self, kind: p.Kind) -> p.Reply:
        msg = await asyncio.wait_for(self.replies.get(), 5)
        assert msg.kind is kind, msg
        return msg

    async def settle(self) -> None:
        await asyncio.gather(*self.closing)


class Tracked(GeneratorCall):
    """Records every state it is put in."""

    seen: list[p.CallState]

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "state":
            self.__dict__.setdefault("seen", []).append(value)
        super().__setattr__(name, value)


def generator_call(fn: Callable[..., Any]) -> tuple[Host, Tracked]:
    host = Host(fn)
    return host, Tracked(host, b"caller", make_call("w", 7, fn, generator=True), CallSlot(Admission(None)))


def counter(gate: asyncio.Event | None = None, at: int = -1) -> Callable[[], AsyncIterator[int]]:
    async def count() -> AsyncIterator[int]:
        for i in range(100):
            if i == at and gate is not None:
                await gate.wait()
            yield i

    return count


def rejected(msg: p.Reply, text: str) -> bool:
    return isinstance(msg, p.Reject) and msg.reason is p.RejectReason.BAD_STATE and text in msg.detail


async def test_a_pulled_generator_runs_suspends_and_ends() -> None:
    host, call = generator_call(counter())
    assert call.state is S.WAITING
    call.handle(p.Next(7))
    assert rejected(await host.reply_of(K.REJECT), "next while the generator is waiting for a slot")
    call.start()
    assert call.state is S.RUNNING
    call.handle(p.Next(7))  # a second step while one runs
    assert rejected(await host.reply_of(K.REJECT), "next while the generator is running a step")
    await host.reply_of(K.YIELD)
    assert call.state is S.SUSPENDED
    call.handle(p.Send(7, p.dumps(None)))
    assert call.state is S.RUNNING
    await host.reply_of(K.YIELD)
    call.handle(p.Close(7))
    await host.reply_of(K.STOP)
    assert call.state is S.DONE and host.finished_keys == [(b"caller", 7)]
    await host.settle()


async def test_a_waiting_call_cancelled_is_answered_at_once_and_never_runs() -> None:
    host, call = generator_call(counter())
    call.handle(p.Cancel(7))
    reply = await host.reply_of(K.RAISE)
    assert isinstance(reply, p.Raise) and reply.type_name.endswith("CancelledError")
    assert call.state is S.DONE and call.seen[0] is S.WAITING and set(call.seen) == {S.WAITING, S.DONE}
    call.handle(p.Cancel(7))  # a second cancel: accepted, nothing more happens
    assert host.replies.empty() and host.finished_keys == [(b"caller", 7)]


async def test_a_waiting_call_refuses_credit() -> None:
    host, call = generator_call(counter())
    call.handle(p.Credit(7, 4))
    assert rejected(await host.reply_of(K.REJECT), "credit while the generator is waiting")
    assert call.state is S.WAITING


async def test_read_ahead_only_iterates_and_closes_through_every_state() -> None:
    """Every state of the table is reached by a transition: waiting, running, suspended,
    reading ahead (items sent unasked), closing (the item in progress stopped), done."""
    gate = asyncio.Event()
    host, call = generator_call(counter(gate, at=3))
    call.start()
    await host.reply_of(K.YIELD)  # item 0, pulled
    call.handle(p.Credit(7, 10))
    assert call.state is S.READ_AHEAD
    for _ in (1, 2):
        await host.reply_of(K.YIELD)  # items 1 and 2, unasked; item 3 waits at the gate
    for step in (p.Next(7), p.Send(7, p.dumps(1)), p.Throw(7, p.dumps_exception(ValueError()))):
        call.handle(step)
        assert rejected(await host.reply_of(K.REJECT), f"{step.kind.name.lower()} on a read-ahead stream, which only iterates")
    call.handle(p.Close(7))  # accepted while reading ahead
    assert call.state is S.CLOSING
    call.handle(p.Credit(7, 5))  # credit still on its way: ignored
    call.handle(p.Close(7))  # a second close is refused
    assert rejected(await host.reply_of(K.REJECT), "close on a read-ahead stream")
    await host.reply_of(K.STOP)
    assert call.state is S.DONE
    assert set(call.seen) == set(S)
    await host.settle()


async def test_credit_that_runs_out_waits_then_resumes() -> None:
    host, call = generator_call(counter())
    call.start()
    await host.reply_of(K.YIELD)
    call.handle(p.Credit(7, 2))
    values = [p.loads((await host.reply_of(K.YIELD)).payload) for _ in range(2)]  # type: ignore[attr-defined]
    assert values == [1, 2]
    run = call._step_task  # the run ahead, ending with its credit used up
    if run is not None:
        await asyncio.wait({run})  # its done-callback was added first, so it has run too
    assert call._step_task is None and call.state is S.READ_AHEAD and host.replies.empty()
    call.handle(p.Credit(7, 1))
    assert p.loads((await host.reply_of(K.YIELD)).payload) == 3  # type: ignore[attr-defined]
    call.handle(p.Cancel(7))
    assert call.state is S.DONE
    await host.settle()


@pytest.mark.parametrize("state_reached_by", ["running", "suspended"])
async def test_cancel_abandons_from_any_started_state(state_reached_by: str) -> None:
    gate = asyncio.Event()
    host, call = generator_call(counter(gate, at=0 if state_reached_by == "running" else 1))
    call.start()
    if state_reached_by == "suspended":
        await host.reply_of(K.YIELD)
        assert call.state is S.SUSPENDED
    else:
        assert call.state is S.RUNNING
    call.handle(p.Cancel(7))
    assert call.state is S.DONE
    if state_reached_by == "running":
        reply = await host.reply_of(K.RAISE)  # the running step answers the cancel
        assert isinstance(reply, p.Raise) and reply.type_name.endswith("CancelledError")
    assert host.finished_keys == [(b"caller", 7)]
    await host.settle()
