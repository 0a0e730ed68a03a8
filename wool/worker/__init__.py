"""The worker: a process that serves routines (run it with `python -m wool.worker`)."""

from ._config import WorkerConfig
from ._process import WorkerProcess

__all__ = ["WorkerConfig", "WorkerProcess"]
