"""A joblib backend: `joblib.Parallel` batches (and so scikit-learn's `n_jobs` work) run on
wool workers.

    import joblib, wool.joblib
    wool.joblib.register()
    with joblib.parallel_config(backend="wool", n_jobs=4):
        scores = cross_val_score(model, X, y, cv=5, n_jobs=4)

Theory of operation. joblib hands the backend batches of calls (picklable callables) and
waits on the futures `submit` returns. The backend submits each batch to a `wool.Executor`
over the pool current where `Parallel` runs (the one in the caller's context, else the
process's most recently opened pool still open): so an open pool, local or over a discovery,
serves every `Parallel` call inside it. With none open, each `Parallel` call opens a pool of
`n_jobs` workers (with the `WorkerPool` arguments given to `parallel_config`) and closes it at
its end. This module imports joblib only when `register()` is called.
"""

from __future__ import annotations

import os
from typing import Any

from ._pool import Executor, WorkerPool
from .caller import current_pool

__all__ = ["register"]

_backend: type[Any] | None = None


def register(name: str = "wool") -> None:
    """Make `joblib.parallel_config(backend="wool", ...)` (or `name`) run batches on wool
    workers. Backend arguments: `pool=` an open `WorkerPool` to use, or `WorkerPool`
    arguments for the pool each `Parallel` call opens when none is open. Raises
    `ImportError` if joblib is not installed."""
    from joblib import register_parallel_backend

    register_parallel_backend(name, backend_class())


def backend_class() -> type[Any]:
    """The backend class (made on first use: it subclasses joblib's base class)."""
    global _backend
    if _backend is None:
        _backend = _make_backend()
    return _backend


def _make_backend() -> type[Any]:
    from joblib.parallel import ParallelBackendBase

    class WoolBackend(ParallelBackendBase):  # type: ignore[misc]
        """joblib's batches as calls on wool workers (see the module docstring)."""

        supports_retrieve_callback = True
        supports_sharedmem = False
        uses_threads = False

        def __init__(
            self,
            pool: WorkerPool | None = None,
            nesting_level: int | None = None,
            inner_max_num_threads: int | None = None,
            **pool_args: Any,
        ) -> None:
            super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
            if pool is not None and not isinstance(pool, WorkerPool):
                raise TypeError(f"pool must be a wool.WorkerPool, not {type(pool).__name__}")
            self._pool = pool
            self._pool_args = pool_args
            self._executor: Executor | None = None
            self._owned = False

        def _open_pool(self) -> WorkerPool | None:
            if self._pool is not None:
                return self._pool
            entry = current_pool()
            pool = entry.pool if entry is not None else None
            return pool if isinstance(pool, WorkerPool) else None

        def effective_n_jobs(self, n_jobs: int | None) -> int:
            if n_jobs == 0:
                raise ValueError("n_jobs == 0 in Parallel has no meaning")
            if n_jobs is None:
                return 1
            if n_jobs < 0:
                pool = self._open_pool()
                available = len(pool.workers) if pool is not None else (os.cpu_count() or 1)
                return max(available + 1 + n_jobs, 1)
            return int(n_jobs)

        def configure(
            self, n_jobs: int | None = 1, parallel: Any = None, prefer: Any = None, require: Any = None, **kwargs: Any
        ) -> int:
            n = self.effective_n_jobs(n_jobs)
            pool = self._open_pool()
            if pool is not None:
                self._executor, self._owned = pool.executor(), False
            else:
                self._executor, self._owned = Executor(size=n, **self._pool_args), True
            self.parallel = parallel
            return n

        def submit(self, func: Any, callback: Any = None) -> Any:
            if self._executor is None:
                raise RuntimeError("the wool joblib backend was not configured (joblib calls configure first)")
            future = self._executor.submit(func)
            if callback is not None:
                future.add_done_callback(callback)
            return future

        def retrieve_result_callback(self, future: Any) -> Any:
            return future.result()

        def abort_everything(self, ensure_ready: bool = True) -> None:
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)
            if ensure_ready and self.parallel is not None:
                self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel)

        def terminate(self) -> None:
            executor, self._executor = self._executor, None
            if executor is not None and self._owned:
                executor.shutdown(wait=True)

    return WoolBackend
