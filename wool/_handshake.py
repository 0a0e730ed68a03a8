"""Why a ZeroMQ handshake with a worker failed, in words a user can act on (pure: no I/O).

libzmq reports a failed handshake as one of three monitor events. Measured (libzmq 4.3.5):
a peer that requires CURVE when this side does not (or the reverse) is a protocol error
whose value is `PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH`; a CURVE worker that refuses this
process's key is an authentication failure; everything else is "no detail": a peer that
closed or reset the connection (a CURVE client pinning a key the server does not hold, or
something that is no ZeroMQ peer at all) fails at once, while a peer that never answers (a
stopped or frozen process, whose kernel still accepts connections) fails when the handshake
interval runs out. Only that last one is worth trying again: it may resume.
"""

from __future__ import annotations

import dataclasses

import zmq

_SILENT_SHARE = 0.9  # of the handshake interval: a failure this late is the interval running out


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeFailure:
    """`reason` to log and report; `refused`: the peer answered and will not do (do not try
    it again), else it did not answer (it is lost, and may be tried again)."""

    reason: str
    refused: bool


def explain(
    event: int,
    value: int,
    where: str,
    *,
    elapsed: float | None,
    interval: float,
    own_key: str | None,
    worker_key: str | None,
) -> HandshakeFailure:
    """The failure that monitor `event` (with its `value`) reports for the worker described by
    `where`. `elapsed`: seconds from the TCP connection to the failure (None if it never
    connected); `interval`: the socket's handshake interval in seconds (0: none)."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        key = f" {own_key}" if own_key else ""
        return HandshakeFailure(
            f"{where} refused this process: authentication failed (its allow-list does not hold this process's public key{key})",
            True,
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            if own_key is None:
                return HandshakeFailure(
                    f"the handshake with {where} failed: it requires CURVE keys, which this process has not got", True
                )
            return HandshakeFailure(
                f"the handshake with {where} failed: it does not use CURVE, and this process requires it", True
            )
        return HandshakeFailure(
            f"the handshake with {where} failed: it broke the ZeroMQ protocol (error {value:#x}): it is no wool worker", True
        )
    if elapsed is not None and interval > 0 and elapsed >= _SILENT_SHARE * interval:
        return HandshakeFailure(
            f"{where} did not answer the handshake within {interval:g} s: it is stopped, frozen or overloaded (it will be tried again)",
            False,
        )
    if worker_key is not None:
        return HandshakeFailure(
            f"authentication of {where} failed: the handshake broke off, so whoever listens there "
            f"does not hold the secret key of the public key {worker_key!r} that discovery published for it, "
            f"or does not use CURVE",
            True,
        )
    return HandshakeFailure(f"the handshake with {where} failed: the peer closed the connection: it is no wool worker", True)
