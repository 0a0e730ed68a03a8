"""What Python says about a routine called but never awaited: how to run it instead.

Calling a routine only makes a coroutine; nothing is sent until it is awaited. Python warns
about a coroutine dropped unawaited ("coroutine 'add' was never awaited") through
`warnings._warn_unawaited_coroutine`, which the interpreter looks up on the `warnings`
module each time. Wrapping that function, for routines' coroutines only (recognised by their
wrapper's code object), lets the warning say what to do: `pool.run(...)` from synchronous
code, `await` in async code. Other coroutines keep Python's own message. Checking the code
object at the warning, rather than the loop at the call, keeps the call path as it was (and
the routine a genuine `async def`).
"""

from __future__ import annotations

import linecache
import traceback
import warnings
from collections.abc import Callable
from types import CodeType
from typing import Any

_routine_codes: set[CodeType] = set()
_python_warning: Callable[[Any], None] | None = getattr(warnings, "_warn_unawaited_coroutine", None)


def register(wrapper: Callable[..., Any]) -> None:
    """Word the warning for coroutines of `wrapper` (a routine's `async def` wrapper)."""
    code = getattr(wrapper, "__code__", None)
    if isinstance(code, CodeType):
        _routine_codes.add(code)
    if _python_warning is not None and getattr(warnings, "_warn_unawaited_coroutine", None) is _python_warning:
        warnings._warn_unawaited_coroutine = _warn  # type: ignore[attr-defined]


def _warn(coro: Any) -> None:
    name = coro.__qualname__
    if getattr(coro, "cr_code", None) not in _routine_codes:
        # Python's own words, warned from here so that the warning points at the same frame
        # as Python's would (calling Python's function would add one).
        message = f"coroutine {name!r} was never awaited"
        origin = getattr(coro, "cr_origin", None)
        if origin:
            frames = traceback.StackSummary.from_list([(f, n, fn, linecache.getline(f, n)) for f, n, fn in reversed(origin)])
            message += "\nCoroutine created at (most recent call last)\n" + "".join(frames.format()).rstrip("\n")
        warnings.warn(message, RuntimeWarning, stacklevel=2, source=coro)
        return
    warnings.warn(
        f"routine {name!r} was called but never awaited, so it never ran: in synchronous code run it with "
        f"`pool.run({name}(...))` inside `with wool.WorkerPool(...) as pool:`; in async code, `await {name}(...)`",
        RuntimeWarning,
        stacklevel=2,
        source=coro,
    )
