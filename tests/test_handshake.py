"""How a failed handshake is explained: a table, no sockets (the events and values are those
libzmq 4.3.5 was measured to report, see `wool._handshake`)."""

from __future__ import annotations

import errno

import pytest
import zmq

from wool._handshake import explain

WHERE = "worker w (pid 1) at tcp://127.0.0.1:5"
MISMATCH = zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH


@pytest.mark.parametrize(
    ("event", "value", "elapsed", "own", "theirs", "refused", "says"),
    [
        (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, errno.EAGAIN, 1.0, None, None, False, "did not answer the handshake within 1 s"),
        (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, errno.EAGAIN, 1.0, "me", "them", False, "did not answer the handshake"),
        (
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
            errno.ECONNRESET,
            0.01,
            None,
            None,
            True,
            "closed the connection: it is no wool worker",
        ),
        (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, errno.EPIPE, 0.01, "me", "them", True, "does not hold the secret key"),
        (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, errno.ECONNRESET, None, None, None, True, "no wool worker"),
        (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, MISMATCH, 0.01, None, None, True, "it requires CURVE keys, which this process"),
        (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, MISMATCH, 0.01, "me", "them", True, "it does not use CURVE"),
        (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, 0x10000001, 0.01, None, None, True, "broke the ZeroMQ protocol"),
        (zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, 0.01, "me", "them", True, "refused this process: authentication failed"),
    ],
    ids=["silent", "silent-curve", "closed", "wrong-key", "never-connected", "needs-curve", "no-curve", "garbage", "denied"],
)
def test_each_failure_is_explained(
    event: int, value: int, elapsed: float | None, own: str | None, theirs: str | None, refused: bool, says: str
) -> None:
    failure = explain(event, value, WHERE, elapsed=elapsed, interval=1.0, own_key=own, worker_key=theirs)
    assert failure.refused is refused
    assert says in failure.reason and WHERE in failure.reason
    if not refused:
        assert "CURVE" not in failure.reason and "no wool worker" not in failure.reason


def test_without_a_handshake_interval_nothing_counts_as_silence() -> None:
    failure = explain(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 11, WHERE, elapsed=100.0, interval=0, own_key=None, worker_key=None)
    assert failure.refused
