"""Garbage replies never break a caller. A fake worker (a raw ROUTER published in a discovery
namespace, so a `WorkerPool` connects to it as to any worker) answers calls with garbage:
random bytes, truncated or oversize envelopes, replies of the wrong kind, payloads that fail
to unpickle, replies for calls never made. A garbage reply that names a pending call fails
that call with a wool error saying what was wrong; one that names no call changes nothing;
and well-formed replies that follow still resolve their calls correctly."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgpack
import pytest
import routines
import zmq
import zmq.asyncio

import wool
from wool import protocol as p
from wool._transport import context

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

NAME = "garbage"
WAIT = 10.0  # bound on every wait
NEVER_SENT = 2**62  # call ids at and above this are never used by a caller


def envelope(*items: Any) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


def frames_of(msg: p.Message) -> list[bytes]:
    return [bytes(f) for f in p.encode(msg)]


class FakeWorker:
    """A ROUTER bound on 127.0.0.1 and published in discovery namespace `name` as a worker.
    `request()` hands the test the next request (pings are answered on the way, as a worker
    would); `send()` answers with any frames at all. Receives are a bounded poll then a
    non-blocking read: no socket operation is ever cancelled."""

    def __init__(self, name: str) -> None:
        self.discovery = wool.LocalDiscovery(name)
        self.caller = b""  # the routing id of the caller that sent the last request
        self.cancels: list[int] = []

    async def __aenter__(self) -> FakeWorker:
        ctx = zmq.asyncio.Context.shadow(context())  # one zmq context per process
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        try:
            self.sock.bind("tcp://127.0.0.1:0")
            endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
            self.info = wool.WorkerInfo(f"fake-{uuid.uuid4().hex[:12]}", endpoint, os.getpid())
            await self.discovery.publish(self.info)
        except BaseException:
            self.sock.close(linger=0)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.discovery.withdraw(self.info)
        finally:
            self.sock.close(linger=0)

    async def request(self, timeout: float = WAIT) -> p.Request:
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames = await self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the fake worker received no request") from None
                await self.sock.poll(int(remaining * 1000) + 1, zmq.POLLIN)
                continue
            self.caller = frames[0]
            msg = p.decode(frames[1:])  # whatever a caller sends is a valid message
            if isinstance(msg, p.Ping):
                await self.send(frames_of(p.Pong(msg.call_id, self.info.id)))
                continue
            assert isinstance(msg, (p.Call, p.Next, p.Send, p.Throw, p.Close, p.Cancel)), msg
            return msg

    async def call(self, timeout: float = WAIT) -> p.Call:
        """The next call; cancels before it (of calls that already ended) are answered as a
        worker would and recorded in `cancels`."""
        while True:
            msg = await self.request(timeout)
            if not isinstance(msg, p.Cancel):
                break
            self.cancels.append(msg.call_id)
            await self.send(frames_of(p.Reject(msg.call_id, p.RejectReason.UNKNOWN_CALL, "no such call")))
        assert isinstance(msg, p.Call), f"expected a call, got {msg!r}"
        assert msg.worker_id == self.info.id
        return msg

    async def send(self, frames: list[bytes]) -> None:
        await self.sock.send_multipart([self.caller, *frames])

    async def answer(self, call: p.Call) -> None:
        """The well-formed reply to a call of `routines.echo`: its argument."""
        (value,), _ = p.loads(call.payload)
        await self.send(frames_of(p.Return(call.call_id, p.dumps(value))))


@contextlib.asynccontextmanager
async def pool_over_fake() -> AsyncIterator[FakeWorker]:
    """A pool whose only worker is a fake one, connected."""
    async with FakeWorker(NAME) as fake, wool.WorkerPool(discovery=wool.LocalDiscovery(NAME)) as pool:
        await pool.wait_for_workers(lambda ws: [w.id for w in ws] == [fake.info.id], timeout=WAIT)
        yield fake


@contextlib.contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """Collects whatever reaches the event loop's exception handler."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)


async def outcome(task: asyncio.Task[Any], timeout: float = WAIT) -> Any:
    """The task's result or exception, waiting at most `timeout` without cancelling it."""
    done, _ = await asyncio.wait({task}, timeout=timeout)
    assert done, "the call did not end"
    return task.exception() or task.result()


async def echo_round_trip(fake: FakeWorker, value: Any) -> None:
    """One call answered correctly: the connection is still sound."""
    task = asyncio.create_task(routines.echo(value))
    await fake.answer(await fake.call())
    assert await outcome(task) == value


# -- garbage that names the call ------------------------------------------------------------


NAMING_THE_CALL: list[Any] = [
    pytest.param(
        lambda i: frames_of(p.Yield(i, p.dumps(1))), wool.DispatchError, "answered call with yield", id="yield-for-a-coroutine"
    ),
    pytest.param(lambda i: frames_of(p.Stop(i)), wool.DispatchError, "answered call with stop", id="stop-for-a-coroutine"),
    pytest.param(lambda i: frames_of(p.Pong(i, "someone")), wool.DispatchError, "answered call with pong", id="pong-for-a-call"),
    pytest.param(
        lambda i: frames_of(p.Return(i, (b"\x00\x01garbage",))),
        wool.SerializationError,
        "could not be unpickled: UnpicklingError",
        id="return-unpicklable",
    ),
    pytest.param(
        lambda i: frames_of(p.Return(i, (b"cno_such_module_for_wool\nThing\n.",))),
        wool.SerializationError,
        "No module named 'no_such_module_for_wool'",
        id="return-of-an-unknown-class",
    ),
    pytest.param(
        lambda i: frames_of(p.Return(i, (b"",))), wool.SerializationError, "could not be unpickled", id="return-empty-pickle"
    ),
    pytest.param(
        lambda i: frames_of(p.Raise(i, "mod.Boom", "it broke", "Traceback: ...", (b"\x00garbage",))),
        wool.RemoteError,
        "mod.Boom: it broke",
        id="raise-unpicklable",
    ),
    pytest.param(
        lambda i: frames_of(p.Reject(i, p.RejectReason.MALFORMED, "no idea")),
        wool.DispatchError,
        "rejected .* no idea",
        id="reject",
    ),
    pytest.param(
        lambda i: [envelope(p.VERSION, int(p.Kind.RETURN), i, "x" * (p.MAX_ENVELOPE + 1)), *p.dumps(1)],
        wool.DispatchError,
        "malformed reply: envelope of 65[0-9]+ bytes exceeds 65536",
        id="oversize-envelope",
    ),
    pytest.param(
        lambda i: [envelope(p.VERSION + 1, int(p.Kind.RETURN), i), *p.dumps(1)],
        wool.DispatchError,
        f"unsupported protocol version {p.VERSION + 1}",
        id="unknown-version",
    ),
    pytest.param(
        lambda i: [envelope(p.VERSION, 99, i), *p.dumps(1)],
        wool.DispatchError,
        "unknown message kind 99",
        id="unknown-kind",
    ),
    pytest.param(
        lambda i: [envelope(p.VERSION, int(p.Kind.RETURN), i)],
        wool.DispatchError,
        "return envelope lacks its frames",
        id="return-without-payload",
    ),
    pytest.param(
        lambda i: [envelope(p.VERSION, int(p.Kind.STOP), i), *([b""] * 10_000)],
        wool.DispatchError,
        "stop needs 1 frames after its envelope, got 10000",
        id="ten-thousand-frames",
    ),
    pytest.param(
        lambda i: [envelope(p.VERSION, int(p.Kind.RAISE), i, 1, None), b"x"],
        wool.DispatchError,
        "malformed raise envelope",
        id="raise-with-bad-fields",
    ),
    pytest.param(
        lambda i: [envelope(p.VERSION, int(p.Kind.REJECT), i, 99, "why"), b"x"],
        wool.DispatchError,
        "malformed reject envelope",
        id="reject-with-unknown-reason",
    ),
]


@pytest.mark.parametrize(("garbage", "error", "words"), NAMING_THE_CALL)
async def test_garbage_naming_a_call_fails_that_call_with_a_wool_error(
    garbage: Callable[[int], list[bytes]], error: type[wool.WoolError], words: str
) -> None:
    async with pool_over_fake() as fake:
        with loop_errors() as errors:
            task = asyncio.create_task(routines.echo("lost"))
            call = await fake.call()
            await fake.send(garbage(call.call_id))
            exc = await outcome(task)
            assert isinstance(exc, error), exc
            assert re.search(words, str(exc)), str(exc)
            # The real answer, arriving late, is ignored; the next call is served correctly.
            await fake.answer(call)
            await echo_round_trip(fake, "next")
        assert errors == []


# -- garbage that names no pending call ------------------------------------------------------


def random_frames(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 5))]


NAMING_NO_CALL: list[Any] = [
    pytest.param(lambda i: random_frames(1), id="random-bytes"),
    pytest.param(lambda i: random_frames(2), id="more-random-bytes"),
    pytest.param(lambda i: [b""], id="empty-envelope"),
    pytest.param(lambda i: [frames_of(p.Return(i, p.dumps(1)))[0][:2], *p.dumps(1)], id="truncated-envelope"),
    pytest.param(lambda i: [msgpack.packb({"call_id": i})], id="not-an-array"),
    pytest.param(lambda i: [envelope(p.VERSION, int(p.Kind.RETURN))], id="short-array"),
    pytest.param(lambda i: [envelope(p.VERSION, int(p.Kind.RETURN), -i), *p.dumps(1)], id="negative-call-id"),
    pytest.param(lambda i: [envelope(p.VERSION, int(p.Kind.RETURN), str(i)), *p.dumps(1)], id="call-id-as-text"),
    pytest.param(lambda i: [envelope(p.VERSION, int(p.Kind.RETURN), float(i)), *p.dumps(1)], id="call-id-as-float"),
    pytest.param(lambda i: [random.Random(3).randbytes(p.MAX_ENVELOPE + 100)], id="oversize-random"),
    pytest.param(
        # Too large to decode, and the call id comes too late in it to be read.
        lambda i: [envelope("v" * 40, int(p.Kind.RETURN), i, "x" * p.MAX_ENVELOPE), *p.dumps(1)],
        id="oversize-id-unreadable",
    ),
    pytest.param(lambda i: frames_of(p.Return(NEVER_SENT, p.dumps("not yours"))), id="return-for-a-call-never-made"),
    pytest.param(lambda i: frames_of(p.Raise(NEVER_SENT + 1, "T", "m", "tb", (b"x",))), id="raise-for-a-call-never-made"),
    pytest.param(lambda i: frames_of(p.Return(i + 1, p.dumps("not yet"))), id="return-for-the-next-call-id"),
    pytest.param(lambda i: [envelope(p.VERSION, 99, NEVER_SENT)], id="unknown-kind-for-a-call-never-made"),
    pytest.param(lambda i: frames_of(p.Pong(0, "probe")), id="probe"),
]


@pytest.mark.parametrize("garbage", NAMING_NO_CALL)
async def test_garbage_naming_no_pending_call_changes_nothing(garbage: Callable[[int], list[bytes]]) -> None:
    """The call stays pending through the garbage, and the well-formed reply that follows
    (on the same connection, so after the garbage was handled) resolves it."""
    async with pool_over_fake() as fake:
        with loop_errors() as errors:
            task = asyncio.create_task(routines.echo("kept"))
            call = await fake.call()
            await fake.send(garbage(call.call_id))
            await fake.answer(call)
            assert await outcome(task) == "kept"
            await echo_round_trip(fake, "next")
        assert errors == []


async def test_replies_after_the_first_are_ignored() -> None:
    """Duplicate, contradicting and garbled replies for a call that already ended never reach
    another call."""
    async with pool_over_fake() as fake:
        task = asyncio.create_task(routines.echo("first"))
        call = await fake.call()
        await fake.answer(call)
        assert await outcome(task) == "first"
        task = asyncio.create_task(routines.echo("second"))
        second = await fake.call()
        for late in (
            frames_of(p.Return(call.call_id, p.dumps("duplicate"))),
            frames_of(p.Yield(call.call_id, p.dumps("wrong kind"))),
            frames_of(p.Return(call.call_id, (b"\x00garbage",))),
            [envelope(p.VERSION + 1, int(p.Kind.RETURN), call.call_id)],
        ):
            await fake.send(late)
        await fake.answer(second)
        assert await outcome(task) == "second"


async def test_garbage_for_a_generator_fails_its_step() -> None:
    async with pool_over_fake() as fake:
        stream = routines.countdown(3)
        task = asyncio.create_task(anext(stream))
        call = await fake.call()
        assert call.generator
        await fake.send(frames_of(p.Yield(call.call_id, p.dumps(3))))
        assert await outcome(task) == 3
        task = asyncio.create_task(anext(stream))
        assert await fake.request() == p.Next(call.call_id)
        await fake.send([b"\xc1 no call id"])  # changes nothing
        await fake.send(frames_of(p.Return(call.call_id, p.dumps(2))))  # illegal for a generator step
        exc = await outcome(task)
        assert isinstance(exc, wool.DispatchError) and "answered next with return" in str(exc), exc
        await echo_round_trip(fake, "next")


async def test_unpicklable_yield_fails_the_step_and_cancels_the_generator() -> None:
    async with pool_over_fake() as fake:
        stream = routines.countdown(3)
        task = asyncio.create_task(anext(stream))
        call = await fake.call()
        await fake.send(frames_of(p.Yield(call.call_id, (b"\x00garbage",))))
        exc = await outcome(task)
        assert isinstance(exc, wool.SerializationError) and "could not be unpickled" in str(exc), exc
        # The caller gave up on the generator: the worker is told to drop it.
        assert await fake.request() == p.Cancel(call.call_id)
        await fake.send(frames_of(p.Reject(call.call_id, p.RejectReason.UNKNOWN_CALL, "gone")))
        await echo_round_trip(fake, "next")


# -- seeded fuzz -----------------------------------------------------------------------------

SEED = 0xBADC0DE
WAVES = 100
CALLS_PER_WAVE = 20


@dataclasses.dataclass(frozen=True)
class Ends:
    """How a call must end: with its own value (`error` None), or with `error` whose text
    matches `words`."""

    error: type[wool.WoolError] | None = None
    words: str = ""

    def check(self, result: Any, value: Any) -> None:
        if self.error is None:
            assert result == value, (result, value)
        else:
            assert isinstance(result, self.error), (result, self)
            assert re.search(self.words, str(result)), (str(result), self.words)


class GarbageReplies:
    """Seeded garbage for one call: each piece comes with how it must end the call if it is
    the first piece to name it (None: it names no pending call and changes nothing)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.counts: dict[str, int] = {}

    def _unnamed_or_target(self, frames: list[bytes], target: int) -> Ends | None | bool:
        """What `frames` do to call `target`, judged by decoding them; False if they could
        name another pending call (such pieces are not used)."""
        try:
            p.decode(frames)
        except p.ProtocolError as e:
            if e.call_id is None:
                return None
            if e.call_id == target:
                return Ends(wool.DispatchError, "malformed reply")
        return False

    def piece(self, target: int) -> tuple[list[bytes], Ends | None]:
        rng = self.rng
        while True:
            kind = rng.choice(
                [
                    "random",
                    "truncated",
                    "flipped",
                    "oversize-random",
                    "never-sent",
                    "probe",
                    "wrong-kind",
                    "unpicklable-return",
                    "unpicklable-raise",
                    "reject",
                    "oversize-named",
                    "unknown-version",
                    "unknown-kind",
                    "wrong-frames",
                ]
            )
            good = frames_of(p.Return(target, p.dumps("good")))
            effect: Ends | None | bool
            if kind == "random":
                frames = [rng.randbytes(rng.randrange(0, 48)) for _ in range(rng.randrange(1, 4))]
                effect = self._unnamed_or_target(frames, target)
            elif kind == "truncated":
                frames = [good[0][: rng.randrange(len(good[0]))], *good[1:]]
                effect = self._unnamed_or_target(frames, target)
            elif kind == "flipped":
                head = bytearray(good[0])
                head[rng.randrange(len(head))] = rng.randrange(256)
                frames = [bytes(head), *good[1:]]
                effect = self._unnamed_or_target(frames, target)
            elif kind == "oversize-random":
                frames = [rng.randbytes(p.MAX_ENVELOPE + rng.randrange(1, 4096))]
                effect = self._unnamed_or_target(frames, target)
            elif kind == "never-sent":
                msg = rng.choice(
                    [p.Return(NEVER_SENT + rng.randrange(2**32), p.dumps(1)), p.Stop(NEVER_SENT), p.Yield(NEVER_SENT, (b"x",))]
                )
                frames, effect = frames_of(msg), None
            elif kind == "probe":
                frames, effect = frames_of(p.Pong(0, "probe")), None
            elif kind == "wrong-kind":
                msg = rng.choice([p.Yield(target, p.dumps(1)), p.Stop(target), p.Pong(target, "x")])
                frames, effect = frames_of(msg), Ends(wool.DispatchError, f"answered call with {msg.kind.name.lower()}")
            elif kind == "unpicklable-return":
                payload = rng.choice(
                    [(b"\x00garbage",), (b"",), (p.dumps("good")[0][:-2],), (b"cno_such_module_for_wool\nX\n.",)]
                )
                frames, effect = frames_of(p.Return(target, payload)), Ends(wool.SerializationError, "could not be unpickled")
            elif kind == "unpicklable-raise":
                frames = frames_of(p.Raise(target, "mod.Boom", "it broke", "tb", (rng.randbytes(rng.randrange(1, 20)),)))
                effect = Ends(wool.RemoteError, "mod.Boom: it broke")
            elif kind == "reject":
                reason = rng.choice([p.RejectReason.MALFORMED, p.RejectReason.UNKNOWN_CALL, p.RejectReason.BAD_STATE])
                frames, effect = frames_of(p.Reject(target, reason, "nope")), Ends(wool.DispatchError, "rejected")
            elif kind == "oversize-named":
                frames = [
                    envelope(p.VERSION, int(p.Kind.RETURN), target, "x" * (p.MAX_ENVELOPE + rng.randrange(1, 4096))),
                    *good[1:],
                ]
                effect = Ends(wool.DispatchError, "exceeds")
            elif kind == "unknown-version":
                version = rng.choice([0, p.VERSION + 1, 255, -1, "1", None])
                frames = [envelope(version, int(p.Kind.RETURN), target), *good[1:]]
                effect = Ends(wool.DispatchError, "unsupported protocol version")
            elif kind == "unknown-kind":
                frames = [envelope(p.VERSION, rng.choice([0, 10, 15, 24, 99, 255, "return"]), target), *good[1:]]
                effect = Ends(wool.DispatchError, "unknown message kind")
            else:
                code = rng.choice([p.Kind.RETURN, p.Kind.STOP, p.Kind.RAISE, p.Kind.YIELD])
                extra = [b"x"] * rng.randrange(1, 2000) if code is p.Kind.STOP else []
                frames = [envelope(p.VERSION, int(code), target), *extra]
                effect = Ends(wool.DispatchError, "malformed reply")
            if effect is not False:
                self.counts[kind] = self.counts.get(kind, 0) + 1
                assert effect is None or isinstance(effect, Ends)
                return frames, effect

    def plan(self, call: p.Call) -> tuple[list[list[bytes]], Ends]:
        """Garbage, then the good reply, then maybe late junk; and how the call must end."""
        (value,), _ = p.loads(call.payload)
        pieces: list[list[bytes]] = []
        ends: Ends | None = None
        for _ in range(self.rng.choice([0, 1, 2, 3, 4, 5])):
            frames, effect = self.piece(call.call_id)
            pieces.append(frames)
            ends = ends or effect
        pieces.append(frames_of(p.Return(call.call_id, p.dumps(value))))
        for _ in range(self.rng.choice([0, 0, 1])):
            pieces.append(self.piece(call.call_id)[0])  # the call already ended: ignored
        return pieces, ends or Ends()


async def test_seeded_garbage_interleaved_with_good_replies(caplog: pytest.LogCaptureFixture) -> None:
    """Waves of concurrent calls, answered with garbage interleaved across calls, each call's
    good reply last: every call ends exactly once, with its value or the predicted wool
    error, and nothing escapes to the event loop."""
    rng = random.Random(SEED)
    garbage = GarbageReplies(rng)
    sent = 0
    started = time.monotonic()
    caplog.set_level(logging.WARNING, logger="wool")
    async with pool_over_fake() as fake:
        with loop_errors() as errors:
            for wave in range(WAVES):
                tasks = {(wave, k): asyncio.create_task(routines.echo((wave, k))) for k in range(CALLS_PER_WAVE)}
                calls = [await fake.call() for _ in tasks]
                plans = {}
                for call in calls:
                    (value,), _ = p.loads(call.payload)
                    plans[value] = garbage.plan(call)
                # Interleave the calls' pieces, each call's in order.
                queues = [list(pieces) for pieces, _ in plans.values()]
                while queues:
                    queue = rng.choice(queues)
                    await fake.send(queue.pop(0))
                    sent += 1
                    if not queue:
                        queues.remove(queue)
                done, pending = await asyncio.wait(tasks.values(), timeout=WAIT)
                assert not pending, f"wave {wave}: {len(pending)} calls did not end"
                for value, task in tasks.items():
                    plans[value][1].check(task.exception() or task.result(), value)
            await echo_round_trip(fake, "after")
        assert errors == []
    elapsed = time.monotonic() - started
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    ][:5]
    garbage_count = sent - WAVES * CALLS_PER_WAVE
    print(f"\n{garbage_count} garbage replies among {WAVES * CALLS_PER_WAVE} calls in {elapsed:.2f} s; {garbage.counts}")
    assert garbage_count >= 3000


# -- bugs ------------------------------------------------------------------------------------


async def test_malformed_replies_are_logged_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="wool")
    async with pool_over_fake() as fake:
        task = asyncio.create_task(routines.echo("kept"))
        call = await fake.call()
        for seed in range(1000):
            await fake.send([random.Random(seed).randbytes(20) + b"\xc1"])
        await fake.answer(call)
        assert await outcome(task) == "kept"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("wool")]
    assert 1 <= len(warnings) <= 5, f"{len(warnings)} warnings for 1000 malformed replies"


@pytest.mark.parametrize("answer", [pytest.param([b"\xc1 garbage"], id="garbage"), pytest.param(None, id="none")])
async def test_deadline_holds_when_the_cancel_is_answered_with_garbage(answer: list[bytes] | None) -> None:
    """`asyncio.wait_for` on a call cancels it remotely and waits for the worker to confirm;
    a worker that answers the call and then the cancel with garbage (or not at all) must not
    hold the caller past the pool's liveness bound."""
    liveness = 1.0
    task: asyncio.Task[Any] | None = None
    try:
        async with FakeWorker(NAME) as fake, wool.WorkerPool(discovery=wool.LocalDiscovery(NAME), liveness=liveness) as pool:
            await pool.wait_for_workers(timeout=WAIT)
            task = asyncio.create_task(asyncio.wait_for(routines.echo("late"), 0.2))
            call = await fake.call()
            await fake.send([b"\xc1 garbage"])
            assert await fake.request() == p.Cancel(call.call_id)
            if answer is not None:
                await fake.send(answer)
            done, _ = await asyncio.wait({task}, timeout=0.2 + 3 * liveness)
            assert done, "the caller is still waiting after its deadline and the liveness bound"
            assert isinstance(task.exception(), TimeoutError)
    finally:
        if task is not None:  # closing the pool ended it in any case
            await outcome(task)


async def test_bad_reply_to_a_generator_step_cancels_the_generator() -> None:
    """After a step fails with `DispatchError` the caller's generator is finished, so the
    worker must be told to drop its side (else it stays suspended, holding one of the
    worker's call slots, until the caller disconnects)."""
    async with pool_over_fake() as fake:
        stream = routines.countdown(3)
        task = asyncio.create_task(anext(stream))
        call = await fake.call()
        await fake.send(frames_of(p.Yield(call.call_id, p.dumps(3))))
        assert await outcome(task) == 3
        task = asyncio.create_task(anext(stream))
        assert await fake.request() == p.Next(call.call_id)
        await fake.send(frames_of(p.Return(call.call_id, p.dumps(2))))
        assert isinstance(await outcome(task), wool.DispatchError)
        follow = asyncio.create_task(routines.echo("next"))
        assert await fake.request() == p.Cancel(call.call_id)  # before the next call
        await fake.answer(await fake.call())
        assert await outcome(follow) == "next"
