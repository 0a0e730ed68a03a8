"""What a worker process is told at start-up, by the CLI or by the pool that spawns it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from .._endpoints import parse_endpoint
from .._idle import DEFAULT_IDLE_TIMEOUT
from .._keys import Keys
from .._transport import DEFAULT_LIVENESS, DEFAULT_MAX_MESSAGE_SIZE, check_max_message_size
from ..discovery import Discovery
from ._server import SETTLE_QUIET

DEFAULT_BIND = "tcp://127.0.0.1:0"
DEFAULT_GRACE = 5.0


def is_private(bind: str) -> bool:
    """Whether only this machine can reach a worker listening at `bind`: ipc://, or tcp:// on
    a loopback address (127.0.0.0/8, ::1, localhost). Anything else (a wildcard, an
    interface's address or name, another transport) may be reached from elsewhere."""
    try:
        return parse_endpoint(bind).local_only
    except (TypeError, ValueError):
        return False


def insecure_bind_refusal(bind: str) -> str:
    """Why a worker without keys must not listen at `bind`."""
    return (
        f"refusing to listen on {bind} without CURVE keys: anyone who can reach that address could "
        "run code on this machine as this user. Generate keys with `python -m wool.keys generate DIR` "
        "and start the worker with `--keys DIR` (pools use them with WorkerPool(keys=DIR)), bind a "
        "loopback or ipc:// endpoint, or pass --insecure if every host on this network is trusted"
    )


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """Raises `ValueError` for a worker that would listen beyond this machine (a non-loopback
    tcp address) without `keys`, unless `insecure`."""

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
    keys: Keys | None = None  # CURVE: serve only callers these keys trust, call only such peers
    insecure: bool = False  # allow listening beyond loopback without keys
    # The largest message part (bytes) its sockets accept, and the limit its replies keep to.
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT  # close connections to peers idle this long
    # Entered before the first call, exited after the last (see `_lifespan`).
    lifespan: Callable[[], AbstractAsyncContextManager[Any]] | None = None

    def __post_init__(self) -> None:
        if self.keys is not None and not isinstance(self.keys, Keys):
            raise TypeError(f"keys must be a wool.Keys, not {type(self.keys).__name__}")
        check_max_message_size(self.max_message_size)
        if self.keys is None and not self.insecure and not is_private(self.bind):
            raise ValueError(insecure_bind_refusal(self.bind))
