"""Shared values across hosts: fetched once per process, in parts, from the caller of the call.

Theory of operation. A caller has only DEALER sockets (it listens nowhere), so a worker on
another host cannot connect to the owner of a value. But the call that needs the value came
over a connection the caller opened and authenticated: the worker asks back along it. It sends
a `fetch` (a reply kind, tagged with the call's id) for the next part of the value's laid-out
bytes, at most its own max message size, and the caller answers with a `part` (a request kind)
read from its copy: its own file if it made the value, or the copy it mapped or fetched if a
handle it was given went on to a nested call. So a value travels hop by hop down the chain of
calls that passed it on, once per process, and never to a process that was not sent its handle.

The worker writes the parts into a private file of its own (the same layout, in the same
private directory: see `_store`) and maps it as a value made on its host would be; the cache
(`_cache`) then treats it like any other, and removes the file when it drops the value. All
the calls that need a value while it is being fetched wait for that one fetch.

What a worker's call offers for asking its caller is a `Route`, set by the worker in the
call's context (`fetch_route_var`); the caller's side is `serve`, which the caller's
connections call for each `fetch` they receive (installed in `wool.caller` at import).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Awaitable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol

from .. import protocol as p
from .._errors import DispatchError, SharedLost, SharedReleased
from . import _observe, _store
from ._cache import cache

PART_MAX = 8 << 20  # bytes per part at most (and at most the worker's max message size)


PART_TIMEOUT = 60.0  # seconds a caller may take to answer one fetch (a live one answers at once)


class Host(Protocol):
    """What a worker offers its calls for fetching: its server."""

    max_message_size: int
    loop: asyncio.AbstractEventLoop

    def fetch_part(self, identity: bytes, call_id: int, key: str, offset: int, length: int) -> Awaitable[p.Part]: ...


class Route:
    """How one call on a worker asks its caller for parts of a shared value."""

    __slots__ = ("host", "identity", "call_id", "loop")

    def __init__(self, host: Host, identity: bytes, call_id: int) -> None:
        self.host, self.identity, self.call_id = host, identity, call_id
        self.loop = host.loop

    async def fetch_part(self, key: str, offset: int, length: int) -> p.Part:
        try:
            async with asyncio.timeout(PART_TIMEOUT):
                return await self.host.fetch_part(self.identity, self.call_id, key, offset, length)
        except TimeoutError:
            raise DispatchError(f"the caller did not answer a fetch of a shared value within {PART_TIMEOUT:g} s") from None


# Set by the worker in each call's context: (its server, the caller's identity, the call id),
# a tuple because it is set on every call and used on few (`current_route` makes the `Route`).
fetch_route_var: ContextVar[tuple[Host, bytes, int] | None] = ContextVar("wool_fetch_route", default=None)


def current_route() -> Route | None:
    """How the running call asks its caller for a shared value (None: not in a worker's call)."""
    found = fetch_route_var.get()
    return Route(*found) if found is not None else None


_fetching: dict[str, asyncio.Future[None]] = {}


async def fetch(key: str, size: int, describe: str, route: Route | None = None) -> Any:
    """The value of `key` (laid out in `size` bytes), fetched from the running call's caller
    (or along `route`) if this process does not have it yet; concurrent calls share one fetch."""
    while True:
        value = cache.cached(key)
        if value is not cache.MISSING:
            return value
        running = _fetching.get(key)
        if running is None:
            break
        await asyncio.shield(running)  # its failure is its starter's to raise; then look again
    route = route or current_route()
    if route is None:
        raise DispatchError(f"{describe} is on another host, and can only be fetched from inside a routine call it was passed to")
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    _fetching[key] = done
    try:
        parts = cache.stats.parts
        path = await _download(route, key, size, describe)
        value = cache.put(key, path, size, local=True)
        _observe.register()
        _observe.event("wool.share.fetch", key, size, **{"wool.share.parts": cache.stats.parts - parts})
        return value
    finally:
        del _fetching[key]
        done.set_result(None)


async def _download(route: Route, key: str, size: int, describe: str) -> Path:
    me = os.getpid()
    directory = _store.store_dir()
    room = os.statvfs(directory)
    if size > room.f_bavail * room.f_frsize:  # refused before anything is asked or written
        raise DispatchError(f"{describe} has {size} bytes, more than the {room.f_bavail * room.f_frsize} free in {directory}")
    path = directory / _store.file_name(me, _store.start_time(me) or 0, key)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a copy left by an earlier fetch that failed midway
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        offset, step = 0, max(1, min(PART_MAX, route.host.max_message_size))
        while offset < size:
            part = await route.fetch_part(key, offset, min(step, size - offset))
            if part.problem is p.ShareProblem.RELEASED:
                raise SharedReleased(f"{describe} was released {part.detail}".rstrip())
            if part.problem is p.ShareProblem.LOST:
                raise SharedLost(f"{describe} is lost: {part.detail}")
            if part.problem is not p.ShareProblem.NONE:
                raise DispatchError(f"{describe} could not be fetched from the caller: {part.detail}")
            if part.total != size or part.offset != offset or not 0 < len(part.data) <= size - offset:
                raise DispatchError(f"{describe}: the caller sent a part that does not fit (at {part.offset} of {part.total})")
            cache.stats.parts += 1
            view = memoryview(part.data)
            while view.nbytes:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    return path


def serve(msg: p.Fetch, limit: int) -> p.Part:
    """The answer to a worker's `fetch`: the part asked for (at most `limit` bytes), or why
    there is none. Reads only the files of values this process made or was given."""
    path = _store.readable.get(msg.key)
    if path is None:
        return p.Part(msg.call_id, msg.key, msg.offset, 0, b"", p.ShareProblem.UNAVAILABLE, "the caller does not have it")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        site = _store.released_at(path)
        if site is not None:
            return p.Part(msg.call_id, msg.key, msg.offset, 0, b"", p.ShareProblem.RELEASED, site)
        return p.Part(msg.call_id, msg.key, msg.offset, 0, b"", p.ShareProblem.LOST, "its owner has exited")
    except OSError as e:
        return p.Part(msg.call_id, msg.key, msg.offset, 0, b"", p.ShareProblem.UNAVAILABLE, str(e))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            return p.Part(msg.call_id, msg.key, msg.offset, 0, b"", p.ShareProblem.UNAVAILABLE, "not a file of this user's")
        length = max(0, min(msg.length, limit, info.st_size - msg.offset))
        data = os.pread(fd, length, msg.offset) if length else b""
        return p.Part(msg.call_id, msg.key, msg.offset, info.st_size, data)
    finally:
        os.close(fd)
