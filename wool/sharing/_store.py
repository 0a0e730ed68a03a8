"""Where shared values live on a host: files only this user can open, mapped read-only.

Theory of operation. A shared value is one file, written once by the process that shared it
(its owner) and mapped read-only by every process of the same user on the same host that
needs it; the kernel keeps one copy of its pages however many processes map it. The file is in
a private directory (this user's, mode 0700, checked without following links): no other user
can open it, list it, or plant a file there. The directory is on a tmpfs, so the pages are
memory, never written to a disk: `shared` in the runtime directory if that is a tmpfs (or
was chosen explicitly with WOOL_RUNTIME_DIR), else `/dev/shm/wool-$UID` (a 0700 directory of
ours, whose name others may guess but cannot enter), else the runtime directory anyway.

Why files and not memfds: a memfd reaches another process only over a Unix socket's
SCM_RIGHTS (ZeroMQ cannot carry it) or through `/proc/<pid>/fd/N`, a magic link that cannot be
opened without following it. A file can be, and is checked on the opened descriptor (a
regular file of ours, closed to others, of the size its handle says). What a memfd would give
for free, freeing the memory when its owner dies, is done here by the names: each file is
named after its owner's pid and start time, and every `share` first removes the files whose
owner is gone.

Releasing a value removes its file (processes that still map it keep their pages until they
unmap them; nobody can open it again) and leaves a small tombstone naming where it was
released, so that a later use says so.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from ..discovery import private_dir, runtime_dir

TMPFS = ("tmpfs", "ramfs")
MAX_TOMBSTONE = 4096
_NAME = re.compile(r"share-(\d+)-(\d+)-([0-9a-f]{32})\.(data|released)")
_OPEN = os.O_NOFOLLOW | os.O_CLOEXEC

# key -> the file this process may answer a worker's fetch of that value from: values it made,
# mapped, or fetched itself (see `_fetch`).
readable: dict[str, Path] = {}


def _filesystem(path: Path) -> str | None:
    """The type of the filesystem `path` is on (the longest mount point above it)."""
    best, kind = "", None
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                if (str(path) == point or str(path).startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return None
    return kind


def store_dir() -> Path:
    """The private directory shared values are written to (see the module docstring)."""
    runtime = runtime_dir()
    if os.environ.get("WOOL_RUNTIME_DIR") or _filesystem(runtime) in TMPFS:
        return private_dir(runtime / "shared")
    shm = Path("/dev/shm")
    if _filesystem(shm) in TMPFS:
        with contextlib.suppress(Exception):
            return private_dir(shm / f"wool-{os.getuid()}")
    return private_dir(runtime / "shared")


def host_id() -> str:
    """This host as its processes see it: the kernel's boot id, and the mount and pid
    namespaces (a path or a pid means the same thing only within both), and the network
    namespace (a container with a network of its own is treated as a host of its own, which
    is also what lets tests stand namespaces in for hosts)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read(64).strip()
    except OSError:
        boot = "unknown"
    spaces = []
    for space in ("mnt", "pid", "net"):
        try:
            spaces.append(str(os.stat(f"/proc/self/ns/{space}").st_ino))
        except OSError:
            spaces.append("?")
    return ":".join([boot, *spaces])


def start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), None if there is no such process:
    with its pid, what names a process even after its pid is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read(4096)
    except OSError:
        return None
    try:
        return int(text[text.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def alive(pid: int, started: int) -> bool:
    return start_time(pid) == started


def file_name(pid: int, started: int, key: str, released: bool = False) -> str:
    return f"share-{pid}-{started}-{key}.{'released' if released else 'data'}"


def write(path: Path, header: bytes, parts: Iterable[tuple[int, memoryview | bytes]], total: int) -> None:
    """Write a new file at `path` (mode 0600, never an existing one), `header` at 0 and
    each part at its offset; removed again if writing fails (a full tmpfs)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN, 0o600)
    try:
        os.ftruncate(fd, total)
        for offset, part in [(0, header), *parts]:
            view = memoryview(part).cast("B")
            while view.nbytes:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)


def open_mapped(path: Path, size: int) -> mmap.mmap:
    """A read-only mapping of the shared file at `path`, after checking it on the opened
    descriptor: a regular file of this user's, closed to others, of exactly `size` bytes.
    Raises `FileNotFoundError` if it is gone, `PermissionError` naming anything else wrong."""
    try:
        fd = os.open(path, os.O_RDONLY | _OPEN)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise PermissionError(f"wool will not map the shared value at {path}: it is a symbolic link") from None
        raise
    try:
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = "it is not a regular file"
        elif info.st_uid != os.getuid():
            problem = f"it belongs to uid {info.st_uid}, not to this user (uid {os.getuid()})"
        elif stat.S_IMODE(info.st_mode) & 0o077:
            problem = f"it is open to other users (mode {stat.S_IMODE(info.st_mode):04o})"
        elif info.st_size != size:
            problem = f"it has {info.st_size} bytes, not the {size} its handle says"
        if problem is not None:
            raise PermissionError(f"wool will not map the shared value at {path}: {problem}")
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    finally:
        os.close(fd)


def remove(path: Path, site: str | None) -> bool:
    """Remove a shared file; with `site`, leave a tombstone saying where it was released.
    False if it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    if site is not None:
        tomb = path.with_suffix(".released")
        with contextlib.suppress(OSError):
            fd = os.open(tomb, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _OPEN, 0o600)
            try:
                os.write(fd, site.encode("utf-8", "replace")[:MAX_TOMBSTONE])
            finally:
                os.close(fd)
    return True


def released_at(path: Path) -> str | None:
    """Where the value at `path` was released (its tombstone), None if it has none."""
    try:
        fd = os.open(path.with_suffix(".released"), os.O_RDONLY | _OPEN)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            return None
        return os.read(fd, MAX_TOMBSTONE).decode("utf-8", "replace")
    finally:
        os.close(fd)


def prune(directory: Path) -> int:
    """Remove the files (values and tombstones) of owners that are gone; how many."""
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        match = _NAME.fullmatch(name)
        if match and not alive(int(match[1]), int(match[2])):
            with contextlib.suppress(OSError):
                os.unlink(directory / name)
                removed += 1
    return removed


def forget_tombstones(paths: Iterable[Path]) -> None:
    """Remove the tombstones of values whose owner is ending."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path.with_suffix(".released"))
