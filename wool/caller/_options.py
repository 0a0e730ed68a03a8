"""Per-call options, block-scoped: `with wool.options(tags=..., timeout=...):`.

Options are read when a routine is called (captured at call time, like any context
variable) and travel with the call, so the routine's own nested calls honour them too. A
timeout becomes a deadline; the deadline travels as the seconds remaining (clocks of two
machines need not agree) and bounds every call below it: a nested call can shorten it, never
extend it. `wool.remaining()` reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Hashable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

from .. import protocol as p
from .._seconds import check_optional_seconds
from ._affinity import key_digest
from ._blocking import loop_now

_KEEP: Any = object()


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """The options in force, as `with wool.options(...) as opts:` gives them.

    Frozen: a block makes a new one from the enclosing block's, and leaving it restores that.

    Attributes:
        tags: Tags a worker must have (in addition to the routine's own).
        timeout: Seconds each routine call may take, or `None` for no limit.
        affinity: The digest of the affinity key (the key itself never travels), or `None`.
        hedge_after: Seconds after which an idempotent call is sent to a second worker, or
            `None`.
    """

    tags: frozenset[str] = frozenset()
    timeout: float | None = None
    affinity: bytes | None = None  # the digest of the affinity key (see `_affinity`)
    hedge_after: float | None = None  # not inherited by nested calls (see `options`)
    priority: int = 0  # higher first where calls wait: for room in a window, or for a slot


NO_OPTIONS = Options()
options_var: ContextVar[Options] = ContextVar("wool_options", default=NO_OPTIONS)
# The current call's deadline on this process's loop clock (`loop.time()`), if it has one.
deadline_var: ContextVar[float | None] = ContextVar("wool_deadline", default=None)


def check_tags(tags: str | Iterable[str], what: str = "tags") -> frozenset[str]:
    """`tags` as a frozenset; a single string is one tag. `TypeError` names a bad one."""
    if isinstance(tags, str):
        tags = (tags,)
    try:
        found = frozenset(tags)
    except TypeError:
        raise TypeError(f"{what} must be a string or an iterable of strings, not {type(tags).__name__}") from None
    for tag in found:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"{what} must be non-empty strings, got {tag!r}")
    return found


def check_priority(priority: int) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise TypeError(f"priority must be an int, not {type(priority).__name__}")
    if not -p.MAX_PRIORITY <= priority <= p.MAX_PRIORITY:
        raise ValueError(f"priority must be within ±{p.MAX_PRIORITY}, got {priority}")
    return priority


def check_timeout(timeout: float | None) -> float | None:
    return check_optional_seconds(timeout, "timeout")


@contextlib.contextmanager
def options(
    *,
    tags: str | Iterable[str] = _KEEP,
    timeout: float | None = _KEEP,
    affinity: Hashable | None = _KEEP,
    hedge_after: float | None = _KEEP,
    priority: int = _KEEP,
) -> Iterator[Options]:
    """Options for the routine calls made in this block, and for the nested calls those
    routines make on workers. An option not given keeps its enclosing value.

    Args:
        tags: A worker must have all of them (as well as the tags of the routine called);
            the block's set replaces the enclosing block's. A single string is one tag.
        timeout: Seconds each call may take before it is cancelled, with its whole tree of
            nested calls, and raises `TimeoutError`; `None` for no limit. Within a call that
            has a deadline, no nested call outlives it.
        affinity: A hashable, picklable key; every call with the same key goes to the same
            worker (among those with the right tags) while it lives, by rendezvous hashing,
            so a worker joining or leaving moves only the keys it must. `None` clears it.
        hedge_after: Seconds after which an idempotent call
            (`@wool.routine(idempotent=True)`) that has not answered is sent to a second
            worker; the first answer wins and the other copy is cancelled. Calling a routine
            that is not idempotent in the block raises `TypeError` at the call. Unlike the
            other options it applies only to the calls made in the block, not to the nested
            calls those routines make (they need not be idempotent).
        priority: An int, 0 by default, higher first: where calls wait (for room in this
            process's window on a worker, or for a slot on a worker at `max_calls`), a call
            of a higher priority goes before those of lower ones, and in order of arrival
            within one. Running calls are never pre-empted. It travels into nested calls.

    Yields:
        The `Options` in force inside the block.

    Raises:
        TypeError: A tag is not a non-empty string, the affinity key is not hashable or not
            picklable, a number of seconds is not a number, or the priority is not an int.
        ValueError: A number of seconds is negative or not finite, or the priority is
            beyond ±(2**31 - 1).

    Example:
        ```python
        with wool.options(tags={"gpu"}, timeout=30):
            await train(model)             # on a worker tagged "gpu", cancelled after 30 s
        with wool.options(affinity=user_id):
            await recommend(user_id)       # every call for this user on the same worker
        ```
    """
    current = options_var.get()
    new = Options(
        current.tags if tags is _KEEP else check_tags(tags),
        current.timeout if timeout is _KEEP else check_timeout(timeout),
        current.affinity if affinity is _KEEP else (None if affinity is None else key_digest(affinity)),
        current.hedge_after if hedge_after is _KEEP else check_optional_seconds(hedge_after, "hedge_after"),
        current.priority if priority is _KEEP else check_priority(priority),
    )
    token = options_var.set(new)
    try:
        yield new
    finally:
        options_var.reset(token)


def deadline(loop: asyncio.AbstractEventLoop, timeout: float | None) -> float | None:
    """The deadline of a call made now: the current one, shortened by `timeout`."""
    current = deadline_var.get()
    if timeout is None:
        return current
    mine = loop.time() + timeout
    return mine if current is None else min(current, mine)


def remaining() -> float | None:
    """The seconds left before the current call's deadline, inside a routine on a worker.

    The deadline is the one its caller set with `wool.options(timeout=...)`, directly or
    higher up the tree of calls. A routine uses it to size its own work (a smaller batch,
    an earlier answer) before the deadline cancels it.

    Returns:
        The seconds left, never negative; `None` when the call has no deadline, and outside
            routines.

    Example:
        ```python
        @wool.routine
        async def search(query: str) -> list[str]:
            left = wool.remaining()
            depth = 3 if left is None or left > 1.0 else 1
            return await deep_search(query, depth)
        ```
    """
    current = deadline_var.get()
    if current is None:
        return None
    now = loop_now()  # a plain `def` routine's thread reads its worker loop's clock
    return None if now is None else max(0.0, current - now)
