"""A worker's `/metrics` endpoint: Prometheus text over HTTP, on loopback unless told otherwise.

Theory of operation. `Exposition.start` turns on the worker's metrics (`wool._metrics`), reads
the gauges from the server's own bookkeeping when scraped, counts the connections open to the
server's socket from its ZeroMQ monitor (accepted minus disconnected), and serves wool's registry
(`wool.metrics.REGISTRY`) with prometheus_client's HTTP server. That server runs in its own thread, so a scrape is
answered even while a routine holds the event loop (CPU-bound code), which is when one wants
to look. The port it bound (0: any free port) is published with the worker as the tag
`metrics=HOST:PORT`, so a pool's spawned workers can be found by whatever scrapes them.
"""

from __future__ import annotations

import threading
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from .. import _metrics
from .._transport import SocketDriver
from ._server import Server

DEFAULT_METRICS_ADDRESS = "127.0.0.1"
TAG_PREFIX = "metrics="


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

    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self._server: Server | None = None
        self._monitor: SocketDriver | None = None
        self.connections = 0
        host, port = httpd.server_address[:2]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def tag(self) -> str:
        """The tag that publishes the endpoint with the worker: `metrics=HOST:PORT`."""
        return TAG_PREFIX + self.address

    @classmethod
    def start(cls, port: int, address: str = DEFAULT_METRICS_ADDRESS) -> Exposition:
        """Serve `/metrics` at `address`:`port` (0: any free port). Raises `RuntimeError`
        without prometheus_client, `OSError` if the port cannot be bound."""
        _metrics.enable_worker()
        try:
            httpd, thread = _metrics.start_http(port, address)
        except OSError as e:
            raise OSError(f"cannot serve metrics on {address}:{port}: {e.strerror or e}") from None
        return cls(httpd, thread)

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
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
