"""Errors that say what happened, and wool's own errors only: a call whose envelope cannot be
encoded, arguments a worker cannot unpickle, a worker that does not answer its handshake."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import routines
from helpers import CliWorker, Observer, logged_to

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


class Recorded(logging.Handler):
    """What the connection layer logs; sets `event` on a message containing `wanted`."""

    def __init__(self, wanted: str) -> None:
        super().__init__(logging.DEBUG)
        self.wanted = wanted
        self.messages: list[str] = []
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if self.wanted in self.messages[-1]:
            self.event.set()


@pytest.fixture
def silent_handshakes() -> Iterator[Recorded]:
    handler = Recorded("did not answer the handshake")
    with logged_to(handler, "wool.connection", logging.DEBUG):
        yield handler


async def test_a_stopped_worker_tried_again_is_reported_as_not_answering_and_used_once_resumed(
    silent_handshakes: Recorded,
) -> None:
    """Retried after the liveness period while still stopped, its kernel accepts the
    connection but nobody answers the handshake: that is said, not "it requires CURVE keys",
    and it stays a worker to try again (not one that refused), so it serves once resumed."""
    async with wool.WorkerPool(size=1, liveness=1.0) as pool:
        (worker,) = pool.processes
        assert await routines.pid() == worker.pid
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            await pool.wait_for_workers(lambda ws: not ws, timeout=10)  # lost
            async with asyncio.timeout(20):
                await silent_handshakes.event.wait()  # tried again, while still stopped
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        await pool.wait_for_workers(timeout=20)
        assert await routines.pid() == worker.pid
    said = [m for m in silent_handshakes.messages if "handshake" in m]
    assert said and all("did not answer the handshake within 1 s" in m for m in said), said
    assert not any("CURVE" in m or "no wool worker" in m for m in silent_handshakes.messages)


MODULE = """
import wool


class Thing:
    pass


@wool.routine
async def here() -> str:
    return "never runs on a worker that cannot import this module"
"""


async def test_what_a_worker_cannot_import_is_a_serialization_error_that_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A class in the arguments, or the routine itself, from a module on the caller's path but
    not the worker's (a worker started by hand elsewhere): the error names the module and the
    fix, with the worker's own error as its cause."""
    (tmp_path / "only_on_the_callers_path.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_on_the_callers_path as local  # type: ignore[import-not-found]

    async with CliWorker("--discovery", "local:unimportable") as worker:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery("unimportable")) as pool:
            await pool.wait_for_workers(timeout=10)
            with pytest.raises(wool.SerializationError) as args:
                await routines.echo(local.Thing())
            with pytest.raises(wool.SerializationError) as routine:
                await local.here()
            assert await routines.add(1, 2) == 3  # the worker is fine
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0
    for info, what in [(args, "the arguments of echo"), (routine, "the routine here")]:
        text = str(info.value)
        assert text.startswith(
            f"{what} could not be unpickled on this worker: it cannot import module 'only_on_the_callers_path'"
        )
        assert "set PYTHONPATH" in text and "start the worker from the project directory" in text
        assert isinstance(info.value.__cause__, ModuleNotFoundError)
        assert info.value.__cause__.name == "only_on_the_callers_path"
