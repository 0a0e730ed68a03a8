"""What each Ctrl-C means to an open pool, decided without processes: the first goes on to
the program's own handler, a second one while the first is being dealt with stops the pool
now (and is not passed on), one when the pool is idle again is a first one; the handler that
was there before is back once the pool closes."""

from __future__ import annotations

import asyncio
import signal
from types import FrameType

from wool._interrupt import CtrlC, waiting_for


class Pool:
    def __init__(self) -> None:
        self.busy: str | None = "waiting up to 5 s for 1 running call"
        self.stopped = asyncio.Event()
        self.interrupted = 0

    def describe(self) -> str | None:
        return self.busy

    async def stop_now(self) -> None:
        self.stopped.set()

    def on_interrupt(self) -> None:
        self.interrupted += 1


async def test_each_ctrl_c_in_turn() -> None:
    passed_on: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        passed_on.append(signum)

    before = signal.signal(signal.SIGINT, previous)
    try:
        pool = Pool()
        ctrl_c = CtrlC(5.0, pool.describe, pool.stop_now, pool.on_interrupt).install()
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler) and handler != previous
        handler(signal.SIGINT, None)  # first: the program's handler runs (asyncio.run cancels)
        assert passed_on == [signal.SIGINT]
        await asyncio.sleep(0)  # the loop callback it scheduled
        assert pool.interrupted == 1 and ctrl_c.stopping is None
        handler(signal.SIGINT, None)  # second, a call still in flight: stop now, not passed on
        async with asyncio.timeout(10):
            await pool.stopped.wait()
        assert passed_on == [signal.SIGINT]
        assert ctrl_c.stopping is not None
        await ctrl_c.stopping
        pool.busy = None  # idle again (the program went on): the next one is a first again
        handler(signal.SIGINT, None)
        assert passed_on == [signal.SIGINT, signal.SIGINT]
        ctrl_c.uninstall()
        assert signal.getsignal(signal.SIGINT) == previous
    finally:
        signal.signal(signal.SIGINT, before)


async def test_an_ignored_ctrl_c_stays_ignored() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pool = Pool()
        ctrl_c = CtrlC(5.0, pool.describe, pool.stop_now, pool.on_interrupt).install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        ctrl_c.uninstall()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


async def test_a_pool_closing_after_the_grace_period_stops_now() -> None:
    before = signal.signal(signal.SIGINT, lambda *_: None)
    try:
        pool = Pool()
        ctrl_c = CtrlC(0.0, pool.describe, pool.stop_now, pool.on_interrupt).install()
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # type: ignore[operator]
        await asyncio.sleep(0)
        assert ctrl_c.stopping is None  # not closing yet: nothing is stopped behind its back
        ctrl_c.closing()
        async with asyncio.timeout(10):
            await pool.stopped.wait()
        ctrl_c.uninstall()
    finally:
        signal.signal(signal.SIGINT, before)


def test_what_a_ctrl_c_waits_for_in_words() -> None:
    calls = [("a" * 32, 11, 1), ("b" * 32, 12, 0)]
    assert waiting_for(5, calls, 2, False) == f"waiting up to 5 s for 1 running call on worker {'a' * 12} (pid 11)"
    two = [("a" * 32, 11, 2), ("b" * 32, 12, 1)]
    assert waiting_for(2.5, two, 2, True) == (
        f"waiting up to 2.5 s for 3 running calls on workers {'a' * 12} (pid 11), {'b' * 12} (pid 12)"
    )
    assert waiting_for(5, [], 2, False) is None  # idle: a Ctrl-C now is a first one
    assert waiting_for(5, [], 2, True) == "waiting up to 5 s for 2 workers to stop"
    assert waiting_for(5, [], 1, True) == "waiting up to 5 s for 1 worker to stop"
