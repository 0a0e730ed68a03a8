"""The spinning idle strategy (`wool._spin`): its settings, that a spinning loop delivers
messages without its sockets' descriptors waking it, and that the core semantics hold with
`WorkerPool(idle="spin")` (a representative subset of the cancellation, generator, call and
liveness tests, imported here and run with every pool of this module spinning)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import routines
import test_calls
import test_cancellation
import test_generators
import test_liveness
import zmq

import wool
from wool import _spin
from wool._transport import SocketDriver, context, new_socket
from wool.worker.__main__ import main as worker_main

# The semantics, again, in spin mode (see the `spinning` fixture).
test_result_comes_back = test_calls.test_result_comes_back
test_remote_exception_keeps_type_message_attributes_and_chain = (
    test_calls.test_remote_exception_keeps_type_message_attributes_and_chain
)
test_many_concurrent_calls_run_at_once_on_two_workers = test_calls.test_many_concurrent_calls_run_at_once_on_two_workers
test_task_cancel_cancels_the_remote_coroutine = test_cancellation.test_task_cancel_cancels_the_remote_coroutine
test_asyncio_timeout_cancels_the_remote_coroutine = test_cancellation.test_asyncio_timeout_cancels_the_remote_coroutine
test_cancel_reaches_a_generator_step = test_cancellation.test_cancel_reaches_a_generator_step
test_asend_drives_the_remote_generator = test_generators.test_asend_drives_the_remote_generator
test_aclose_runs_the_remote_finally = test_generators.test_aclose_runs_the_remote_finally
test_generator_is_pull_based = test_generators.test_generator_is_pull_based
test_frozen_worker_fails_its_calls_within_the_liveness_bound = (
    test_liveness.test_frozen_worker_fails_its_calls_within_the_liveness_bound
)
test_generator_step_running_on_a_frozen_worker_fails = test_liveness.test_generator_step_running_on_a_frozen_worker_fails


@pytest.fixture(autouse=True)
def spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every `WorkerPool` made by this module's tests spins, in the caller and its workers."""
    init = wool.WorkerPool.__init__

    def spin_init(self: wool.WorkerPool, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("idle", "spin")
        init(self, *args, **kwargs)

    monkeypatch.setattr(wool.WorkerPool, "__init__", spin_init)


@pytest.mark.parametrize(
    ("idle", "spin_us", "error", "words"),
    [
        ("busy", None, ValueError, "idle must be one of 'sleep', 'spin', got 'busy'"),
        (1, None, TypeError, "idle must be one of"),
        ("sleep", 100, ValueError, "applies only with idle='spin'"),
        ("spin", 0, ValueError, "between 1 and 1000000"),
        ("spin", 2_000_000, ValueError, "between 1 and 1000000"),
        ("spin", 1.5, TypeError, "spin_us must be an int"),
        ("spin", True, TypeError, "spin_us must be an int"),
    ],
)
def test_bad_settings_are_refused_naming_the_problem(idle: Any, spin_us: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        wool.WorkerPool(size=1, idle=idle, spin_us=spin_us)


def test_settings_default_to_sleeping_and_a_window_when_spinning() -> None:
    assert _spin.check_idle("sleep", None) == ("sleep", 0)
    assert _spin.check_idle("spin", None) == ("spin", _spin.DEFAULT_SPIN_US)
    assert _spin.check_idle("spin", 50) == ("spin", 50)


def test_the_worker_cli_refuses_a_bad_window(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        worker_main(["--discovery", "local:spin-cli-test", "--idle", "spin", "--spin-us", "0"])
    assert exit.value.code == 2
    assert "--idle/--spin-us: spin_us must be between 1 and 1000000" in capsys.readouterr().err


def test_the_worker_cli_refuses_a_window_without_spinning(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        worker_main(["--discovery", "local:spin-cli-test", "--spin-us", "100"])
    assert exit.value.code == 2
    assert "applies only with idle='spin'" in capsys.readouterr().err


async def test_a_spinning_pool_spins_its_loop_while_open_only() -> None:
    loop = asyncio.get_running_loop()
    async with wool.WorkerPool(size=1, spin_us=200) as pool:
        assert pool.idle == "spin"
        spinner = _spin.spinner(loop)
        assert spinner is not None and spinner.window == pytest.approx(200e-6)
        assert await routines.add(1, 2) == 3
    assert _spin.spinner(loop) is None


async def test_a_spinning_loop_delivers_without_its_descriptor_waking_it() -> None:
    """The driver's descriptor is taken off the loop: only the spinner's polls can deliver."""
    loop = asyncio.get_running_loop()
    _spin.enable(loop, _spin.MAX_SPIN_US)
    endpoint = "inproc://spin-test"
    peer = context().socket(zmq.PAIR)
    peer.linger = 0
    peer.rcvtimeo = 5000  # a receive fails rather than hang the test
    peer.bind(endpoint)
    received: asyncio.Future[list[Any]] = loop.create_future()
    sock = new_socket(zmq.PAIR)
    sock.connect(endpoint)
    driver = SocketDriver(sock, lambda frames: received.done() or received.set_result(frames))
    try:
        loop.remove_reader(sock.getsockopt(zmq.FD))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the driver's first drain ran: a send leaves at once
        driver.send([b"ping"])  # activity: the loop now polls this socket for a second
        assert peer.recv(copy=True) == b"ping"
        for _ in range(3):  # the drain the send scheduled runs, and finds nothing
            await asyncio.sleep(0)
        peer.send(b"pong")
        assert await asyncio.wait_for(received, 5) == [b"pong"]
    finally:
        driver.close()
        peer.close(linger=0)
        _spin.disable(loop)


async def test_spinning_stops_when_the_window_passes() -> None:
    """A spinner polls what was active, then stops: the loop sleeps again."""
    loop = asyncio.get_running_loop()
    spinner = _spin.enable(loop, 1_000)
    polled = asyncio.Event()

    class Source:
        closed = False
        polls = 0

        def poll(self) -> None:
            self.polls += 1
            if self.polls == 2:
                polled.set()

    source = Source()
    try:
        spinner.kick(source)
        await asyncio.wait_for(polled.wait(), 5)
        while spinner._polling:  # bounded by the window (1 ms) and the test's timeout
            await asyncio.sleep(0)
        polls = source.polls
        for _ in range(10):
            await asyncio.sleep(0)
        assert source.polls == polls  # no more polls once the window has passed
    finally:
        _spin.disable(loop)
