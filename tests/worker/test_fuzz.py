"""Bad input never kills a worker. A seeded fuzzer sends ten thousand malformed (or merely
unexpected) requests over ZeroMQ to a real `python -m wool.worker`, while a well-behaved caller
(a `WorkerPool`'s own connection) keeps calling it. The worker must keep answering that caller
correctly, answer every garbage request that names a call with a reply naming the problem,
log the garbage once per rate-limit interval (not once per message), and serve correctly and
stop cleanly afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import msgpack
import pytest
import routines
import zmq
import zmq.asyncio
from helpers import CliWorker, Observer, make_call

import wool
from wool import protocol as p
from wool._transport import context

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]

NAME = "fuzz"
SEED = 0x5EED
FUZZ_MESSAGES = 10_000
BATCH = 100  # messages sent between two results of the well-behaved caller
# Call ids of requests whose reply is checked are drawn at and above CHECKED; the unchecked
# garbage only ever names ids below it.
CHECKED = 2**48
SENTINEL = 2**63
WAIT = 20.0  # bound on every wait for the worker


def envelope(*items: Any) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


class LoggedCliWorker(CliWorker):
    """A `CliWorker` whose stderr (its log) goes to a file, read once it has exited. A file,
    not a pipe: a worker that logged without limit must not block on a full pipe."""

    def __init__(self, log_path: Path, discovery: str, *args: str) -> None:
        super().__init__("--discovery", f"local:{discovery}", *args)
        self.log_path = log_path
        self.discovery = discovery

    async def __aenter__(self) -> LoggedCliWorker:
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.stderr = log
            try:
                await super().__aenter__()
            finally:
                self.stderr = None
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop it as a user would (SIGTERM: it withdraws); only if that fails, kill it and
        prune its registry entry."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                await self.wait(timeout=10)
            except TimeoutError:
                pass
        killed = self.proc.poll() is None
        await super().__aexit__(*exc)
        if killed:
            await wool.LocalDiscovery(self.discovery).withdraw(wool.WorkerInfo(self.id, self.endpoint, self.pid))


class FuzzPeer:
    """A bare DEALER: sends frames as given and records, by call id, every reply it gets.
    Receives only what is ready (NOBLOCK) or after a bounded poll: no receive is ever
    cancelled."""

    def __init__(self, endpoint: str) -> None:
        ctx = zmq.asyncio.Context.shadow(context())  # one zmq context per process
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)  # never make the worker hold replies back
        self.sock.connect(endpoint)
        self.replies: dict[int, list[p.Message]] = defaultdict(list)
        self.count = 0

    def close(self) -> None:
        self.sock.close(linger=0)

    async def send(self, frames: Sequence[p.Frame]) -> None:
        await self.sock.send_multipart(frames)

    async def pump(self) -> None:
        """Record every reply already received."""
        while True:
            try:
                frames = await self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = p.decode(frames)  # whatever a worker sends is a valid message
            self.replies[msg.call_id].append(msg)
            self.count += 1

    async def wait_until(self, done: Callable[[], bool], what: Callable[[], str], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        await self.pump()
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what()}")
            await self.sock.poll(int(remaining * 1000) + 1, zmq.POLLIN)
            await self.pump()

    async def reply_to(self, call_id: int, frames: Sequence[p.Frame], nth: int = 1) -> p.Message:
        """Send `frames` and wait for the `nth` reply ever recorded for `call_id`."""
        await self.send(frames)
        await self.wait_until(lambda: len(self.replies[call_id]) >= nth, lambda: f"reply {nth} to call {call_id}")
        return self.replies[call_id][nth - 1]


@dataclasses.dataclass(frozen=True)
class Expect:
    """The reply a request must get: its type, a reject's reason, words its text contains,
    and (for a return or yield) its value."""

    kind: type[p.Message]
    reason: p.RejectReason | None = None
    words: tuple[str, ...] = ()
    value: Any = None

    def check(self, msg: p.Message) -> None:
        assert isinstance(msg, self.kind), f"expected {self.kind.__name__}, got {msg!r}"
        if isinstance(msg, p.Reject):
            assert msg.reason is self.reason, msg
            text = msg.detail
        elif isinstance(msg, p.Raise):
            assert msg.type_name and msg.message and msg.traceback, msg
            text = f"{msg.type_name}: {msg.message}"
        else:
            text = ""
        for word in self.words:
            assert word in text, f"{word!r} not in {text!r}"
        if isinstance(msg, (p.Return, p.Yield)):
            assert p.loads(msg.payload) == self.value, msg


def malformed(*words: str) -> Expect:
    return Expect(p.Reject, p.RejectReason.MALFORMED, words)


# Argument payloads that fail to unpickle (or to be arguments), and what the reply says.
BAD_ARGUMENTS: list[tuple[tuple[bytes, ...], tuple[str, ...]]] = [
    (
        (b"\x00\x01garbage",),
        ("SerializationError", "could not be unpickled on this worker", "UnpicklingError", "invalid load key"),
    ),
    ((b"\x80\x05garbage",), ("SerializationError", "UnpicklingError")),
    ((b"",), ("SerializationError", "EOFError")),
    ((b"cno_such_module_for_wool\nThing\n.",), ("SerializationError", "import module 'no_such_module_for_wool'", "PYTHONPATH")),
    ((cloudpickle.dumps(((1, 2), {}), protocol=5)[:-3],), ("SerializationError", "UnpicklingError", "truncated")),
    (p.dumps("not an (args, kwargs) pair"), ("TypeError", "not an (args, kwargs) pair")),
    (p.dumps(((1,), {})), ("TypeError", "missing 1 required positional argument")),
]


class Fuzzer:
    """Malformed (or merely unexpected) requests from a seeded generator. Each message comes
    with the call id it names and the reply it must get, when that is known: `expected`
    collects them, per call id, in the order they must arrive."""

    def __init__(self, rng: random.Random, worker_id: str, held: int, held_generator: int, suspended: list[int]) -> None:
        self.rng = rng
        self.worker_id = worker_id
        self.held = held  # a coroutine call still running: its id may not be reused
        self.held_generator = held_generator  # a generator call suspended at a yield
        self.suspended = suspended  # generator calls suspended at a yield, to feed garbage
        self.expected: dict[int, list[Expect]] = defaultdict(list)
        self.categories: dict[str, int] = defaultdict(int)
        self._next_id = CHECKED + 1_000_000
        good = make_call(worker_id, 1, routines.add, 1, 2)
        self.good = good
        self.templates: list[p.Message] = [
            good,
            make_call(worker_id, 2, routines.countdown, 2, generator=True),
            p.Next(3),
            p.Send(4, p.dumps(1)),
            p.Throw(5, p.dumps_exception(ValueError("x"))),
            p.Close(6),
            p.Cancel(7),
            p.Ping(8),
            p.Return(9, p.dumps(1)),
            p.Pong(10, worker_id),
            p.Raise(11, "T", "m", "tb", (b"e",)),
            p.Reject(12, p.RejectReason.MALFORMED, "d"),
            p.Stop(13),
        ]
        # Byte-flipping may leave a message valid: never one that opens a generator, which
        # would stay suspended and hold up the worker's shutdown.
        self.flippable = [m for m in self.templates if not (isinstance(m, p.Call) and m.generator)]

    def fresh_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def expect(self, call_id: int, expect: Expect) -> int:
        self.expected[call_id].append(expect)
        return call_id

    # -- unchecked garbage (ids below CHECKED, replies not predicted) ----------------------

    def call_id(self) -> int:
        return self.rng.choice([0, 1, 2**32 - 1, self.rng.randrange(2**32)])

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        choice = rng.randrange(10 if depth < 2 else 8)
        return [
            lambda: None,
            lambda: rng.random() < 0.5,
            lambda: rng.randrange(-(2**63), 2**64),
            lambda: rng.uniform(-1e9, 1e9),
            lambda: rng.randbytes(rng.randrange(20)).decode("latin-1"),
            lambda: rng.randbytes(rng.randrange(20)),
            lambda: rng.randrange(-3, 30),
            lambda: self.worker_id,
            lambda: [self.value(depth + 1) for _ in range(rng.randrange(4))],
            lambda: {str(i): self.value(depth + 1) for i in range(rng.randrange(3))},
        ][choice]()

    def frames(self, count: int | None = None) -> list[bytes]:
        n = self.rng.randrange(0, 5) if count is None else count
        return [self.rng.randbytes(self.rng.randrange(0, 40)) for _ in range(n)]

    def random_bytes(self) -> list[bytes]:
        return self.frames(self.rng.randrange(1, 6))

    def truncated(self) -> list[bytes]:
        frames = [bytes(f) for f in p.encode(self.rng.choice(self.templates))]
        return [frames[0][: self.rng.randrange(len(frames[0]))], *frames[1 : self.rng.randrange(1, len(frames) + 1)]]

    def flipped(self) -> list[bytes]:
        frames = [bytes(f) for f in p.encode(self.rng.choice(self.flippable))]
        head = bytearray(frames[0])
        head[self.rng.randrange(len(head))] = self.rng.randrange(256)
        return [bytes(head), *frames[1:]]

    def random_envelope(self) -> list[bytes]:
        rng = self.rng
        version = rng.choice([p.VERSION, p.VERSION, 0, 2, 99, self.value()])
        code = rng.choice([int(rng.choice(list(p.Kind))), rng.randrange(-2, 40), self.value()])
        fields = [self.value() for _ in range(rng.randrange(5))]
        return [envelope(version, code, self.call_id(), *fields), *self.frames()]

    def wrong_frame_count(self) -> list[bytes]:
        code = self.rng.choice(list(p.Kind))
        return [envelope(p.VERSION, code, self.call_id(), *[self.value() for _ in range(self.rng.randrange(5))]), *self.frames()]

    def broken_call(self) -> list[bytes]:
        rng = self.rng
        routine = rng.choice([bytes(self.good.routine), rng.randbytes(rng.randrange(1, 40))])
        digest = rng.choice([hashlib.blake2b(routine, digest_size=16).digest(), rng.randbytes(16), b""])
        payload = rng.choice([self.frames(rng.randrange(1, 3)), [b"\x80\x05K\x01."]])
        msg = p.Call(self.call_id(), self.worker_id, digest, "fuzz", rng.random() < 0.5, routine, tuple(payload))
        return [bytes(f) for f in p.encode(msg)]

    def stray_step(self) -> list[bytes]:
        code = self.rng.choice([p.Kind.NEXT, p.Kind.SEND, p.Kind.THROW, p.Kind.CLOSE, p.Kind.RETURN, p.Kind.YIELD])
        return [envelope(p.VERSION, code, self.call_id()), *self.frames(self.rng.randrange(0, 3))]

    def oversize_unreadable(self) -> list[bytes]:
        return [self.rng.randbytes(p.MAX_ENVELOPE + self.rng.randrange(1, 8192)), *self.frames()]

    # -- garbage whose reply is predicted ----------------------------------------------------

    def unknown_version(self) -> list[bytes]:
        others: list[Any] = [0, p.VERSION - 1, p.VERSION + 1, 99, 255, 2**16, 2**63, -1, str(p.VERSION), float(p.VERSION)]
        version = self.rng.choice([*others, None, True, [p.VERSION]])
        code = self.rng.choice([*list(p.Kind), 77])
        call_id = self.expect(self.fresh_id(), malformed("unsupported protocol version"))
        return [envelope(version, int(code), call_id), *self.frames()]

    def unknown_kind(self) -> list[bytes]:
        code = self.rng.choice([0, 10, 15, 24, 99, 127, 128, 255, -1, 2**32, "call", 1.5, None, True, b"\x01"])
        call_id = self.expect(self.fresh_id(), malformed("unknown message kind"))
        return [envelope(p.VERSION, code, call_id, *[self.value() for _ in range(self.rng.randrange(3))]), *self.frames()]

    def oversize_envelope(self) -> list[bytes]:
        size = p.MAX_ENVELOPE + self.rng.randrange(1, 16384)
        call_id = self.expect(self.fresh_id(), malformed("exceeds", str(p.MAX_ENVELOPE)))
        code = int(self.rng.choice(list(p.Kind)))
        return [envelope(p.VERSION, code, call_id, "x" * size), *self.frames()]

    def deep_envelope(self) -> list[bytes]:
        """A value nested 1,000 levels deep or more (arrays or maps) after the call id: msgpack
        builds up to 1,023 levels and refuses deeper ones; either way the call is rejected."""
        depth = self.rng.choice([1_000, 1_023, 1_024, 2_000, 20_000])
        deep = self.rng.choice([b"\x91", b"\x81\xa1k"]) * depth + b"\xc0"
        code = int(self.rng.choice(list(p.Kind)))
        call_id = self.expect(self.fresh_id(), malformed())
        return [b"\x94" + envelope(p.VERSION, code, call_id)[1:] + deep, *self.frames()]

    def many_frames(self) -> list[bytes]:
        count = self.rng.randrange(100, 3000)
        kind = self.rng.choice([p.Kind.PING, p.Kind.NEXT, p.Kind.CLOSE, p.Kind.CANCEL, p.Kind.STOP])
        if kind in (p.Kind.PING, p.Kind.CANCEL):
            problem = f"{kind.name.lower()} carries no payload, got {count} frames"
        else:  # a step or an end: its context frame only
            problem = f"{kind.name.lower()} needs 1 frames after its envelope, got {count}"
        call_id = self.expect(self.fresh_id(), malformed(problem))
        return [envelope(p.VERSION, int(kind), call_id), *([b""] * count)]

    def missing_payload(self) -> list[bytes]:
        kind = self.rng.choice([p.Kind.SEND, p.Kind.THROW, p.Kind.CALL])
        call_id = self.fresh_id()
        if kind is p.Kind.CALL:
            head = envelope(p.VERSION, int(kind), call_id, self.worker_id, self.good.digest, "fuzz", False, [], None, None, None)
            self.expect(call_id, malformed("call needs at least 3 frames after its envelope"))
            return [head, bytes(self.good.routine), b""]
        self.expect(call_id, malformed(f"{kind.name.lower()} needs at least 2 frames after its envelope"))
        return [envelope(p.VERSION, int(kind), call_id), b""]

    def reply_kind(self) -> list[bytes]:
        call_id = self.fresh_id()
        msg = self.rng.choice(
            [
                p.Return(call_id, p.dumps(1)),
                p.Yield(call_id, p.dumps(1)),
                p.Stop(call_id),
                p.Pong(call_id, "x"),
                p.Raise(call_id, "T", "m", "tb", (b"e",)),
                p.Reject(call_id, p.RejectReason.BAD_STATE, "d"),
            ]
        )
        self.expect(call_id, malformed(f"a worker does not take {msg.kind.name.lower()}"))
        return [bytes(f) for f in p.encode(msg)]

    def step_for_unknown_call(self) -> list[bytes]:
        call_id = self.fresh_id()
        msg = self.rng.choice(
            [
                p.Next(call_id),
                p.Close(call_id),
                p.Cancel(call_id),
                p.Send(call_id, tuple(self.frames(self.rng.randrange(1, 3)))),
                p.Throw(call_id, tuple(self.frames(self.rng.randrange(1, 3)))),
            ]
        )
        self.expect(call_id, Expect(p.Reject, p.RejectReason.UNKNOWN_CALL, (f"no call {call_id} is open",)))
        return [bytes(f) for f in p.encode(msg)]

    def duplicate_call_id(self) -> list[bytes]:
        call_id = self.rng.choice([self.held, self.held_generator])
        fn = self.rng.choice([routines.add, routines.echo])
        self.expect(call_id, Expect(p.Reject, p.RejectReason.BAD_STATE, (f"call id {call_id} is already open",)))
        return [bytes(f) for f in p.encode(make_call(self.worker_id, call_id, fn, 1, 2))]

    def step_of_running_coroutine(self) -> list[bytes]:
        self.expect(self.held, Expect(p.Reject, p.RejectReason.BAD_STATE, ("takes no steps",)))
        return [bytes(f) for f in p.encode(p.Next(self.held))]

    def unpicklable_arguments(self) -> list[bytes]:
        payload, words = self.rng.choice(BAD_ARGUMENTS)
        generator = self.rng.random() < 0.3
        if generator:  # (1,) are valid arguments of countdown
            payload, words = self.rng.choice(BAD_ARGUMENTS[:-1])
        fn = routines.countdown if generator else routines.add
        good = make_call(self.worker_id, 0, fn, 1, 2, generator=generator)
        call_id = self.expect(self.fresh_id(), Expect(p.Raise, words=words))
        msg = dataclasses.replace(good, call_id=call_id, payload=payload)
        return [bytes(f) for f in p.encode(msg)]

    def unpicklable_step(self) -> list[bytes]:
        """Garbage sent into a suspended generator fails that generator's step."""
        if not self.suspended:
            return self.step_for_unknown_call()
        call_id = self.suspended.pop()
        payload, words = self.rng.choice(BAD_ARGUMENTS[:5])
        msg = self.rng.choice([p.Send(call_id, payload), p.Throw(call_id, payload)])
        self.expect(call_id, Expect(p.Raise, words=words))
        return [bytes(f) for f in p.encode(msg)]

    def huge_argument_frame_count(self) -> list[bytes]:
        """A valid call with thousands of unused payload frames still runs."""
        a, b = self.rng.randrange(1000), self.rng.randrange(1000)
        good = make_call(self.worker_id, 0, routines.add, a, b)
        call_id = self.expect(self.fresh_id(), Expect(p.Return, value=a + b))
        msg = dataclasses.replace(good, call_id=call_id, payload=(*good.payload, *([b"x"] * self.rng.randrange(100, 2000))))
        return [bytes(f) for f in p.encode(msg)]

    def message(self) -> list[bytes]:
        makers: list[tuple[Callable[[], list[bytes]], int]] = [
            (self.random_bytes, 10),
            (self.truncated, 8),
            (self.flipped, 8),
            (self.random_envelope, 8),
            (self.wrong_frame_count, 6),
            (self.broken_call, 6),
            (self.stray_step, 5),
            (self.oversize_unreadable, 1),
            (self.unknown_version, 8),
            (self.unknown_kind, 8),
            (self.oversize_envelope, 1),
            (self.many_frames, 1),
            (self.deep_envelope, 2),
            (self.missing_payload, 4),
            (self.reply_kind, 5),
            (self.step_for_unknown_call, 8),
            (self.duplicate_call_id, 4),
            (self.step_of_running_coroutine, 2),
            (self.unpicklable_arguments, 5),
            (self.unpicklable_step, 1),
            (self.huge_argument_frame_count, 1),
        ]
        (make,) = self.rng.choices([m for m, _ in makers], [w for _, w in makers])
        self.categories[make.__name__] += 1
        return make()

    def extremes(self) -> list[list[bytes]]:
        """A few messages far past every limit, sent once each."""
        big = self.expect(self.fresh_id(), malformed("exceeds"))
        frames_100k = self.expect(self.fresh_id(), malformed("ping carries no payload, got 100000 frames"))
        huge_frame = self.expect(self.fresh_id(), Expect(p.Reject, p.RejectReason.UNKNOWN_CALL))
        deep_100k = self.expect(self.fresh_id(), malformed("exceeds"))  # 100,000 levels do not fit an envelope
        return [
            [b"\x94" + envelope(p.VERSION, int(p.Kind.PING), deep_100k)[1:] + b"\x91" * 100_000 + b"\xc0"],
            [b"\x91" * 1_023 + b"\xc0"],  # as deep as msgpack builds, no call id: logged and dropped
            [envelope(p.VERSION, int(p.Kind.PING), big, "x" * 2**20)],
            [self.rng.randbytes(2**20)],
            [envelope(p.VERSION, int(p.Kind.PING), frames_100k), *([b""] * 100_000)],
            [envelope(p.VERSION, int(p.Kind.SEND), huge_frame), b"", b"\x00" * 2**24],
        ]


class WellBehavedCaller:
    """Calls `routines.add` through the pool, over and over, checking every result; the
    fuzzer waits on its progress, so garbage and good calls interleave (no sleeps)."""

    def __init__(self) -> None:
        self.results = 0
        self.error: BaseException | None = None
        self._progress = asyncio.Condition()
        self._stop = False

    async def run(self) -> None:
        i = 0
        try:
            while not self._stop:
                i += 1
                async with asyncio.timeout(WAIT):
                    result = await routines.add(i, 1000)
                assert result == i + 1000, f"call {i} returned {result!r}"
                async with self._progress:
                    self.results += 1
                    self._progress.notify_all()
        except BaseException as e:
            async with self._progress:
                self.error = e
                self._progress.notify_all()
            raise

    async def wait_beyond(self, results: int) -> None:
        """Wait until more than `results` calls have succeeded; raise what the caller met."""
        async with asyncio.timeout(WAIT), self._progress:
            await self._progress.wait_for(lambda: self.results > results or self.error is not None)
        if self.error is not None:
            raise AssertionError(f"the well-behaved caller failed after {self.results} calls") from self.error

    def stop(self) -> None:
        self._stop = True


async def test_worker_survives_malformed_messages(tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    async with Observer() as observer, LoggedCliWorker(log_path, NAME, "--grace", "2") as worker:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME)) as pool:
            await pool.wait_for_workers(lambda ws: worker.pid in {w.pid for w in ws}, timeout=WAIT)
            peer = FuzzPeer(worker.endpoint)
            try:
                # Calls that stay open while the fuzzer reuses their ids: a coroutine held at
                # a gate, and generators suspended at their first yield.
                held, held_generator = CHECKED, CHECKED + 1
                suspended = list(range(CHECKED + 2, CHECKED + 66))
                fuzzer = Fuzzer(random.Random(SEED), worker.id, held, held_generator, suspended[:])
                await peer.send(p.encode(make_call(worker.id, held, routines.wait_at, observer.address, "held")))
                await observer.wait_for("at held")
                for call_id in (held_generator, *suspended):
                    fuzzer.expect(call_id, Expect(p.Yield, value=0))
                    await peer.send(p.encode(make_call(worker.id, call_id, routines.accumulate, generator=True)))
                await peer.wait_until(
                    lambda: all(peer.replies[i] for i in (held_generator, *suspended)), lambda: "the first yields"
                )

                caller = WellBehavedCaller()
                calling = asyncio.create_task(caller.run())
                started = time.monotonic()
                try:
                    sent = 0
                    for frames in fuzzer.extremes():
                        await peer.send(frames)
                        sent += 1
                    while sent < FUZZ_MESSAGES:
                        for _ in range(BATCH):
                            await peer.send(fuzzer.message())
                            sent += 1
                        await peer.pump()
                        # The good caller completes a call between any two batches of garbage.
                        await caller.wait_beyond(caller.results)
                    # The ROUTER reads one caller's messages in order: once this pong is back,
                    # every message sent before the ping has been handled.
                    pong = await peer.reply_to(SENTINEL, p.encode(p.Ping(SENTINEL)))
                    assert isinstance(pong, p.Pong) and pong.worker_id == worker.id
                    fuzzing = time.monotonic() - started
                finally:
                    caller.stop()
                    await asyncio.wait_for(calling, WAIT)
                assert caller.results >= FUZZ_MESSAGES // BATCH

                # The calls held open through the fuzz still work: the generator steps, the
                # coroutine returns, and only then do they end.
                fuzzer.expect(held_generator, Expect(p.Yield, value=5))
                step = p.encode(p.Send(held_generator, p.dumps(5)))
                await peer.reply_to(held_generator, step, len(fuzzer.expected[held_generator]))
                fuzzer.expect(held_generator, Expect(p.Stop))
                await peer.send(p.encode(p.Close(held_generator)))
                fuzzer.expect(held, Expect(p.Return, value="held"))
                observer.open("held")
                for call_id in fuzzer.suspended:  # those the fuzzer did not feed garbage
                    fuzzer.expect(call_id, Expect(p.Stop))
                    await peer.send(p.encode(p.Close(call_id)))

                # Every request that named a call got exactly the replies predicted for it.
                expected = fuzzer.expected

                def missing() -> str:
                    late = {i: (e, peer.replies[i]) for i, e in expected.items() if len(peer.replies[i]) < len(e)}
                    return f"{len(late)} calls' replies, such as {list(late.items())[:3]}"

                await peer.wait_until(lambda: all(len(peer.replies[i]) >= len(e) for i, e in expected.items()), missing)
                for call_id, expects in expected.items():
                    replies = peer.replies[call_id]
                    assert len(replies) == len(expects), (call_id, replies, expects)
                    for expect, reply in zip(expects, replies, strict=False):
                        expect.check(reply)
                # Unpredicted garbage got only replies a worker may send, and no reply named a
                # call id that no request named, except a malformed envelope's reject: the
                # codec salvages a call id read before the bad part, and random bytes can hold
                # one in the checked range.
                unchecked = [m for i, ms in peer.replies.items() if i < CHECKED for m in ms]
                assert {type(m) for m in unchecked} <= {p.Reject, p.Raise, p.Pong, p.Return, p.Yield, p.Stop}
                named = {i for i, ms in peer.replies.items() if ms and CHECKED <= i < SENTINEL}
                salvaged = {
                    i
                    for i in named - set(expected)
                    if all(isinstance(m, p.Reject) and m.reason is p.RejectReason.MALFORMED for m in peer.replies[i])
                }
                assert named - salvaged == set(expected), named ^ set(expected)
                reasons = {m.reason for m in unchecked if isinstance(m, p.Reject)}
                assert {p.RejectReason.MALFORMED, p.RejectReason.UNKNOWN_CALL} <= reasons

                # And the worker still serves both callers correctly.
                reply = await peer.reply_to(SENTINEL + 1, p.encode(make_call(worker.id, SENTINEL + 1, routines.add, 2, 3)))
                Expect(p.Return, value=5).check(reply)
                assert await asyncio.wait_for(routines.add(2, 3), WAIT) == 5
                assert worker.proc is not None and worker.proc.poll() is None
            finally:
                peer.close()
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0

    total = sent
    checked = sum(len(e) for e in fuzzer.expected.values())
    print(
        f"\n{total} malformed messages in {fuzzing:.2f} s ({checked} replies predicted), "
        f"{caller.results} good calls meanwhile; categories: {dict(fuzzer.categories)}"
    )
    # Logged, but rate-limited: a handful of lines for ten thousand bad messages.
    log = log_path.read_text()
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert any("dropped a malformed request" in line and "suppressed" in line for line in warnings), log
    assert len(warnings) <= 5, f"{len(warnings)} warnings, such as {warnings[:5]}"
    assert "Traceback" not in log and " ERROR " not in log, log
