"""One rate-limited warning: what a peer can make us log, we log at most once per interval.

A leaf module (it imports nothing from wool), so every layer may use it. A flood of bad
messages from one peer, or of refused keys, must not flood the log: each kind of message
(a `key`) is logged as a warning at most once per `interval`, saying for how long further
ones are suppressed; the suppressed ones still go to DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable

WARN_INTERVAL = 10.0  # seconds between two warnings of one kind
_MAX_KEYS = 1024  # kinds remembered at most (keys can come from peers): then forget them all


class Throttle:
    """Warnings on `logger`, at most one per `key` per `interval` seconds."""

    def __init__(self, logger: logging.Logger, interval: float = WARN_INTERVAL) -> None:
        self._log = logger
        self.interval = interval
        self._last: dict[Hashable, float] = {}

    def warn(self, key: Hashable, message: str, *args: object) -> bool:
        """Log `message % args` as a warning unless one of `key` was logged within the
        interval (then at DEBUG). Returns whether it was a warning."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._log.debug(message, *args)
            return False
        if last is None and len(self._last) >= _MAX_KEYS:
            self._last.clear()
        self._last[key] = now
        self._log.warning(message + " (further such messages suppressed for %.0f s)", *args, self.interval)
        return True
