"""One rate-limited warning: what a peer can make us log, we log at most once per interval.

A leaf module (it imports nothing from wool), so every layer may use it. A flood of bad
messages from one peer, or of refused keys, must not flood the log. Two limits apply:
each kind of message (a `key`) is logged as a warning at most once per `interval`, and all
kinds together at most `total` times per interval, so a peer that makes every message a new
kind (a fresh CURVE key per handshake) still gets `total` lines per interval, not one per
message. The next warning that gets through says how many were suppressed before it; the
suppressed ones still go to DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

WARN_INTERVAL = 10.0  # seconds between two warnings of one kind
WARN_TOTAL = 10  # warnings of all kinds together per interval, unless a throttle says otherwise
_MAX_KEYS = 1024  # kinds remembered at most (keys can come from peers): then forget them all


class Throttle:
    """Warnings on `logger`: at most one per `key` per `interval` seconds, and at most
    `total` of all keys per interval. `clock` (seconds, monotonic) is for tests."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = WARN_INTERVAL,
        *,
        total: int = WARN_TOTAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total < 1:
            raise ValueError(f"total must be at least 1, got {total}")
        self._log = logger
        self.interval = interval
        self.total = total
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._window_start: float | None = None  # when the current interval of `total` began
        self._window_count = 0
        self.suppressed = 0  # since the last warning

    def warn(self, key: Hashable, message: str, *args: object) -> bool:
        """Log `message % args` as a warning unless one of `key` was logged within the
        interval, or `total` warnings were (then at DEBUG). Returns whether it was a warning."""
        now = self._clock()
        if self._window_start is None or now - self._window_start >= self.interval:
            self._window_start, self._window_count = now, 0
        last = self._last.get(key)
        if (last is not None and now - last < self.interval) or self._window_count >= self.total:
            self.suppressed += 1
            self._log.debug(message, *args)
            return False
        if last is None and len(self._last) >= _MAX_KEYS:
            self._last.clear()
        self._last[key] = now
        self._window_count += 1
        suppressed, self.suppressed = self.suppressed, 0
        if suppressed:
            self._log.warning(
                message + " (%d similar messages suppressed before this one; further ones suppressed for %.0f s)",
                *args,
                suppressed,
                self.interval,
            )
        else:
            self._log.warning(message + " (further such messages suppressed for %.0f s)", *args, self.interval)
        return True
