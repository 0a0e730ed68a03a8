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

A hedged call's workers are kept in a `Tried` (see `_route`), shared by its two copies and
its retries, so that the copy goes to another worker. The first copy runs in the caller's
own task, so a call that answers in time costs one timer more than an unhedged one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

from .. import _observe
from .._errors import NoWorkersAvailable, WorkerLost
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
                # A lost worker is out of rotation already: a plain retry needs no routing.
                return await attempt()
            return await _hedged(tried, attempt, hedge_after)
        except NoWorkersAvailable:
            if lost is None:
                raise
            break  # no worker left to send it to: the loss is the answer
        except WorkerLost as e:
            lost = e
            if number < MAX_ATTEMPTS:
                log.info(
                    "%s lost its worker (%s); sending it again (attempt %d of %d)",
                    name,
                    e,
                    number + 1,
                    MAX_ATTEMPTS,
                    extra=_observe.call_fields(None, name, None, None),
                )
    assert lost is not None
    raise lost


async def _routed(tried: Tried, attempt: Attempt[T]) -> T:
    token = route_var.set(tried)
    try:
        return await attempt()
    finally:
        route_var.reset(token)


class _Copy:
    """The hedged copy of a call, started by a timer while the first runs in the caller's
    own task. When the copy answers first, it interrupts the first by cancelling the
    caller's task (which `_hedged` tells apart from a cancellation of the caller)."""

    __slots__ = ("task", "won", "first_done", "owner")

    def __init__(self, owner: asyncio.Task[Any]) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.won = False
        self.first_done = False
        self.owner = owner

    def start(self, tried: Tried, attempt: Attempt[T]) -> None:
        if self.first_done:
            return
        self.task = asyncio.ensure_future(_routed(tried.elsewhere(), attempt))
        self.task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Future[Any]) -> None:
        if self.first_done or task.cancelled() or isinstance(task.exception(), (WorkerLost, NoWorkersAvailable)):
            return  # not an answer (or too late): the first goes on
        self.won = True
        self.owner.cancel()


async def _hedged(tried: Tried, attempt: Attempt[T], after: float) -> T:
    """The first copy runs in this task: a call answered within `after` costs one timer."""
    owner = asyncio.current_task()
    assert owner is not None
    copy = _Copy(owner)
    timer = asyncio.get_running_loop().call_later(after, copy.start, tried, attempt)
    try:
        try:
            result = await _routed(tried, attempt)
        finally:
            copy.first_done = True
            timer.cancel()
    except asyncio.CancelledError:
        if copy.won and copy.task is not None and owner.uncancel() == 0:
            return cast(T, copy.task.result())  # the copy's answer: the first has unwound meanwhile
        await cancel_all([copy.task] if copy.task is not None else [])
        raise
    except WorkerLost:
        if copy.task is None:
            raise
        try:
            return cast(T, await copy.task)  # the first is lost: the copy may still answer
        except NoWorkersAvailable:
            raise WorkerLost("the call's worker was lost and no other worker could take its hedged copy") from None
    except BaseException:
        await cancel_all([copy.task] if copy.task is not None else [])
        raise
    if copy.task is not None:
        await cancel_all([copy.task])
    return result


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
