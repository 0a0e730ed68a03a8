"""`wool.share(value)` and its handle, `wool.Shared`.

Theory of operation. `share` pickles the value once, in the process that calls it (its
owner), and writes it to a private shared-memory file (`_store`, laid out by `_layout`); the
handle it returns names that file, its owner and its host, and pickles to a few hundred bytes
whatever the value's size. Any process of the same user on the same host maps the file and
unpickles the value once (`_cache`); numpy arrays and other out-of-band buffers come out as
read-only views of the mapping. A worker given a handle as a top-level argument of a call gets
the value in its place (`substitute`), and remembers which handle it came from, so that the
routine passing that value on to a nested call sends the handle again, not the value.

Lifetime: the owner keeps a record of each value it shared (`_owned`), tied to the pool that was
current when it was shared; `release()`, the end of a `with` block, or the close of that pool
removes the file. A process that exits removes what it still owns; one that dies is cleaned up
after by the next `share` on the host (`_store.prune`).

Other hosts: a worker fetches the value from the caller of the call it was passed to (see
`_fetch`), once, and caches it like a value of its host.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import dataclasses
import os
import secrets
import sys
import threading
from pathlib import Path
from typing import Any, Generic, TypeVar

from .._errors import DispatchError, SerializationError, SharedReleased
from ..caller import current_mesh_var, shared_args_var
from . import _layout, _observe, _store
from ._cache import cache
from ._fetch import current_route, fetch

T = TypeVar("T")
MAX_TOMBSTONES = 10_000  # an owner keeps at most this many tombstones of values it released


@dataclasses.dataclass(slots=True)
class _Owned:
    path: Path
    size: int
    scope: object  # the mesh current when it was shared (None: none)


_owned: dict[str, _Owned] = {}
_tombstones: collections.deque[Path] = collections.deque()
_released: dict[str, str] = {}  # key -> where, for the values this process released (one per tombstone)
_lock = threading.Lock()
_me: tuple[int, int, str] | None = None  # pid, start time, host: what owns


def _identity() -> tuple[int, int, str]:
    global _me
    if _me is None or _me[0] != os.getpid():
        pid = os.getpid()
        _me = (pid, _store.start_time(pid) or 0, _store.host_id())
    return _me


def _site(what: str) -> str:
    """`what`, and the first place outside wool that led to it."""
    frame = sys._getframe(1)
    package = os.path.dirname(os.path.dirname(__file__))
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back  # type: ignore[assignment]
    where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
    return f"{what}{where} (process {os.getpid()})"


class Shared(Generic[T]):
    """A handle on a value shared with `wool.share`: small to pickle, whatever the value's
    size. As a top-level argument of a routine call it arrives as its value; anywhere else,
    `await handle.get()` (or `handle.get_blocking()` in a plain `def`) returns the value.
    `release()` frees it; so does leaving `with wool.share(value) as handle:`."""

    __slots__ = ("key", "owner_pid", "owner_start", "host", "uid", "directory", "size", "type_name")

    def __init__(
        self, key: str, owner_pid: int, owner_start: int, host: str, uid: int, directory: str, size: int, type_name: str
    ) -> None:
        self.key, self.owner_pid, self.owner_start, self.host = key, owner_pid, owner_start, host
        self.uid, self.directory, self.size, self.type_name = uid, directory, size, type_name

    def __reduce__(self) -> tuple[Any, ...]:
        site = _released.get(self.key)
        if site is not None:  # a call would fail on its worker, or, on another host, not notice
            raise SharedReleased(f"{self._describe()} was released {site}")
        return (Shared, tuple(getattr(self, name) for name in Shared.__slots__))

    def __repr__(self) -> str:
        return f"<wool.Shared {self.type_name} of {self.size} bytes, {self.key[:8]} from pid {self.owner_pid}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Shared) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def path(self) -> Path:
        return Path(self.directory) / _store.file_name(self.owner_pid, self.owner_start, self.key)

    def _describe(self) -> str:
        return f"shared value {self.key[:8]} ({self.type_name}, shared by pid {self.owner_pid})"

    def _here(self) -> bool:
        return _identity()[2] == self.host and self.uid == os.getuid()

    def get_blocking(self) -> T:
        """The value, for a plain `def` routine (running in a thread of its worker); see `get`.
        On the event loop's own thread, a value that must still be fetched from another host
        raises `DispatchError` (use `await handle.get()` there)."""
        if self._here():
            _observe.register()
            return cache.get(self.key, self.path, self.size, (self.owner_pid, self.owner_start), self._describe())  # type: ignore[no-any-return]
        value = cache.cached(self.key)
        if value is not cache.MISSING:
            return value  # type: ignore[no-any-return]
        route = current_route()
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        if route is None or on_loop:
            raise DispatchError(
                f"{self._describe()} is on another host and must be fetched: use `await handle.get()` in an async routine"
            )
        future = asyncio.run_coroutine_threadsafe(fetch(self.key, self.size, self._describe(), route), route.loop)
        return future.result()  # type: ignore[no-any-return]

    async def get(self) -> T:
        """The value (the same object for every call on this process while it is cached). On
        the host it was shared on, it is mapped from shared memory; on another, fetched once
        from the caller of the running call. Raises `wool.SharedReleased` or `wool.SharedLost`."""
        if self._here():
            return self.get_blocking()
        return await fetch(self.key, self.size, self._describe())  # type: ignore[no-any-return]

    def release(self) -> None:
        """Free the value: its shared memory is removed, and any later use of this handle,
        anywhere, raises `wool.SharedReleased` naming this place. Releasing twice is harmless."""
        _release(self, _site("by release()"))

    def __enter__(self) -> Shared[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        _release(self, _site("at the end of its `with` block"))


def _release(handle: Shared[Any], site: str) -> None:
    with _lock:
        owned = _owned.pop(handle.key, None)
    cache.drop(handle.key)
    if owned is None and _identity()[2] != handle.host:
        return
    if _store.remove(handle.path, site):
        _tomb(handle.key, handle.path, site)
        _observe.event("wool.share.release", handle.key, handle.size)


def _tomb(key: str, path: Path, site: str) -> None:
    with _lock:
        _released[key] = site
        _tombstones.append(path)
        old = _tombstones.popleft() if len(_tombstones) > MAX_TOMBSTONES else None
        if old is not None:
            _released.pop(old.stem.rpartition("-")[2], None)
    if old is not None:
        _store.readable.pop(old.stem.rpartition("-")[2], None)
        _store.forget_tombstones([old])


def share(value: T) -> Shared[T]:
    """Serialize `value` once, into memory that this user's processes on this host map
    without a copy, and return a handle for routine calls (see `wool.Shared`). It lives
    until `release()`, the end of `with wool.share(value) as handle:`, or the close of the
    `WorkerPool` current now. Raises `SerializationError` if `value` cannot be pickled."""
    pid, started, host = _identity()
    directory = _store.store_dir()
    _store.prune(directory)
    try:
        data, buffers = _layout.pickled(value)
    except Exception as e:
        raise SerializationError(f"the value to share could not be pickled: {type(e).__name__}: {e}") from e
    header, parts, total = _layout.layout(data, buffers)
    key = secrets.token_hex(16)
    handle: Shared[T] = Shared(key, pid, started, host, os.getuid(), str(directory), total, type(value).__qualname__)
    try:
        _store.write(handle.path, header, parts, total)
    except OSError as e:
        raise DispatchError(
            f"the value ({type(value).__qualname__}, {total} bytes) could not be shared: writing {handle.path} failed: {e}"
        ) from None
    with _lock:
        _owned[key] = _Owned(handle.path, total, current_mesh_var.get())
    _store.readable[key] = handle.path
    _observe.register()
    _observe.event("wool.share", key, total, **{"wool.share.type": handle.type_name})
    return handle


def release_scope(scope: object) -> int:
    """Release every value shared while `scope` (a pool's mesh) was current; how many."""
    with _lock:
        keys = [k for k, o in _owned.items() if o.scope is scope]
        mine = [(k, _owned.pop(k)) for k in keys]
    for key, owned in mine:
        cache.drop(key)
        site = _site("when the WorkerPool it was shared in closed")
        if _store.remove(owned.path, site):
            _tomb(key, owned.path, site)
    return len(mine)


def shared_bytes() -> int:
    """Bytes of shared memory this process owns now."""
    with _lock:
        return sum(o.size for o in _owned.values())


_observe.owned_bytes[:] = [shared_bytes]


@atexit.register
def _at_exit() -> None:
    with _lock:
        owned = list(_owned.values())
        tombs = list(_tombstones)
        _owned.clear()
        _tombstones.clear()
    for o in owned:
        _store.remove(o.path, None)
    _store.forget_tombstones(tombs)


def shared_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether a call has a top-level `Shared` argument."""
    return any(type(a) is Shared for a in args) or any(type(v) is Shared for v in kwargs.values())


async def substitute(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A call's arguments with each top-level `Shared` replaced by its value. Each value is
    remembered with its handle in the call's context (`shared_args_var`), so that passing it
    on to a nested call sends the handle again."""
    table: dict[int, tuple[object, object]] = {}

    async def value(a: Any) -> Any:
        if type(a) is not Shared:
            return a
        v = await a.get()
        table[id(v)] = (v, a)
        return v

    args = tuple([await value(a) for a in args])
    kwargs = {k: await value(v) for k, v in kwargs.items()}
    shared_args_var.set(table)
    return args, kwargs
