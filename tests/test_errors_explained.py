"""Errors that say what happened, and wool's own errors only: a call whose envelope cannot be
encoded, arguments a worker cannot unpickle, a worker that does not answer its handshake."""

from __future__ import annotations

import asyncio
import signal

import pytest
import routines
from helpers import CliWorker, Observer

import wool
from wool import protocol as p

pytestmark = pytest.mark.multiprocess

# 64 tags of 256 characters of 4 bytes each: clipped to the limits, still over the envelope's.
HUGE_TAGS = tuple(chr(0x1F600 + i) + "\U0001f600" * 255 for i in range(64))


async def test_a_call_whose_envelope_cannot_be_encoded_fails_with_a_wool_error_and_takes_no_slot() -> None:
    """The call fails before it is registered, so no slot of the worker's window leaks: after
    more such failures than the window holds, a full window of calls still runs at once."""
    max_calls = 2
    tags = [arg for tag in HUGE_TAGS for arg in ("--tag", tag)]
    worker = CliWorker("--discovery", "local:huge-tags", "--max-calls", str(max_calls), *tags)
    async with Observer() as obs, worker, wool.WorkerPool(discovery=wool.LocalDiscovery("huge-tags")) as pool:
        await pool.wait_for_workers(timeout=10)
        await _check_no_slot_leaks(obs, max_calls)
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0  # and withdrawn


async def _check_no_slot_leaks(obs: Observer, max_calls: int) -> None:
    for _ in range(max_calls + 1):
        with wool.options(tags=HUGE_TAGS), pytest.raises(wool.WoolError, match="envelope of .* bytes exceeds") as info:
            await routines.add(1, 2)
        assert isinstance(info.value, p.ProtocolError)
    calls = [asyncio.ensure_future(routines.wait_at(obs.address, f"c{i}")) for i in range(max_calls)]
    try:
        for i in range(max_calls):
            await obs.wait_for(f"at c{i}", timeout=10)  # all of them run at the same time
    finally:
        for i in range(max_calls):
            obs.open(f"c{i}")
    assert await asyncio.wait_for(asyncio.gather(*calls), 10) == [f"c{i}" for i in range(max_calls)]
