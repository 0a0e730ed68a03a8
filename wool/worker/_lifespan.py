"""A worker's lifespan: an async context manager entered once before the worker serves its
first call and exited after its last one.

`WorkerPool(lifespan=factory)` and `python -m wool.worker --lifespan module:attr` name a
zero-argument callable returning an async context manager (typically a function decorated
with `contextlib.asynccontextmanager`). What entering it gives is `wool.state()` on that
worker. Entering runs with the worker's mesh up (its own server serves, and it follows its
discovery namespace), so the lifespan can call routines; the worker publishes itself only
once the lifespan was entered, so no outside caller reaches it before `wool.state()` is ready.

If entering raises, the worker does not start: `LifespanError` (a `WorkerStartError`) carries
the user's exception as `__cause__`. Exiting is bounded by what is left of the grace period
(at least `MIN_EXIT` seconds); an exception or a timeout there is logged, and the worker
still exits.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from .._errors import WorkerStartError

log = logging.getLogger("wool.worker")

MIN_EXIT = 1.0  # seconds a lifespan's exit may take even when the grace period is used up

LifespanFactory = Callable[[], AbstractAsyncContextManager[Any]]


class LifespanError(WorkerStartError):
    """Entering a worker's lifespan raised: the worker did not start. `__cause__` is what
    the lifespan raised."""


def describe(factory: object) -> str:
    module = getattr(factory, "__module__", None)
    name = getattr(factory, "__qualname__", None) or getattr(factory, "__name__", None)
    return f"{module}:{name}" if module and name else repr(factory)


def check_factory(factory: object) -> LifespanFactory:
    """`factory` if it is callable; `TypeError` naming it otherwise."""
    if not callable(factory):
        raise TypeError(
            f"lifespan must be a zero-argument callable returning an async context manager "
            f"(e.g. an @contextlib.asynccontextmanager function), not {factory!r}"
        )
    return factory


def load_factory(spec: str) -> LifespanFactory:
    """The factory named by `module:attr` (`attr` may be dotted). `ValueError` says what is
    wrong with `spec`; the import's own exception propagates (it names the module)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--lifespan must look like module:attr (for example myapp.workers:lifespan), got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"--lifespan {spec}: module {module_name} has no attribute {attr}") from None
    try:
        return check_factory(target)
    except TypeError as e:
        raise ValueError(f"--lifespan {spec}: {e}") from None


async def enter(factory: LifespanFactory) -> tuple[AbstractAsyncContextManager[Any], Any]:
    """Make and enter the lifespan: (the context manager, what it yielded). Raises
    `LifespanError` from whatever the factory or the entry raised."""
    name = describe(factory)
    try:
        manager = factory()
        if not (hasattr(manager, "__aenter__") and hasattr(manager, "__aexit__")):
            raise TypeError(
                f"lifespan {name} returned {type(manager).__name__}, not an async context manager "
                "(decorate it with @contextlib.asynccontextmanager)"
            )
        value = await manager.__aenter__()
    except asyncio.CancelledError:
        raise
    except BaseException as e:
        raise LifespanError(f"the worker's lifespan {name} raised {type(e).__name__}: {e}") from e
    return manager, value


async def leave(manager: AbstractAsyncContextManager[Any], factory: object, timeout: float) -> None:
    """Exit the lifespan within `timeout` seconds (at least `MIN_EXIT`). Never raises: what
    goes wrong is logged, and the worker goes on stopping."""
    name = describe(factory)
    try:
        async with asyncio.timeout(max(timeout, MIN_EXIT)):
            await manager.__aexit__(None, None, None)
    except TimeoutError:
        log.error("the worker's lifespan %s did not exit within %g s; stopping without it", name, max(timeout, MIN_EXIT))
    except Exception:
        log.exception("the worker's lifespan %s raised on exit", name)
