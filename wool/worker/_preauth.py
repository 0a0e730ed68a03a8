"""A keyed worker's budget for peers that have not authenticated: how many connections may be
in their CURVE handshake at once, and how many bytes each may send before it completes.

Theory of operation. libzmq's decoder allocates what a frame header claims (up to the
socket's max message size) and fills it as the bytes arrive, also before the handshake
completes, and that limit is the socket's, fixed when it binds: the same for a caller's
128 MiB argument as for a stranger's first frame. So 32 strangers each sending a 128 MiB
frame after their greeting, in place of HELLO, held 4 GiB of a worker for the handshake
interval; a shorter interval would not help, as such a frame arrives in a fraction of a
second over a fast link. wool cannot
reach into libzmq's connections, but it can watch them from outside: the socket's monitor
reports each accepted connection with its descriptor, and the kernel (`TCP_INFO`) tells how
many bytes the peer has sent on it and how many of the worker's have been acknowledged. A
CURVE server sends its greeting and WELCOME (`SERVER_BYTES_BEFORE_READY`) and nothing more
before the handshake succeeds, when READY follows; a client sends about 600 bytes before
then. So a connection is unauthenticated while the worker has sent no more than that, and
the guard, a thread of its own (a routine may block the event loop), enforces:
- at most `MAX_HANDSHAKES` connections in handshake: a new one past that evicts the oldest
  (refusing the newest would let a stranger holding the slots lock trusted callers out; a
  trusted handshake completes within milliseconds, so it is rarely the oldest);
- at most `MAX_PREAUTH_BYTES` received on a connection in handshake: past that it is cut.
What to cut is decided by `HandshakeBudget` (pure); `PreauthGuard` carries it out. Cutting is
`shutdown()` on a duplicate of the descriptor, which the guard holds while it
watches the connection (so a descriptor number libzmq reuses never points it at another):
libzmq reads end-of-file, closes the connection and frees what it allocated for it, and the
close resets the connection (`SO_LINGER` 0), so the kernel frees its buffers too.

This is enforced as bytes arrive, not before libzmq allocates: the guard registers each
connection in handshake with an edge-triggered epoll, so it wakes whenever bytes arrive on one
(whoever reads them) and checks that one; a connection may overshoot its limit by what arrives
before the guard's thread runs. Idle connections in handshake cost it nothing (polling 64 of
them every 2 ms cost a worker 10 % of a core). What that costs is measured in
`benchmarks/preauth_memory.py` and bounded in `tests/test_hostile_peers.py`. A limit that
holds before allocation needs a small max message size for every connection (and large values
split into parts): a protocol change.

Only for CURVE servers on TCP: without keys a peer is "authenticated" at once (and can call
anyway), and an `ipc://` socket has no TCP byte counts (in the private runtime directory it
admits only this user).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import secrets
import select
import socket
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from .._throttle import Throttle
from .._transport import context

log = logging.getLogger("wool.worker")

MAX_HANDSHAKES = 64  # connections in handshake at once; a new one past that evicts the oldest
MAX_PREAUTH_BYTES = 64 * 1024  # received on a connection before its handshake completes (a CURVE client sends ~600)
# What a CURVE server sends before READY: its greeting (64 bytes) and WELCOME (168). Measured
# with libzmq 4.3.5: 232 bytes before the handshake succeeds, 301 once READY is sent.
SERVER_BYTES_BEFORE_READY = 64 + 168
MONITOR_QUEUE = 100_000  # monitor events queued at most (about 100 bytes each)
_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
_TCP_INFO_SIZE = 136  # up to tcpi_bytes_received (Linux 4.1)
_BYTES_ACKED_AT = 120  # offsets in `struct tcp_info`: tcpi_bytes_acked, then tcpi_bytes_received


def tcp_progress(sock: socket.socket) -> tuple[int, int]:
    """(bytes this side sent that the peer acknowledged, bytes received) on `sock`."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    acked, received = struct.unpack_from("=QQ", info, _BYTES_ACKED_AT)
    return acked, received


def supported() -> bool:
    """Whether this kernel reports the byte counts the guard needs (Linux 4.1 and later)."""
    if not hasattr(socket, "TCP_INFO") or not hasattr(os, "dup"):
        return False
    try:
        with socket.socket() as probe:
            return len(probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)) >= _TCP_INFO_SIZE
    except OSError:
        return False


class Verdict(enum.Enum):
    WATCH = "still in handshake, within its budget"
    AUTHENTICATED = "its handshake completed: no longer limited"
    CUT = "over its budget"


class HandshakeBudget:
    """Which connections in handshake to cut, by a key per connection (pure: no sockets, no
    clock). Connections are remembered oldest first until they authenticate or are gone."""

    def __init__(self, max_handshakes: int = MAX_HANDSHAKES, max_bytes: int = MAX_PREAUTH_BYTES) -> None:
        self.max_handshakes = max_handshakes
        self.max_bytes = max_bytes
        self._pending: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._pending))

    def accepted(self, key: int) -> list[tuple[int, str]]:
        """`key` began its handshake: the connections to cut for it (the oldest, past the
        limit), each with the reason."""
        self._pending.pop(key, None)
        self._pending[key] = None
        cut: list[tuple[int, str]] = []
        while len(self._pending) > self.max_handshakes:
            oldest, _ = self._pending.popitem(last=False)
            cut.append((oldest, f"more than {self.max_handshakes} connections were in their handshake"))
        return cut

    def progress(self, key: int, sent_acked: int, received: int) -> tuple[Verdict, str]:
        """What to do with `key`, which the worker has sent `sent_acked` bytes (acknowledged)
        and received `received` bytes on; a connection authenticated or cut is forgotten."""
        if sent_acked > SERVER_BYTES_BEFORE_READY:
            self.gone(key)
            return Verdict.AUTHENTICATED, Verdict.AUTHENTICATED.value
        if received > self.max_bytes:
            self.gone(key)
            return Verdict.CUT, f"it sent {received} bytes before authenticating (at most {self.max_bytes})"
        return Verdict.WATCH, Verdict.WATCH.value

    def gone(self, key: int) -> None:
        self._pending.pop(key, None)


class PreauthGuard:
    """Watches `sock` (a CURVE ROUTER, not yet bound) from a thread of its own; `close()`
    before closing the socket. `cut` counts the connections it cut."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        *,
        max_handshakes: int = MAX_HANDSHAKES,
        max_bytes: int = MAX_PREAUTH_BYTES,
    ) -> None:
        self.budget = HandshakeBudget(max_handshakes, max_bytes)
        self.cut = 0
        self._sock = sock
        self._address = f"inproc://wool-preauth-{secrets.token_hex(8)}"
        self._dups: dict[int, socket.socket] = {}  # libzmq's fd -> our duplicate of it
        self._by_dup: dict[int, int] = {}  # our duplicate's fd -> libzmq's
        self._epoll = select.epoll()
        self._warnings = Throttle(log)
        self._wake_r, self._wake_w = os.pipe()
        self._ready = threading.Event()
        sock.monitor(self._address, _EVENTS)
        self._thread = threading.Thread(target=self._run, name="wool-preauth", daemon=True)
        self._thread.start()
        self._ready.wait()  # connected to the monitor before the socket binds: no event is lost

    def close(self) -> None:
        self._sock.disable_monitor()
        os.write(self._wake_w, b"x")
        self._thread.join()
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        monitor = context().socket(zmq.PAIR)
        try:
            monitor.setsockopt(zmq.LINGER, 0)
            # Deep enough that a burst of connections while this thread waits for the GIL loses
            # no ACCEPTED event (a connection never seen would never be limited).
            monitor.setsockopt(zmq.RCVHWM, MONITOR_QUEUE)
            monitor.connect(self._address)
            self._ready.set()
            monitor_fd = monitor.getsockopt(zmq.FD)
            assert isinstance(monitor_fd, int)
            self._epoll.register(monitor_fd, select.EPOLLIN)
            self._epoll.register(self._wake_r, select.EPOLLIN)
            arrived: list[int] = []
            while True:
                # The monitor's descriptor is edge-triggered and only says that its state may
                # have changed: drain it before every wait, or an event already queued is missed.
                while True:
                    try:
                        frames = monitor.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._on_event(parse_monitor_message(frames))
                for dup_fd in arrived:
                    fd = self._by_dup.get(dup_fd)
                    if fd is not None:
                        self._check(fd)
                ready = [fd for fd, _ in self._epoll.poll()]
                if self._wake_r in ready:
                    return
                arrived = [fd for fd in ready if fd != monitor_fd]
        except Exception:
            log.exception("the guard of unauthenticated connections failed: they are no longer limited")
        finally:
            self._ready.set()
            monitor.close(linger=0)
            for fd in list(self._dups):
                self._forget(fd)

    def _on_event(self, event: Mapping[str, Any]) -> None:
        kind, fd = event["event"], int(event["value"])
        if kind == zmq.EVENT_ACCEPTED:
            self._forget(fd)  # a number libzmq reused: the old connection is gone
            try:
                dup = socket.socket(fileno=os.dup(fd))
            except OSError:
                return  # closed already
            if dup.type != socket.SOCK_STREAM or dup.family not in (socket.AF_INET, socket.AF_INET6):
                dup.close()
                return
            while len(self.budget) >= self.budget.max_handshakes:
                oldest = next(iter(self.budget))
                if self._check(oldest) is Verdict.WATCH:  # not authenticated since: evict it
                    self.budget.gone(oldest)
                    self._cut(oldest, f"more than {self.budget.max_handshakes} connections were in their handshake")
            self._dups[fd] = dup
            self._by_dup[dup.fileno()] = fd
            # Edge-triggered: woken each time bytes arrive on it (libzmq reads them, not us).
            self._epoll.register(dup.fileno(), select.EPOLLIN | select.EPOLLET)
            self.budget.accepted(fd)
            self._check(fd)  # what arrived before it was registered
        elif kind == zmq.EVENT_DISCONNECTED:
            self._forget(fd)
        elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            for pending in self.budget:  # one of them authenticated: free its slot now
                self._check(pending)

    def _check(self, fd: int) -> Verdict:
        dup = self._dups.get(fd)
        if dup is None:
            self.budget.gone(fd)
            return Verdict.AUTHENTICATED
        try:
            acked, received = tcp_progress(dup)
        except OSError:
            self._forget(fd)
            return Verdict.AUTHENTICATED
        verdict, why = self.budget.progress(fd, acked, received)
        if verdict is Verdict.AUTHENTICATED:
            self._forget(fd)
        elif verdict is Verdict.CUT:
            self._cut(fd, why)
        return verdict

    def _cut(self, fd: int, why: str) -> None:
        dup = self._dups[fd]
        try:
            peer = dup.getpeername()
            # Linger 0: when libzmq closes it, a reset, which frees the kernel's buffers at once
            # and fails the peer's sends, rather than a FIN it may leave hanging.
            dup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            peer = None
        self._forget(fd)
        self.cut += 1
        self._warnings.warn("cut", "cut an unauthenticated connection from %r: %s", peer, why)

    def _forget(self, fd: int) -> None:
        self.budget.gone(fd)
        dup = self._dups.pop(fd, None)
        if dup is not None:
            self._by_dup.pop(dup.fileno(), None)
            # Explicitly: libzmq's descriptor keeps the connection, and so the registration, alive.
            with contextlib.suppress(OSError):
                self._epoll.unregister(dup.fileno())
            dup.close()
