"""Opt-in retry and hedging, for routines declared `@wool.routine(idempotent=True)`.

At most once stays the default: only a routine whose author said that running it twice is
harmless is ever sent twice.

- Retry. An idempotent call whose worker is lost (`WorkerLost`: it may or may not have run)
  is sent again, to another worker if there is one, up to `MAX_ATTEMPTS` attempts in all
  and always within the call's one deadline (an attempt never extends it). When the attempts
  run out, or no worker is left to try, the last `WorkerLost` is raised.
- Hedging. With `wool.options(hedge_after=s)`, an idempotent call that has not answered
  after `s` seconds is sent a second time, to another worker; the first answer wins (a
  result, or the routine's exception: both are answers; a `WorkerLost` is not, and leaves the
  other copy running), and the other copy is cancelled and waited for, so its `finally` has
  run on its worker when the caller gets the answer. A hedged pair counts as one attempt.
  With no other worker to send the copy to, the call simply goes on waiting for the first.

Which workers were tried is kept in a `Tried` (see `_route`), shared by an attempt's copies
and by the retries, so that they spread over different workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from ._errors import NoWorkersAvailable, WorkerLost
from ._route import Pinned, Tried, route_var

log = logging.getLogger("wool.routine")

MAX_ATTEMPTS = 3  # the first attempt and two retries
T = TypeVar("T")

Attempt = Callable[[], Awaitable[T]]


async def idempotent(name: str, attempt: Attempt[T], hedge_after: float | None) -> T:
    """Run `attempt` (one dispatch of the call) until it does not lose its worker, at most
    `MAX_ATTEMPTS` times, hedging each after `hedge_after` seconds if given. A call pinned
    to one worker (by `pool.broadcast`) is sent once: it must not move to another."""
    if isinstance(route_var.get(), Pinned):
        return await attempt()
    tried = Tried()
    lost: WorkerLost | None = None
    for number in range(1, MAX_ATTEMPTS + 1):
        try:
            if hedge_after is None:
                return await _routed(tried, attempt)
            return await _hedged(tried, attempt, hedge_after)
        except NoWorkersAvailable:
            if lost is None:
                raise
            break  # no worker left to send it to: the loss is the answer
        except WorkerLost as e:
            lost = e
            if number < MAX_ATTEMPTS:
                log.info("%s lost its worker (%s); sending it again (attempt %d of %d)", name, e, number + 1, MAX_ATTEMPTS)
    assert lost is not None
    raise lost


async def _routed(tried: Tried, attempt: Attempt[T]) -> T:
    token = route_var.set(tried)
    try:
        return await attempt()
    finally:
        route_var.reset(token)


async def _hedged(tried: Tried, attempt: Attempt[T], after: float) -> T:
    first = asyncio.ensure_future(_routed(tried, attempt))
    running = {first}
    try:
        done, _ = await asyncio.wait(running, timeout=after)
        if not done:
            running.add(asyncio.ensure_future(_routed(tried.elsewhere(), attempt)))
        lost: WorkerLost | None = None
        while running:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception() if not task.cancelled() else None
                if isinstance(error, NoWorkersAvailable) and task is not first:
                    continue  # no other worker for the copy: the first goes on alone
                if isinstance(error, WorkerLost):
                    lost = error
                    continue  # not an answer: the other copy may still give one
                return task.result()  # an answer: the other copy is cancelled below
        assert lost is not None
        raise lost
    finally:
        await cancel_all(running)


async def cancel_all(running: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel `tasks` and wait until each has unwound (each call's own wait for its remote
    side is bounded by the liveness period), even if cancelled again meanwhile."""
    tasks = set(running)
    for task in tasks:
        task.cancel()
    cancelled = False
    while tasks:
        try:
            done, tasks = await asyncio.wait(tasks)
        except asyncio.CancelledError:
            cancelled = True
            continue
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: a loser's outcome is dropped on purpose
    if cancelled:
        raise asyncio.CancelledError
