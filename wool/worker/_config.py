"""What a worker process is told at start-up, by the CLI or by the pool that spawns it."""

from __future__ import annotations

import dataclasses

from .._keys import Keys
from .._transport import DEFAULT_LIVENESS
from ..discovery import Discovery

DEFAULT_BIND = "tcp://127.0.0.1:0"
DEFAULT_GRACE = 5.0


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    discovery: Discovery | None = None
    bind: str = DEFAULT_BIND
    tags: frozenset[str] = frozenset()
    grace: float = DEFAULT_GRACE
    log_level: str | None = None
    sys_path: tuple[str, ...] = ()
    liveness: float = DEFAULT_LIVENESS  # peers that stop answering are dropped within this
    max_calls: int | None = None  # concurrent calls; the rest wait (None: no limit)
    keys: Keys | None = None  # CURVE: serve only callers these keys trust, call only such peers

    def __post_init__(self) -> None:
        if self.keys is not None and not isinstance(self.keys, Keys):
            raise TypeError(f"keys must be a wool.Keys, not {type(self.keys).__name__}")
