"""Opt-in retry and hedging for `@wool.routine(idempotent=True)`: a lost call is sent again
(bounded, last `WorkerLost` raised), a hedged call's first answer wins and the other copy
is cancelled with its `finally` run; misuse is a clear error."""

from __future__ import annotations

import fanout_routines as fr
import pytest
from helpers import Observer

import wool
from wool.caller._affinity import key_digest, place
from wool.caller._retry import MAX_ATTEMPTS

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


def key_for(worker_id: str, ids: list[str]) -> str:
    """An affinity key whose worker is `worker_id`: pins the first copy of a call."""
    return next(k for k in (f"k{i}" for i in range(1000)) if place(key_digest(k), ids) == worker_id)


async def test_a_lost_idempotent_call_runs_again_on_another_worker() -> None:
    async with wool.WorkerPool(size=3) as pool:
        a, b, c = pool.workers
        with wool.options(affinity=key_for(a.id, [a.id, b.id, c.id])):  # first to a, which dies
            assert await fr.die_unless(b.pid) == b.pid
        first = next(w for w in pool.processes if w.info is not None and w.info.id == a.id)
        assert await first.wait(10) == 3  # it did run on a, which was lost


async def test_attempts_are_bounded_and_the_last_worker_lost_is_raised() -> None:
    async with wool.WorkerPool(size=MAX_ATTEMPTS + 1) as pool:
        with pytest.raises(wool.WorkerLost):
            await fr.always_die()
        for w in pool.processes:  # wait for the exits the attempts caused
            if w.info is not None and w.info.id not in {x.id for x in pool.workers}:
                assert await w.wait(10) == 3
        assert len(pool.workers) == 1  # exactly MAX_ATTEMPTS workers ran it, and died


async def test_without_another_worker_the_loss_is_raised() -> None:
    async with wool.WorkerPool(size=1):
        with pytest.raises(wool.WorkerLost):
            await fr.always_die()


async def test_a_plain_routine_is_never_sent_twice() -> None:
    async with wool.WorkerPool(size=2) as pool:
        a, b = pool.workers
        with wool.options(affinity=key_for(a.id, [a.id, b.id])), pytest.raises(wool.WorkerLost):
            await fr.die_on(a.pid)
        assert [w.pid for w in pool.workers] == [b.pid]


async def test_a_hedged_call_takes_the_first_answer_and_cancels_the_other_copy() -> None:
    async with Observer() as observer, wool.WorkerPool(size=2) as pool:
        a, b = pool.workers
        with wool.options(affinity=key_for(a.id, [a.id, b.id]), hedge_after=0.1):
            assert await fr.stall_on(observer.address, a.pid) == b.pid
        # The stalled copy was cancelled, and its finally had run when the answer came.
        assert observer.events == [f"stalled {a.pid}", f"cleanup {a.pid}"]
        with wool.options(hedge_after=0.1):  # answers before hedge_after: one copy only
            assert await fr.stall_on(observer.address, -1) in {a.pid, b.pid}
        assert len(observer.events) == 2


async def test_a_hedge_with_no_other_worker_waits_for_the_first() -> None:
    async with wool.WorkerPool(size=1) as pool:
        with wool.options(hedge_after=0.0):
            assert await fr.idempotent_pid() == pool.workers[0].pid


async def test_hedging_a_routine_that_is_not_idempotent_is_refused() -> None:
    async with wool.WorkerPool(size=1):
        with wool.options(hedge_after=0.5):
            with pytest.raises(TypeError, match="fanout_routines.whoami|whoami is not idempotent"):
                await fr.whoami()
            with pytest.raises(TypeError, match="is an async generator"):
                async for _ in fr.stream_dying_after_first(2):
                    pass


async def test_an_idempotent_generator_is_retried_only_before_its_first_item() -> None:
    async with wool.WorkerPool(size=2) as pool:
        a, b = pool.workers
        with wool.options(affinity=key_for(a.id, [a.id, b.id])):
            assert [x async for x in fr.stream_dying_unless(b.pid, 3)] == [0, 1, 2]
        seen = []
        with pytest.raises(wool.WorkerLost):
            async for x in fr.stream_dying_after_first(3):
                seen.append(x)
        assert seen == [0]  # once an item arrived, a loss is not retried


def test_idempotent_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="idempotent must be True or False"):
        wool.routine(idempotent="yes")  # type: ignore[call-overload]
