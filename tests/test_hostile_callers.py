"""Authenticated but hostile callers, speaking raw ZeroMQ frames to a real worker while a
well-behaved pool keeps calling it. Such a caller can run code on the worker anyway; what it
must not do is break the worker for the others:

- envelopes nested 1,000 to 100,000 levels deep each get a `reject` naming their call (when
  its id is readable), and the worker logs them on one rate-limited line, no traceback;
- a context frame of 100,000 fresh keys is refused, frames of 1,000 fresh keys are served
  without creating process-wide state, and a routine whose pickle does not match its digest is
  refused before its context frame is even unpickled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import pickle
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import context_state
import msgpack
import pytest
import routines
import zmq
import zmq.asyncio
from helpers import CliWorker, make_call

import wool
from wool import protocol as p
from wool._throttle import WARN_INTERVAL
from wool._transport import context
from wool.caller import _contextvars as cv

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]

NAME = "hostile-callers"
WAIT = 20.0  # bound on every wait for the worker
LIST, MAP = b"\x91", b"\x81\xa1k"  # one level of nesting: a 1-item array, a 1-entry map
DEPTHS = (1_000, 1_023, 1_024, 5_000, 100_000)
ROUNDS = 20


class RawCaller:
    """A bare DEALER sending frames as given and recording every reply by call id. Receives
    only after a bounded poll: no receive is ever cancelled."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.asyncio.Context.shadow(context()).socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.replies: dict[int, list[p.Message]] = defaultdict(list)

    def close(self) -> None:
        self.sock.close(linger=0)

    async def send(self, frames: list[Any]) -> None:
        await self.sock.send_multipart(frames)

    async def wait_for(self, done: Callable[[], bool], what: Callable[[], str]) -> None:
        deadline = time.monotonic() + WAIT
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what()}")
            if await self.sock.poll(int(remaining * 1000) + 1, zmq.POLLIN):
                while True:
                    try:
                        frames = await self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    msg = p.decode(frames)
                    self.replies[msg.call_id].append(msg)

    async def reply_to(self, call_id: int, frames: list[Any]) -> p.Message:
        await self.send(frames)
        await self.wait_for(lambda: bool(self.replies[call_id]), lambda: f"the reply to call {call_id}")
        return self.replies[call_id][0]


def deep_envelopes(worker_id: str, call_id: int, depth: int, level: bytes) -> Iterator[tuple[bytes, int | None]]:
    """(envelope, the call id its reject must name) with a value `depth` levels deep in
    several places: a call's first field, a ping's extra field, a call's inline frames (ids
    readable), and the whole envelope or its version (no id before the deep part)."""
    deep = level * depth + b"\xc0"
    call = make_call(worker_id, call_id, routines.add, 1, 2)
    fields = b"".join(msgpack.packb(f, use_bin_type=True) for f in (call.digest, call.name, False, [], None, None, None))

    def head(call_id: int) -> bytes:  # a call's first three items, without their array header
        return msgpack.packb([p.VERSION, int(p.Kind.CALL), call_id])[1:]

    inline = msgpack.packb([call.routine, b"", *call.payload], use_bin_type=True)
    worker = msgpack.packb(worker_id)
    yield b"\x9c" + head(call_id) + deep + fields + inline, call_id
    yield b"\x94" + msgpack.packb([p.VERSION, int(p.Kind.PING), call_id + 1])[1:] + deep, call_id + 1
    yield b"\x9c" + head(call_id + 2) + worker + fields + b"\x91" + deep, call_id + 2
    yield deep, None
    # msgpack builds up to 1,023 levels: then the call id after the version is read.
    yield b"\x93" + deep + msgpack.packb([int(p.Kind.PING), call_id + 3])[1:], call_id + 3 if depth < 1_024 else None


def warnings_in(log: str) -> list[str]:
    return [line for line in log.splitlines() if " WARNING " in line]


@contextlib.asynccontextmanager
async def cli_worker(log_path: Path | None = None) -> AsyncIterator[CliWorker]:
    """A worker in namespace NAME, its log to `log_path` (a file, not a pipe: a worker that
    logged without limit would block on a full pipe), stopped as a user would stop it
    (SIGTERM: it withdraws its registry entry) however the test ends."""
    with contextlib.ExitStack() as files:
        log = files.enter_context(open(log_path, "wb")) if log_path is not None else None
        worker = CliWorker("--discovery", f"local:{NAME}", stderr=log)
        await worker.__aenter__()
    try:
        yield worker
    finally:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.signal(signal.SIGTERM)
            await worker.wait()
        await worker.__aexit__(None, None, None)


async def test_deeply_nested_envelopes_get_rejects_and_one_log_line_while_other_calls_complete(tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    async with cli_worker(log_path) as worker:
        await deep_envelopes_against(worker, log_path)


async def deep_envelopes_against(worker: CliWorker, log_path: Path) -> None:
    async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME)) as pool:
        await pool.wait_for_workers(lambda ws: worker.pid in {w.pid for w in ws}, timeout=WAIT)
        peer = RawCaller(worker.endpoint)
        started = time.monotonic()
        try:
            named: list[int] = []
            sent = 0
            for round_ in range(ROUNDS):
                for d, depth in enumerate(DEPTHS):
                    for lv, level in enumerate((LIST, MAP)):
                        base = 1_000_000 * (round_ + 1) + 1000 * d + 100 * lv
                        for envelope, call_id in deep_envelopes(worker.id, base, depth, level):
                            await peer.send([envelope])
                            sent += 1
                            if call_id is not None:
                                named.append(call_id)
                # Between two rounds of garbage, a well-behaved call completes.
                assert await asyncio.wait_for(routines.add(round_, 1), WAIT) == round_ + 1
            await peer.wait_for(
                lambda: all(peer.replies[i] for i in named),
                lambda: f"rejects of {len(named)} calls, such as {[i for i in named if not peer.replies[i]][:10]}",
            )
            for call_id in named:
                (reply,) = peer.replies[call_id]
                assert isinstance(reply, p.Reject) and reply.reason is p.RejectReason.MALFORMED, reply
                assert len(reply.detail) < 300, reply.detail
                words = ("malformed", "nested too deeply", "exceeds", "lacks its frames", "unsupported protocol version")
                assert any(w in reply.detail for w in words), reply.detail
            # The worker reads one caller's messages in order: after this pong, all were handled.
            pong = await peer.reply_to(2**63, p.encode(p.Ping(2**63)))
            assert isinstance(pong, p.Pong) and pong.worker_id == worker.id
            assert {i for i, ms in peer.replies.items() if ms} == {*named, 2**63}  # nothing else answered
        finally:
            peer.close()
        elapsed = time.monotonic() - started
        assert await routines.add(2, 3) == 5
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0
    text = log_path.read_text()
    malformed = [line for line in warnings_in(text) if "dropped a malformed request" in line]
    print(f"\n{sent} deep envelopes ({len(named)} naming a call) in {elapsed:.2f} s; {len(malformed)} warning lines")
    assert malformed and len(malformed) <= 1 + elapsed // WARN_INTERVAL, malformed
    assert len(warnings_in(text)) == len(malformed), warnings_in(text)
    assert "Traceback" not in text and "RecursionError" not in text and " ERROR " not in text, text[:2000]
    assert all(len(line) < 500 for line in malformed), malformed


def context_frame(namespace: str, count: int, name: Callable[[int], str] = lambda i: f"k{i}") -> bytes:
    return pickle.dumps({(namespace, name(i)): i for i in range(count)}, protocol=5)


def refused(reply: p.Message, *words: str) -> None:
    assert isinstance(reply, p.Raise), reply
    text = f"{reply.type_name}: {reply.message}"
    for word in words:
        assert word in text, text


async def test_a_context_frame_of_100000_fresh_keys_is_refused_and_fresh_keys_leave_no_process_wide_state() -> None:
    async with cli_worker() as worker, wool.WorkerPool(discovery=wool.LocalDiscovery(NAME)) as pool:
        await pool.wait_for_workers(lambda ws: worker.pid in {w.pid for w in ws}, timeout=WAIT)
        before = await asyncio.wait_for(context_state.process_wide_variables(), WAIT)
        peer = RawCaller(worker.endpoint)
        try:
            count = make_call(worker.id, 0, context_state.process_wide_variables)

            def call(call_id: int, frame: bytes) -> list[Any]:
                return p.encode(dataclasses.replace(count, call_id=call_id, context=frame))

            # 100,000 keys: over the size limit (refused unread), and packed under it with short
            # names (refused by count once unpickled).
            wide = context_frame("hostile.wide", 100_000)
            assert len(wide) > cv.MAX_CONTEXT_BYTES
            refused(await peer.reply_to(1, call(1, wide)), "SerializationError", "refused", f"{len(wide)} bytes")
            short = context_frame("", 100_000, lambda i: format(i, "x"))
            if len(short) <= cv.MAX_CONTEXT_BYTES:
                refused(await peer.reply_to(2, call(2, short)), "SerializationError", "refused", "100000 of them")
            # Within the limits, fresh keys are served: the call sees the same number of
            # process-wide variables as before, and so does every later call.
            for i in range(20):
                reply = await peer.reply_to(10 + i, call(10 + i, context_frame(f"hostile.n{i}", cv.MAX_CONTEXT_KEYS)))
                assert isinstance(reply, p.Return) and p.loads(reply.payload) == before, reply
            # A routine whose pickle does not match its digest is refused before its context is
            # applied: a context frame that is not even a pickle is not what the error names.
            forged = dataclasses.replace(count, call_id=50, digest=bytes(16), context=b"\x80\x05garbage")
            refused(await peer.reply_to(50, p.encode(forged)), "DispatchError", "does not match its digest")
        finally:
            peer.close()
        assert await asyncio.wait_for(context_state.process_wide_variables(), WAIT) == before
        # Nothing of those calls' values is seen by a later call.
        assert await asyncio.wait_for(context_state.read("hostile.n0", "k1"), WAIT) is None
        # And values still travel: one for a variable the worker had not heard of is found.
        token = context_state.TRACE.set("from the caller")
        try:
            assert await asyncio.wait_for(context_state.read("tests.context_state", "trace"), WAIT) == "from the caller"
        finally:
            context_state.TRACE.reset(token)


async def test_more_variables_than_a_call_carries_fail_at_the_call_site_and_nothing_is_sent() -> None:
    variables = [wool.ContextVar(f"v{i}", namespace="tests.hostile.many") for i in range(cv.MAX_CONTEXT_KEYS + 1)]
    async with wool.WorkerPool(size=1):
        tokens = [var.set(i) for i, var in enumerate(variables)]
        try:
            with pytest.raises(ValueError, match=rf"add was not called: {cv.MAX_CONTEXT_KEYS + 1} wool.ContextVars are set"):
                await routines.add(1, 2)
        finally:
            for var, token in zip(reversed(variables), reversed(tokens), strict=True):
                var.reset(token)
        assert await routines.add(1, 2) == 3
