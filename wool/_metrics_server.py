"""A bounded HTTP endpoint for Prometheus: `/metrics`, answered only with the bearer token.

Theory of operation. prometheus_client's own server spent a thread and a descriptor per
connection with no timeout and no cap: another local user holding 2,100 half-sent requests
exhausted a worker's descriptors, and libzmq then aborted the worker when it could not
accept a connection. This server is bounded instead:

- it runs its own event loop on a thread of its own, so a scrape is answered while a routine
  holds the worker's loop (CPU-bound code), which is when one wants to look;
- it accepts at most `MAX_CONNECTIONS` connections at once; the rest wait in the kernel's
  listen backlog, where they cost this process no descriptor;
- each connection has `READ_TIMEOUT` seconds to send a request head of at most `MAX_HEAD`
  bytes and `WRITE_TIMEOUT` seconds to take the answer, then it is closed: one request per
  connection (`Connection: close`), so nothing lingers;
- it accepts nothing while fewer than `DESCRIPTOR_RESERVE` descriptors are free under the
  soft limit: those are ZeroMQ's, and a scrape can wait;
- every request must carry `Authorization: Bearer TOKEN`; without it the answer is 401 and
  not a byte of the metrics (see `wool.worker` for where the token lives).

What to answer is decided by `answer`, a pure function of the request head; the loop only
reads, writes and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import os
import resource
import socket
import threading
from collections.abc import Callable

MAX_CONNECTIONS = 8  # served at once; a scrape takes one for a few milliseconds
READ_TIMEOUT = 5.0  # seconds for a connection to send its request head
WRITE_TIMEOUT = 5.0  # seconds for it to take the answer
MAX_HEAD = 8192  # bytes of request line and headers
DESCRIPTOR_RESERVE = 64  # descriptors left free for ZeroMQ: no accept below this
RESERVE_RETRY = 0.5  # seconds between two looks at the descriptors while at the reserve
BACKLOG = 64  # connections the kernel queues for us (they hold none of our descriptors)

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _response(status: str, body: bytes, extra: str = "", *, head_only: bool = False) -> bytes:
    content_type = _CONTENT_TYPE if status.startswith("200") else "text/plain; charset=utf-8"
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    return head.encode() + (b"" if head_only else body)


def answer(head: bytes, token: str, render: Callable[[], bytes]) -> bytes:
    """The whole HTTP response to a request whose head (request line and headers, without
    the blank line) is `head`. The metrics (`render()`) only for `GET`/`HEAD /metrics` with
    `Authorization: Bearer TOKEN`."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return _response("400 Bad Request", b"not an HTTP/1.x request\n")
    method, target = parts[0], parts[1]
    authorization = b""
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            return _response("400 Bad Request", b"malformed header\n")
        if name.strip().lower() == b"authorization":
            authorization = value.strip()
    if not hmac.compare_digest(authorization, b"Bearer " + token.encode()):
        return _response(
            "401 Unauthorized",
            b"a bearer token is required (see wool.metrics.token_path())\n",
            'WWW-Authenticate: Bearer realm="wool"\r\n',
        )
    if method not in (b"GET", b"HEAD"):
        return _response("405 Method Not Allowed", b"GET only\n", "Allow: GET, HEAD\r\n")
    if target.partition(b"?")[0] not in (b"/metrics", b"/"):
        return _response("404 Not Found", b"the metrics are at /metrics\n")
    return _response("200 OK", render(), head_only=method == b"HEAD")


def free_descriptors() -> int | None:
    """Descriptors this process may still open under its soft limit (None: cannot tell)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        return None
    return soft - used


def bind(port: int, address: str) -> socket.socket:
    """A listening TCP socket at `address`:`port` (0: a free port). Raises `OSError` naming
    the address and port when it cannot be bound (taken, or not an address of this host)."""
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, where = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise OSError(e.errno, f"cannot serve metrics on {address}:{port}: {e.strerror or e}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        taken = " (the port is taken: choose another, or 0 for a free one)" if e.errno == errno.EADDRINUSE else ""
        raise OSError(e.errno, f"cannot serve metrics on {address}:{port}: {e.strerror or e}{taken}") from None
    return sock


class MetricsServer:
    """Serves `render()` at http://ADDRESS:PORT/metrics to requests bearing `token`, from a
    thread of its own, until `close()`. Binds in the constructor (so its errors are the
    caller's): `OSError` naming the port when it cannot."""

    def __init__(self, port: int, address: str, token: str, render: Callable[[], bytes]) -> None:
        if not token:
            raise ValueError("the metrics endpoint needs a token")
        self._sock = bind(port, address)
        self._token = token
        self._render = render
        host, bound = self._sock.getsockname()[:2]
        self.port: int = bound
        self.address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        self.open_connections = 0  # what the endpoint holds right now
        self.deferred = 0  # times it left connections waiting to keep the descriptor reserve
        self._loop = asyncio.new_event_loop()
        self._main: asyncio.Task[None] | None = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="wool-metrics", daemon=True)
        self._thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._main = self._loop.create_task(self._serve())
        self._loop.call_soon(started.set)
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._main)
        self._loop.close()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(MAX_CONNECTIONS)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                free = free_descriptors()
                if free is not None and free < DESCRIPTOR_RESERVE:
                    self.deferred += 1
                    slots.release()
                    await asyncio.sleep(RESERVE_RETRY)
                    continue
                try:
                    conn, _ = await loop.sock_accept(self._sock)
                except OSError:  # EMFILE and the like: the reserve above should prevent it
                    slots.release()
                    await asyncio.sleep(RESERVE_RETRY)
                    continue
                self.open_connections += 1
                task = loop.create_task(self._handle(conn))
                tasks.add(task)

                def done(task: asyncio.Task[None]) -> None:
                    tasks.discard(task)
                    self.open_connections -= 1
                    slots.release()

                task.add_done_callback(done)
        finally:
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._sock.close()

    async def _handle(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await _read_head(loop, conn)
            if head is None:
                return
            response = answer(head, self._token, self._render)
            async with asyncio.timeout(WRITE_TIMEOUT):
                await loop.sock_sendall(conn, response)
        except (TimeoutError, OSError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        """Stop serving: close every connection and the listening socket, join the thread."""
        if self._thread.is_alive():
            main = self._main
            if main is not None:
                self._loop.call_soon_threadsafe(main.cancel)
            self._thread.join(timeout=10)


async def _read_head(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes | None:
    """The request head (without its blank line), or None if the peer closed first or sent
    more than `MAX_HEAD` bytes without ending it."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            return None
        chunk = await loop.sock_recv(conn, 4096)
        if not chunk:
            return None
        data += chunk
    return data.partition(b"\r\n\r\n")[0]
