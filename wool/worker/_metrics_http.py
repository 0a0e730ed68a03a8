"""A worker's `/metrics` endpoint: Prometheus text over HTTP, on loopback unless told otherwise,
answered only to requests bearing this user's metrics token.

Theory of operation. `Exposition.start` turns on the worker's metrics (`wool._metrics`), reads
the gauges from the server's own bookkeeping when scraped, counts the connections open to the
server's socket from its ZeroMQ monitor (accepted minus disconnected), and serves wool's
registry (`wool.metrics.REGISTRY`) with the bounded server of `wool._metrics_server`, on a
thread of its own. The port it bound (0: any free port) is published with the worker as the
tag `metrics=HOST:PORT`, so a pool's spawned workers can be found by whatever scrapes them.

A loopback port is open to every local user (`/proc/net/tcp` even lists it), while the
worker itself is not: so the endpoint answers only with the bearer token kept in
`RUNTIME_DIR/metrics.token`, a file as private as the worker's socket (this user's, 0600, in
the 0700 runtime directory). Whoever can read it can call the worker anyway; Prometheus,
run as this user, reads it with `authorization: {credentials_file: ...}`. The first process
that needs it writes it (whole, then linked into place, so no reader sees half a token).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

import zmq
from zmq.utils.monitor import parse_monitor_message

from .. import _metrics
from .._metrics_server import MetricsServer
from .._transport import SocketDriver
from ..discovery import DiscoveryError, runtime_dir
from ._server import Server

DEFAULT_METRICS_ADDRESS = "127.0.0.1"
TAG_PREFIX = "metrics="
TOKEN_FILE = "metrics.token"
_TOKEN = re.compile(r"[0-9a-f]{64}")


def token_path() -> Path:
    """Where this user's metrics token is kept: `RUNTIME_DIR/metrics.token`."""
    return runtime_dir() / TOKEN_FILE


def _read_token(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DiscoveryError(f"cannot read the metrics token {path}: {e}; remove it and wool writes a new one") from None
    try:
        info = os.fstat(fd)
        problem = (
            "it is not a regular file"
            if not stat.S_ISREG(info.st_mode)
            else f"it belongs to uid {info.st_uid}, not to this user"
            if info.st_uid != os.getuid()
            else f"it is open to other users (mode {stat.S_IMODE(info.st_mode):04o})"
            if stat.S_IMODE(info.st_mode) & 0o077
            else None
        )
        text = os.read(fd, 256) if problem is None else b""
    finally:
        os.close(fd)
    if problem is None and not _TOKEN.fullmatch(text.decode(errors="replace").strip()):
        problem = "it does not hold a token wool wrote"
    if problem is not None:
        raise DiscoveryError(f"wool will not use the metrics token {path}: {problem}; remove it and wool writes a new one")
    return text.decode().strip()


def metrics_token() -> str:
    """This user's metrics token, written to `token_path()` (0600) on first use. Raises
    `DiscoveryError` if the runtime directory or the file is not private to this user."""
    path = token_path()
    try:
        return _read_token(path)
    except FileNotFoundError:
        pass
    draft = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
    finally:
        os.close(fd)
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another process wrote it first: use theirs
    finally:
        os.unlink(draft)
    return _read_token(path)


def check_port(port: object, what: str = "metrics_port") -> int:
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"{what} must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} must be between 0 and 65535, got {port}")
    return port


class Exposition:
    """The metrics endpoint of one worker process and the connection count it reports:
    `start` binds it (so its address can be published with the worker), `watch` attaches
    the server it reports on, `close` stops both."""

    def __init__(self, http: MetricsServer) -> None:
        self._http = http
        self._server: Server | None = None
        self._monitor: SocketDriver | None = None
        self.connections = 0
        self.address = http.address

    @property
    def tag(self) -> str:
        """The tag that publishes the endpoint with the worker: `metrics=HOST:PORT`."""
        return TAG_PREFIX + self.address

    @classmethod
    def start(cls, port: int, address: str = DEFAULT_METRICS_ADDRESS) -> Exposition:
        """Serve `/metrics` at `address`:`port` (0: any free port) to requests bearing
        `metrics_token()`. Raises `RuntimeError` without prometheus_client, `OSError` naming
        the port if it cannot be bound, `DiscoveryError` if the token cannot be kept private."""
        _metrics.enable_worker()
        return cls(_metrics.start_http(port, address, metrics_token()))

    def watch(self, server: Server) -> None:
        """Report `server`'s gauges, and count the connections open to its socket."""
        self._server = server

        def on_event(frames: list[bytes]) -> None:
            event = parse_monitor_message(frames)["event"]
            if event == zmq.EVENT_ACCEPTED:
                self.connections += 1
            elif event == zmq.EVENT_DISCONNECTED:
                self.connections = max(0, self.connections - 1)

        self._monitor = SocketDriver(server.socket.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED), on_event)
        metrics = _metrics.WORKER
        assert metrics is not None
        metrics.watch(self._gauges)

    def _gauges(self) -> tuple[int, int, int]:
        server = self._server
        if server is None:
            return 0, 0, 0
        queued = server.queued
        return server.in_flight - queued, queued, self.connections

    def close(self) -> None:
        """Stop serving (before the server's socket closes: the monitor belongs to it)."""
        if self._monitor is not None and self._server is not None:
            self._server.socket.disable_monitor()
            self._monitor.close()
            self._monitor = None
        self._http.close()
