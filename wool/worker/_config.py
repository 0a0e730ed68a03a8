"""What a worker process is told at start-up, by the CLI or by the pool that spawns it."""

from __future__ import annotations

import dataclasses

from .._transport import DEFAULT_LIVENESS
from ..discovery import Discovery
from ._server import SETTLE_QUIET

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
    # On stop, keep refusing late calls until none came for this long (see `Server.settle`);
    # 0 for a pool's private namespace, whose only callers are the pool and its workers.
    settle: float = SETTLE_QUIET
