"""Recycling a worker: after `recycle_after` calls, or above its memory limit, it stops taking
calls, finishes the running ones and exits, to be replaced by a fresh process.

Theory of operation. `RecyclePolicy` is pure: told of each call started and of each RSS
sample, it returns what to do. The `Recycler` carries that out on the worker:
- `announce` (at 90 % of `recycle_after`): a spawned worker asks its pool for a replacement
  now, so that the replacement serves before this one stops taking calls;
- `recycle`: stop taking calls at once (late calls are refused as SHUTTING_DOWN, which callers
  treat as "never ran, go elsewhere"), tell the pool, then stop as on SIGTERM: withdraw, let
  running calls finish, exit the lifespan;
- `kill` (RSS above `HARD_FACTOR` times the limit while calls run): its running calls fail
  with `WorkerLost` naming the limit and the RSS seen. A pool watches its spawned workers' RSS
  itself and kills them (see `wool._replacer`); a hand-started worker does it here, from a
  sampling thread that needs no event loop: it asks the loop to fail the calls and stop, and
  if the loop does not within `HARD_STOP_WAIT` (a routine holds it), ends the process.

A hand-started worker then re-executes itself (`__main__`), a spawned one just exits.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import threading
from collections.abc import Callable

from .._memory import HARD_FACTOR, SAMPLE_INTERVAL, rss, show_bytes

log = logging.getLogger("wool.worker")

ANNOUNCE_AT = 0.9  # of recycle_after: when a spawned worker asks its pool for a replacement
HARD_STOP_WAIT = 2.0  # seconds the sampling thread lets the loop fail the calls and stop


class Action(enum.Enum):
    ANNOUNCE = "announce"
    RECYCLE = "recycle"
    KILL = "kill"


def memory_reason(seen: int, limit: int) -> str:
    return f"its RSS of {show_bytes(seen)} exceeded {HARD_FACTOR:g} x its memory limit of {show_bytes(limit)}"


class RecyclePolicy:
    """When a worker recycles; no I/O, no clock."""

    def __init__(self, recycle_after: int | None, memory_limit: int | None) -> None:
        self.recycle_after = recycle_after
        self.memory_limit = memory_limit
        self.started = 0
        self.reason: str | None = None  # why it recycles, once it does
        # At 90 %, and at least one call before the last, so the replacement is on its way
        # before this worker says it takes no more calls (with N = 3, ceil(2.7) is N).
        self._announce_at = max(1, min(math.ceil(recycle_after * ANNOUNCE_AT), recycle_after - 1)) if recycle_after else None
        self._announced = False

    def call_started(self) -> list[Action]:
        self.started += 1
        actions: list[Action] = []
        if self._announce_at is not None and self.started >= self._announce_at and not self._announced:
            self._announced = True
            actions.append(Action.ANNOUNCE)
        if self.recycle_after is not None and self.started >= self.recycle_after:
            actions += self._recycle(f"it ran {self.started} calls (recycle_after={self.recycle_after})")
        return actions

    def rss_seen(self, seen: int | None, running: bool) -> list[Action]:
        limit = self.memory_limit
        if limit is None or seen is None:
            return []
        if running and seen > limit * HARD_FACTOR:
            self.reason = memory_reason(seen, limit)
            return [Action.KILL]
        if seen > limit:
            return self._recycle(f"its RSS of {show_bytes(seen)} exceeded its memory limit of {show_bytes(limit)}")
        return []

    def _recycle(self, reason: str) -> list[Action]:
        if self.reason is not None:
            return []
        self.reason = reason
        return [Action.RECYCLE]


class Recycler:
    """Carries out a `RecyclePolicy` on a running worker. `stop(reason)` starts the worker's
    stop path; `notify(message)` tells the spawning pool (None for a hand-started worker);
    `fail_calls(error_text)` fails the running calls with `WorkerLost`; `hard_exit()` ends
    the process when the loop cannot (the thread calls it)."""

    def __init__(
        self,
        policy: RecyclePolicy,
        *,
        stop: Callable[[], None],
        notify: Callable[[dict[str, str]], None] | None,
        fail_calls: Callable[[str], None],
        running: Callable[[], bool],
        hard_exit: Callable[[], None],
    ) -> None:
        self.policy = policy
        self._stop = stop
        self._notify = notify
        self._fail_calls = fail_calls
        self._running = running
        self._hard_exit = hard_exit
        self._loop = asyncio.get_running_loop()
        self._halt = threading.Event()
        self._stopped = threading.Event()  # the loop carried out a kill
        self._thread: threading.Thread | None = None
        if policy.memory_limit is not None:
            if rss() is None:
                log.warning("memory_limit is not enforced: this platform has no /proc to read the RSS from")
            else:
                self._thread = threading.Thread(target=self._sample, name="wool-memory-limit", daemon=True)
                self._thread.start()

    @property
    def reason(self) -> str | None:
        return self.policy.reason

    def call_started(self) -> None:
        self._carry_out(self.policy.call_started())

    def call_ended(self) -> None:
        if self.policy.memory_limit is not None:
            self._carry_out(self.policy.rss_seen(rss(), running=False))

    def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if action is Action.ANNOUNCE and self._notify is not None:
                self._notify({"event": "announce"})
            elif action is Action.RECYCLE:
                log.info("worker recycling: %s", self.policy.reason)
                if self._notify is not None:
                    self._notify({"event": "recycle", "reason": self.policy.reason or ""})
                self._stop()
            elif action is Action.KILL:
                reason = self.policy.reason or "memory limit"
                log.warning("worker killing its calls: %s", reason)
                self._fail_calls(f"the worker was stopped: {reason}")
                self._stop()
                self._stopped.set()

    def _sample(self) -> None:
        """In a thread: the loop may be held by the very routine that grows."""
        while not self._halt.wait(SAMPLE_INTERVAL):
            seen = rss()
            actions = self.policy.rss_seen(seen, running=self._running())
            if not actions:
                continue
            if Action.KILL in actions and self._notify is not None:
                continue  # the pool kills its workers, and tells their callers why
            try:
                self._loop.call_soon_threadsafe(self._carry_out, actions)
            except RuntimeError:  # the loop is closed: the worker is stopping anyway
                return
            if Action.KILL in actions and not self._stopped.wait(HARD_STOP_WAIT) and not self._halt.is_set():
                log.error("worker ending the process: %s, and its event loop did not respond", self.policy.reason)
                self._hard_exit()
                return

    def close(self) -> None:
        self._halt.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(1.0)
