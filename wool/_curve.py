"""CURVE on wool's sockets: client and server options, and the ZAP handler that decides which
callers a worker lets in.

Theory of operation. A worker's ROUTER is a CURVE server; for every handshake it receives,
libzmq asks the ZAP handler of the socket's context (whatever is bound at
`inproc://zeromq.zap.01`) whether the client's public key may connect, and delivers nothing
from that client before the answer is "200": an unknown caller's bytes never reach the
application, let alone `cloudpickle.loads`. wool binds one ROUTER there per process and
answers from a table: each secure server registers its allow-list under a ZAP domain of its
own; a request for an unknown domain, for another mechanism, or from a key outside the list
is denied ("400"), and the client sees `EVENT_HANDSHAKE_FAILED_AUTH`. The handler opens with
the first registration and closes with the last. The answer is the authorisation: a denied
peer never gets a message through, so the server does not check each message's `User-Id`
property (the handler sets it to the client's key all the same).

The handler answers on a thread of its own, which owns its socket (no socket crosses
threads) and reads an allow-list table that registrations replace whole, never mutate. Not
on the event loop: a worker's loop is legitimately blocked for seconds by CPU-bound
routines, and handshakes must complete within the short handshake interval
(`_transport.HANDSHAKE_IVL_MS`) that bounds what unauthenticated peers cost; a handshake
that timed out would look to the caller like a worker that does not hold its key.

Fail closed: without a ZAP handler, libzmq would admit every client key. So a server
registers before it binds and closes its socket before it unregisters, and sets
`ZAP_ENFORCE_DOMAIN`, which makes a handshake fail when no handler answers.

Callers pin the server's key (`CURVE_SERVERKEY`, the worker's published public key): a peer
that does not hold the matching secret key cannot complete the handshake, whatever discovery
said about it.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from typing import Any

import zmq
from zmq.utils import z85

from ._keys import Keys
from ._throttle import Throttle
from ._transport import context

log = logging.getLogger("wool.curve")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"


def make_client(sock: zmq.Socket[Any], keys: Keys, server_key: str) -> None:
    """Make `sock` (not yet connected) a CURVE client of the server holding `server_key`."""
    sock.setsockopt(zmq.CURVE_SERVERKEY, server_key.encode())
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public.encode())
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret.encode())


def make_server(sock: zmq.Socket[Any], keys: Keys, domain: bytes) -> None:
    """Make `sock` (not yet bound) a CURVE server whose clients the ZAP handler checks
    against the allow-list registered as `domain`."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public.encode())
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret.encode())
    sock.setsockopt(zmq.ZAP_DOMAIN, domain)
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


class _Handler:
    """The process's ZAP handler: a thread serving one ROUTER at `ZAP_ENDPOINT`, answering
    from `domains` (replaced whole by `register`/`unregister`, so the thread never sees a
    table being changed)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.domains: dict[bytes, frozenset[bytes]] = {}
        # One refusal warning per interval, whatever the key: a peer can make a fresh key per
        # handshake (the thread's own throttle).
        self._warnings = Throttle(log, total=1)
        self._wake_r, self._wake_w = os.pipe()
        self._ready = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="wool-zap", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._close_pipe()
            raise RuntimeError(self._error)

    def _run(self) -> None:
        sock = context().socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            try:
                sock.bind(ZAP_ENDPOINT)
            except zmq.ZMQError as e:
                self._error = f"cannot bind the ZAP handler at {ZAP_ENDPOINT}: {e}"
                return
            finally:
                self._ready.set()
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(self._wake_r, zmq.POLLIN)
            while True:
                ready = dict(poller.poll())
                if self._wake_r in ready:
                    return
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    reply = self._answer(frames)
                    if reply is not None:
                        sock.send_multipart(reply)
        except Exception:
            log.exception("the ZAP handler failed: new callers will fail their handshake")
        finally:
            sock.close(linger=0)

    def _answer(self, frames: list[bytes]) -> list[bytes] | None:
        # [route, b"", version, request id, domain, address, identity, mechanism, credentials...]
        if len(frames) < 8:
            log.warning("dropped a malformed ZAP request of %d frames", len(frames))
            return None
        route, _, version, request_id, domain, address, _, mechanism, *credentials = frames
        allowed = self.domains.get(domain)
        user_id = b""
        if version != b"1.0":
            status, text = b"500", b"unsupported ZAP version"
        elif allowed is None:
            status, text = b"400", b"unknown ZAP domain"
        elif mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            status, text = b"400", b"only CURVE clients are accepted"
        else:
            key = z85.encode(credentials[0])
            if key in allowed:
                status, text, user_id = b"200", b"OK", key
            else:
                status, text = b"400", b"public key not trusted"
                self._warn_denied(key, address)
        return [route, b"", b"1.0", request_id, status, text, user_id, b""]

    def _warn_denied(self, key: bytes, address: bytes) -> None:
        self._warnings.warn(
            key,
            "refused a caller at %r: its public key %s is not trusted (add it to the trusted keys to let it in)",
            address.decode(errors="replace"),
            key.decode(),
        )

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join()
        self._close_pipe()

    def _close_pipe(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)


_handler: _Handler | None = None
_lock = threading.Lock()


def register(allowed: frozenset[str]) -> bytes:
    """Open the ZAP handler if needed and register `allowed` (z85 public keys) under a new
    ZAP domain, which is returned: set it on the server socket (`make_server`) before it
    binds."""
    global _handler
    with _lock:
        if _handler is not None and _handler.pid != os.getpid():
            _handler = None  # inherited through fork: its thread and socket stayed in the parent
        if _handler is None:
            _handler = _Handler()
        domain = b"wool-" + secrets.token_hex(8).encode()
        _handler.domains = {**_handler.domains, domain: frozenset(k.encode() for k in allowed)}
        return domain


def unregister(domain: bytes) -> None:
    """Forget `domain`'s allow-list (after closing its server socket); the last one closes
    the handler."""
    global _handler
    with _lock:
        if _handler is None or _handler.pid != os.getpid():
            return
        _handler.domains = {d: keys for d, keys in _handler.domains.items() if d != domain}
        if not _handler.domains:
            _handler.close()
            _handler = None
