"""The worker: a process that serves routines (run it with `python -m wool.worker`).

Other packages import from here, never from the private modules below: `wool._pool` spawns
workers through these names."""

from ._config import DEFAULT_GRACE, WorkerConfig, check_recycle_after
from ._endpoint import remove_socket
from ._lifespan import LifespanFactory, check_factory
from ._metrics_http import DEFAULT_METRICS_ADDRESS, check_port, metrics_token, token_path
from ._process import Template, WorkerProcess, templates_work
from ._server import SETTLE_QUIET
from ._threads import DEFAULT_THREADS, check_threads

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_METRICS_ADDRESS",
    "DEFAULT_THREADS",
    "SETTLE_QUIET",
    "LifespanFactory",
    "Template",
    "WorkerConfig",
    "WorkerProcess",
    "check_factory",
    "check_port",
    "check_recycle_after",
    "metrics_token",
    "check_threads",
    "remove_socket",
    "templates_work",
    "token_path",
]
