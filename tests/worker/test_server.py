"""The worker's ROUTER, seen from the wire: a raw DEALER sends hand-built frames to a real
worker process and checks the replies it gets back. Nothing a peer sends may kill the worker or
stop it serving others."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import cloudpickle
import msgpack
import pytest
import zmq
import zmq.asyncio
from helpers import Observer, make_call

import wool
from tests import routines
from wool import protocol as p
from wool._transport import DEFAULT_LIVENESS, context

pytestmark = pytest.mark.multiprocess

RECV_TIMEOUT = 10.0


class RawPeer:
    """A bare DEALER connected to one worker: sends frames as given, decodes what comes back."""

    def __init__(self, endpoint: str) -> None:
        ctx = zmq.asyncio.Context.shadow(context())  # one zmq context per process
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)  # fuzzing: never make the worker hold replies back
        self.sock.connect(endpoint)

    def close(self) -> None:
        self.sock.close(linger=0)

    async def send(self, msg: p.Message) -> None:
        await self.sock.send_multipart(p.encode(msg))

    async def send_frames(self, frames: list[bytes]) -> None:
        await self.sock.send_multipart(frames)

    async def recv(self) -> p.Message:
        frames = await asyncio.wait_for(self.sock.recv_multipart(), RECV_TIMEOUT)
        return p.decode(frames)  # whatever a worker sends is a valid message

    async def recv_for(self, call_id: int, others: list[p.Message] | None = None) -> p.Message:
        """The next reply for `call_id`; replies to other calls go to `others`."""
        while True:
            msg = await self.recv()
            if msg.call_id == call_id:
                return msg
            if others is None:
                raise AssertionError(f"expected a reply for call {call_id}, got {msg!r}")
            others.append(msg)

    async def ping(self, call_id: int) -> p.Pong:
        await self.send(p.Ping(call_id))
        reply = await self.recv()
        assert isinstance(reply, p.Pong), f"expected the pong, got {reply!r}"
        assert reply.call_id == call_id
        return reply


@contextlib.asynccontextmanager
async def raw_worker() -> AsyncIterator[tuple[wool.WorkerPool, wool.WorkerInfo, RawPeer]]:
    """A real single-worker pool, and a raw DEALER connected to its worker."""
    async with wool.WorkerPool(size=1, grace=2.0) as pool:
        (info,) = pool.workers
        peer = RawPeer(info.endpoint)
        try:
            yield pool, info, peer
        finally:
            peer.close()


def value_of(reply: p.Message) -> Any:
    assert isinstance(reply, (p.Return, p.Yield)), f"expected a value, got {reply!r}"
    return p.loads(reply.payload)


def assert_reject(reply: p.Message, call_id: int, reason: p.RejectReason, *words: str) -> None:
    assert isinstance(reply, p.Reject), f"expected a reject, got {reply!r}"
    assert (reply.call_id, reply.reason) == (call_id, reason), reply
    for word in words:
        assert word in reply.detail, reply


async def test_call_returns_its_value() -> None:
    async with raw_worker() as (_, info, peer):
        await peer.send(make_call(info.id, 1, routines.add, 1, 2))
        reply = await peer.recv()
        assert isinstance(reply, p.Return) and reply.call_id == 1
        assert value_of(reply) == 3
        assert p.legal_reply(False, p.Kind.CALL, reply.kind)


async def test_many_calls_on_one_socket_are_told_apart_by_call_id() -> None:
    async with raw_worker() as (_, info, peer):
        for i in range(1, 51):
            await peer.send(make_call(info.id, i, routines.add, i, 1000))
        replies = [await peer.recv() for _ in range(50)]
        assert sorted((r.call_id, value_of(r)) for r in replies) == [(i, i + 1000) for i in range(1, 51)]


async def test_call_ids_are_per_caller() -> None:
    """Two callers may use the same call id at once: a call is keyed by caller and id."""
    async with Observer() as observer, raw_worker() as (_, info, peer):
        other = RawPeer(info.endpoint)
        try:
            await peer.send(make_call(info.id, 1, routines.wait_at, observer.address, "first"))
            await observer.wait_for("at first")
            await other.send(make_call(info.id, 1, routines.add, 20, 22))
            assert value_of(await other.recv()) == 42
            observer.open("first")
            assert value_of(await peer.recv()) == "first"
        finally:
            other.close()


async def test_call_for_another_worker_is_rejected_and_does_not_run() -> None:
    async with Observer() as observer, raw_worker() as (_, info, peer):
        await peer.send(make_call("not-" + info.id, 1, routines.block, observer.address, "wrong"))
        assert_reject(await peer.recv(), 1, p.RejectReason.WRONG_WORKER, info.id)
        # Had the call started, id 1 would still be open (`block` never returns) and this
        # call would be refused as a duplicate.
        await peer.send(make_call(info.id, 1, routines.echo, "reused"))
        assert value_of(await peer.recv()) == "reused"
        assert not any(e.startswith("running wrong") for e in observer.events)


def envelope(*items: Any) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


@pytest.mark.parametrize(
    ("frames", "words"),
    [
        pytest.param([envelope(99, p.Kind.PING, 5)], ["version 99"], id="unknown-version"),
        pytest.param([envelope(p.VERSION + 1, p.Kind.NEXT, 5)], [f"version {p.VERSION + 1}"], id="next-version"),
        pytest.param([envelope(p.VERSION, 77, 5)], ["unknown message kind 77"], id="unknown-kind"),
        pytest.param([envelope(p.VERSION, p.Kind.PING, 5, "extra")], ["malformed ping"], id="extra-field"),
        pytest.param([envelope(p.VERSION, p.Kind.SEND, 5)], ["send envelope lacks its frames"], id="missing-frames"),
        pytest.param(
            [envelope(p.VERSION, p.Kind.SEND, 5, [b"c"])],
            ["send needs at least 2 frames after its envelope"],
            id="missing-payload",
        ),
        pytest.param(
            [envelope(p.VERSION, p.Kind.NEXT, 5), b"c", b"x"],
            ["next needs 1 frames after its envelope, got 2"],
            id="unexpected-payload",
        ),
        pytest.param(p.encode(p.Return(5, (b"x",))), ["does not take return"], id="a-reply-kind"),
        pytest.param(p.encode(p.Pong(5, "someone")), ["does not take pong"], id="a-pong"),
    ],
)
async def test_malformed_request_with_readable_call_id_is_rejected(frames: list[bytes], words: list[str]) -> None:
    async with raw_worker() as (_, info, peer):
        await peer.send_frames(frames)
        assert_reject(await peer.recv(), 5, p.RejectReason.MALFORMED, *words)
        assert (await peer.ping(6)).worker_id == info.id


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([b""], id="empty-envelope"),
        pytest.param([b"\xc1\x00garbage"], id="not-msgpack"),
        pytest.param([msgpack.packb({"kind": "call"})], id="not-an-array"),
        pytest.param([envelope(p.VERSION, p.Kind.PING, -5)], id="negative-call-id"),
        pytest.param([envelope(99, p.Kind.PING, "5")], id="unreadable-call-id"),
        pytest.param([b"\x90" * (p.MAX_ENVELOPE + 1)], id="oversize-envelope"),
    ],
)
async def test_request_without_an_answer_gets_no_reply(frames: list[bytes]) -> None:
    """Dropped silently (nothing can be named in a reply, or nothing is owed): the next reply
    on the socket is the pong of a ping sent after it."""
    async with raw_worker() as (_, info, peer):
        await peer.send_frames(frames)
        assert (await peer.ping(7)).worker_id == info.id


async def test_step_for_unknown_call_is_rejected() -> None:
    async with raw_worker() as (_, _info, peer):
        # A cancel too: a caller waiting for the last reply of a call it cancelled must not
        # wait forever if that reply was lost.
        await peer.send(p.Cancel(40))
        assert_reject(await peer.recv(), 40, p.RejectReason.UNKNOWN_CALL)
        await peer.send(p.Next(41))
        assert_reject(await peer.recv(), 41, p.RejectReason.UNKNOWN_CALL, "41")
        await peer.send(p.Send(42, p.dumps(1)))
        assert_reject(await peer.recv(), 42, p.RejectReason.UNKNOWN_CALL)
        await peer.send(p.Close(43))
        assert_reject(await peer.recv(), 43, p.RejectReason.UNKNOWN_CALL)


async def test_duplicate_call_id_while_running_is_rejected_and_first_call_completes() -> None:
    async with Observer() as observer, raw_worker() as (_, info, peer):
        await peer.send(make_call(info.id, 9, routines.wait_at, observer.address, "first"))
        await observer.wait_for("at first")
        await peer.send(make_call(info.id, 9, routines.wait_at, observer.address, "second"))
        assert_reject(await peer.recv(), 9, p.RejectReason.BAD_STATE, "already open")
        observer.open("first")
        assert value_of(await peer.recv()) == "first"
        await observer.wait_for("done first")
        assert "at second" not in observer.events


async def test_step_of_a_running_coroutine_call_is_rejected() -> None:
    async with Observer() as observer, raw_worker() as (_, info, peer):
        await peer.send(make_call(info.id, 3, routines.wait_at, observer.address, "held"))
        await observer.wait_for("at held")
        await peer.send(p.Next(3))
        assert_reject(await peer.recv(), 3, p.RejectReason.BAD_STATE, "coroutine")
        observer.open("held")
        assert value_of(await peer.recv()) == "held"


async def test_cancel_of_a_running_call_answers_with_cancelled_error() -> None:
    async with Observer() as observer, raw_worker() as (_, info, peer):
        await peer.send(make_call(info.id, 4, routines.block, observer.address, "victim"))
        await observer.wait_matching(r"running victim \d+")
        await peer.send(p.Cancel(4))
        reply = await peer.recv()
        assert isinstance(reply, p.Raise) and reply.call_id == 4
        assert reply.type_name == "asyncio.exceptions.CancelledError"
        await observer.wait_for("cancelled victim")
        # The call is over: a further step is refused as unknown.
        await peer.send(p.Next(4))
        assert_reject(await peer.recv(), 4, p.RejectReason.UNKNOWN_CALL)


async def test_routine_not_matching_its_digest_fails_that_call_only() -> None:
    async with raw_worker() as (_, info, peer):
        good = make_call(info.id, 1, routines.add, 1, 2)
        forged = p.Call(1, info.id, good.digest, good.name, False, cloudpickle.dumps(routines.pid, protocol=5), good.payload)
        await peer.send(forged)
        reply = await peer.recv()
        assert isinstance(reply, p.Raise) and reply.call_id == 1
        assert reply.type_name == "wool.DispatchError"
        assert "does not match its digest" in reply.message
        exc = p.loads_exception(reply.type_name, reply.message, reply.traceback, reply.payload)
        assert isinstance(exc, wool.DispatchError)
        await peer.send(make_call(info.id, 2, routines.add, 1, 2))
        assert value_of(await peer.recv()) == 3


async def test_forged_routine_does_not_poison_the_digest_cache() -> None:
    """A forged call with a real routine's digest is refused, and does not make later calls
    with that digest run the forged routine."""
    async with raw_worker() as (_, info, peer):
        good = make_call(info.id, 1, routines.add, 1, 2)
        await peer.send(
            p.Call(1, info.id, good.digest, good.name, False, cloudpickle.dumps(routines.echo, protocol=5), good.payload)
        )
        assert isinstance(await peer.recv(), p.Raise)
        await peer.send(good)
        assert value_of(await peer.recv()) == 3


@pytest.mark.parametrize(
    "routine_frame",
    [pytest.param(b"\x80\x05garbage", id="garbage-pickle"), pytest.param(cloudpickle.dumps(42, protocol=5), id="not-callable")],
)
async def test_unloadable_routine_fails_that_call_only(routine_frame: bytes) -> None:
    async with raw_worker() as (_, info, peer):
        digest = hashlib.blake2b(routine_frame, digest_size=16).digest()
        await peer.send(p.Call(1, info.id, digest, "mystery", False, routine_frame, p.dumps(((), {}))))
        reply = await peer.recv()
        assert isinstance(reply, p.Raise) and reply.call_id == 1
        await peer.send(make_call(info.id, 2, routines.add, 1, 2))
        assert value_of(await peer.recv()) == 3


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param((b"\x00\x01garbage",), id="garbage-bytes"),
        pytest.param((b"",), id="empty"),
        pytest.param(p.dumps("not an (args, kwargs) pair"), id="wrong-shape"),
        pytest.param(p.dumps(((1,), {})), id="wrong-arity"),
    ],
)
async def test_bad_arguments_fail_that_call_only(payload: tuple[bytes, ...]) -> None:
    async with raw_worker() as (pool, info, peer):
        good = make_call(info.id, 1, routines.add, 1, 2)
        await peer.send(p.Call(1, info.id, good.digest, good.name, False, good.routine, payload))
        reply = await peer.recv()
        assert isinstance(reply, p.Raise) and reply.call_id == 1, reply
        assert reply.type_name and reply.traceback
        await peer.send(make_call(info.id, 2, routines.add, 1, 2))
        assert value_of(await peer.recv()) == 3
        assert pool.processes[0].returncode is None


async def test_generator_protocol_walk() -> None:
    async with raw_worker() as (_, info, peer):
        await peer.send(make_call(info.id, 5, routines.countdown, 3, generator=True))
        replies = [await peer.recv()]
        for _ in range(3):
            await peer.send(p.Next(5))
            replies.append(await peer.recv())
        assert [type(r) for r in replies] == [p.Yield, p.Yield, p.Yield, p.Stop]
        assert [value_of(r) for r in replies[:3]] == [3, 2, 1]
        assert all(r.call_id == 5 for r in replies)
        assert p.is_final(True, replies[-1].kind)
        # Exhausted: the call is gone.
        await peer.send(p.Next(5))
        assert_reject(await peer.recv(), 5, p.RejectReason.UNKNOWN_CALL)


async def test_generator_send_and_close() -> None:
    async with raw_worker() as (_, info, peer):
        await peer.send(make_call(info.id, 6, routines.accumulate, generator=True))
        assert value_of(await peer.recv()) == 0
        for value, total in ((5, 5), (10, 15)):
            await peer.send(p.Send(6, p.dumps(value)))
            assert value_of(await peer.recv()) == total
        await peer.send(p.Close(6))
        reply = await peer.recv()
        assert isinstance(reply, p.Stop) and reply.call_id == 6


async def test_generator_send_of_garbage_fails_that_call_only() -> None:
    async with raw_worker() as (_, info, peer):
        await peer.send(make_call(info.id, 6, routines.accumulate, generator=True))
        assert value_of(await peer.recv()) == 0
        await peer.send(p.Send(6, (b"\xffgarbage",)))
        reply = await peer.recv()
        assert isinstance(reply, p.Raise) and reply.call_id == 6
        await peer.send(p.Throw(7, (b"\xffgarbage",)))
        assert_reject(await peer.recv(), 7, p.RejectReason.UNKNOWN_CALL)
        await peer.send(make_call(info.id, 8, routines.add, 1, 2))
        assert value_of(await peer.recv()) == 3


async def test_step_while_a_generator_step_runs_is_rejected() -> None:
    async with Observer() as observer, raw_worker() as (_, info, peer):
        await peer.send(make_call(info.id, 8, routines.gen_wait_at, observer.address, "step", generator=True))
        assert value_of(await peer.recv()) == 1
        await peer.send(p.Next(8))
        await observer.wait_for("at step")
        await peer.send(p.Next(8))
        assert_reject(await peer.recv(), 8, p.RejectReason.BAD_STATE, "running")
        observer.open("step")
        assert value_of(await peer.recv()) == 2
        await peer.send(p.Close(8))
        assert isinstance(await peer.recv(), p.Stop)


async def test_exception_with_a_long_message_reaches_the_caller() -> None:
    async with raw_worker() as (_, info, peer):
        await peer.send(make_call(info.id, 1, routines.fail, "x" * 40_000))
        reply = await peer.recv()
        assert isinstance(reply, p.Raise) and reply.call_id == 1
        exc = p.loads_exception(reply.type_name, reply.message, reply.traceback, reply.payload)
        assert isinstance(exc, routines.Oops) and exc.args[0] == "x" * 40_000


async def test_reject_of_a_large_malformed_request_is_decodable() -> None:
    async with raw_worker() as (_, _info, peer):
        await peer.send_frames([envelope(p.VERSION, p.Kind.PING, 5, b"\x00" * 60_000)])
        assert_reject(await peer.recv(), 5, p.RejectReason.MALFORMED, "malformed ping")


async def test_calls_of_a_vanished_caller_are_cancelled() -> None:
    async with Observer() as observer, raw_worker() as (_, info, peer):
        gone = RawPeer(info.endpoint)
        try:
            await gone.send(make_call(info.id, 1, routines.block, observer.address, "orphan"))
            await observer.wait_matching(r"running orphan \d+")
        finally:
            gone.close()
        # Probes notice a vanished caller within the liveness bound; allow twice that.
        await observer.wait_for("cancelled orphan", timeout=2 * DEFAULT_LIVENESS)
        await peer.ping(2)
