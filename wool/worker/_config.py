"""What a worker process is told at start-up, by the CLI or by the pool that spawns it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from .._endpoints import parse_endpoint
from .._ipc import ipc_endpoint_problem
from .._keys import Keys
from .._memory import check_memory_limit
from .._spin import check_idle
from .._transport import DEFAULT_LIVENESS, DEFAULT_MAX_MESSAGE_SIZE, check_max_message_size
from ..caller import DEFAULT_IDLE_TIMEOUT
from ..discovery import Discovery, keyless_refusal
from ..sharing import check_share_cache
from ._server import SETTLE_QUIET
from ._threads import DEFAULT_THREADS, check_threads

DEFAULT_GRACE = 5.0
DEFAULT_BIND_HELP = "an ipc:// socket of its own in the private runtime directory"


def _is_loopback_tcp(bind: str) -> bool:
    try:
        endpoint = parse_endpoint(bind)
    except (TypeError, ValueError):
        return False
    return endpoint.scheme == "tcp" and endpoint.local_only


def bind_refusal(bind: str | None) -> str | None:
    """Why a worker without keys must not listen at `bind` (None: only this user and root
    can reach it there). `None` is the default endpoint (`_endpoint`), private by design."""
    if bind is None or bind.startswith("inproc://"):
        return None
    way_out = (
        "Leave --bind out (the default, an ipc:// socket in the private runtime directory, reaches only this "
        "user), or generate keys with `python -m wool.keys generate DIR` and start the worker with `--keys DIR` "
        "(pools use them with WorkerPool(keys=DIR))"
    )
    if bind.startswith("ipc://"):
        problem = ipc_endpoint_problem(bind)
        if problem is None:
            return None
        return (
            f"refusing to listen on {bind} without CURVE keys: {problem}, so other users could connect and run "
            f"code as this user. {way_out}, or pass --insecure if every user of this machine is trusted"
        )
    if _is_loopback_tcp(bind):
        return (
            f"refusing to listen on {bind} without CURVE keys: every user of this machine can connect to a "
            f"loopback port and run code as this user. {way_out}, or pass --insecure if every user of this machine "
            "is trusted"
        )
    return (
        f"refusing to listen on {bind} without CURVE keys: anyone who can reach that address could run code on "
        f"this machine as this user. {way_out}, or pass --insecure if every host on this network and every user "
        "of this machine is trusted"
    )


def check_recycle_after(n: int | None, what: str = "recycle_after") -> int | None:
    """`n` calls (at least 1), or None: never recycle for a number of calls."""
    if n is not None and (not isinstance(n, int) or isinstance(n, bool)):
        raise TypeError(f"{what} must be an int or None, not {type(n).__name__}")
    if n is not None and n < 1:
        raise ValueError(f"{what} must be at least 1, got {n}")
    return n


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """Raises `ValueError` for a worker without `keys` that other users or hosts could call
    (any tcp:// bind, an ipc:// socket outside a private directory) or whose discovery they
    could inject peers into (`keyless_refusal`), unless `insecure`. `bind` None: a private
    ipc:// socket in the runtime directory (`_endpoint`)."""

    discovery: Discovery | None = None
    bind: str | None = None
    tags: frozenset[str] = frozenset()
    grace: float = DEFAULT_GRACE
    log_level: str | None = None
    sys_path: tuple[str, ...] = ()
    liveness: float = DEFAULT_LIVENESS  # peers that stop answering are dropped within this
    max_calls: int | None = None  # concurrent calls; the rest wait (None: no limit)
    threads: int = DEFAULT_THREADS  # plain `def` routines running at once (see `_threads`)
    # On stop, keep refusing late calls until none came for this long (see `Server.settle`);
    # 0 for a pool's private namespace, whose only callers are the pool and its workers.
    settle: float = SETTLE_QUIET
    keys: Keys | None = None  # CURVE: serve only callers these keys trust, call only such peers
    insecure: bool = False  # allow, without keys, what other users or hosts could reach
    # The largest message part (bytes) its sockets accept, and the limit its replies keep to.
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    metrics_port: int | None = None  # serve Prometheus metrics on this port (0: any free one)
    metrics_address: str = "127.0.0.1"
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT  # close connections to peers idle this long
    # Entered before the first call, exited after the last (see `_lifespan`).
    lifespan: Callable[[], AbstractAsyncContextManager[Any]] | None = None
    share_cache: int | None = None  # bytes of shared values it keeps mapped (None: the default)
    idle: str = "sleep"  # "spin": poll the sockets for `spin_us` after each message (`_spin`)
    spin_us: int | None = None
    recycle_after: int | None = None  # calls after which it recycles (see `_recycle`)
    memory_limit: int | None = None  # bytes of RSS above which it recycles (1.2x: killed)
    forward_output: bool = True  # send what routines print and log to their callers

    def __post_init__(self) -> None:
        check_recycle_after(self.recycle_after)
        check_memory_limit(self.memory_limit)
        if self.keys is not None and not isinstance(self.keys, Keys):
            raise TypeError(f"keys must be a wool.Keys, not {type(self.keys).__name__}")
        check_max_message_size(self.max_message_size)
        if self.share_cache is not None:
            check_share_cache(self.share_cache)
        check_threads(self.threads)
        check_idle(self.idle, self.spin_us)
        if self.bind is not None and not isinstance(self.bind, str):
            raise TypeError(f"bind must be an endpoint string or None, not {type(self.bind).__name__}")
        if self.keys is None and not self.insecure:
            refusal = bind_refusal(self.bind) or keyless_refusal(self.discovery, "--insecure")
            if refusal is not None:
                raise ValueError(refusal)
