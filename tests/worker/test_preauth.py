"""What a keyed worker cuts before authentication (`HandshakeBudget`, pure: no sockets), and the
guard's reading of the kernel's byte counts on a real TCP connection. The attacks themselves
are in `tests/test_hostile_peers.py`."""

from __future__ import annotations

import socket

from wool.worker._preauth import (
    MAX_HANDSHAKES,
    MAX_PREAUTH_BYTES,
    SERVER_BYTES_BEFORE_READY,
    HandshakeBudget,
    Verdict,
    supported,
    tcp_progress,
)


def test_past_the_limit_of_handshakes_the_oldest_is_cut_not_the_newest() -> None:
    budget = HandshakeBudget(max_handshakes=3)
    assert [budget.accepted(fd) for fd in (10, 11, 12)] == [[], [], []]
    cut = budget.accepted(13)
    assert [fd for fd, _ in cut] == [10]
    assert "more than 3 connections were in their handshake" in cut[0][1]
    assert list(budget) == [11, 12, 13]
    budget.gone(12)  # disconnected: its slot is free again
    assert budget.accepted(14) == []
    assert list(budget) == [11, 13, 14]


def test_a_descriptor_number_reused_counts_as_the_newest_connection() -> None:
    budget = HandshakeBudget(max_handshakes=2)
    budget.accepted(5)
    budget.accepted(6)
    assert budget.accepted(5) == []  # the old connection numbered 5 is gone: no one is cut for it
    assert list(budget) == [6, 5]


def test_a_connection_is_cut_once_it_sent_more_than_the_budget_before_authenticating() -> None:
    budget = HandshakeBudget(max_bytes=MAX_PREAUTH_BYTES)
    budget.accepted(7)
    greeting_only = 64
    assert budget.progress(7, greeting_only, 600)[0] is Verdict.WATCH  # a CURVE client's HELLO and INITIATE
    assert budget.progress(7, greeting_only, MAX_PREAUTH_BYTES)[0] is Verdict.WATCH
    verdict, why = budget.progress(7, greeting_only, MAX_PREAUTH_BYTES + 1)
    assert verdict is Verdict.CUT
    assert why == f"it sent {MAX_PREAUTH_BYTES + 1} bytes before authenticating (at most {MAX_PREAUTH_BYTES})"
    assert len(budget) == 0


def test_once_the_worker_sent_ready_the_connection_is_no_longer_limited() -> None:
    budget = HandshakeBudget()
    budget.accepted(8)
    assert budget.progress(8, SERVER_BYTES_BEFORE_READY, 10_000)[0] is Verdict.WATCH  # WELCOME, not READY yet
    assert budget.progress(8, SERVER_BYTES_BEFORE_READY + 69, 100 << 20)[0] is Verdict.AUTHENTICATED
    assert len(budget) == 0  # forgotten: a trusted 100 MiB call is not counted
    assert MAX_HANDSHAKES * MAX_PREAUTH_BYTES == 4 << 20  # the README's 4 MiB for 64 connections


def test_tcp_progress_reads_what_each_side_sent() -> None:
    assert supported()
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            client.sendall(b"x" * 1000)
            assert accepted.recv(1000, socket.MSG_WAITALL) == b"x" * 1000
            accepted.sendall(b"y" * 300)
            assert client.recv(300, socket.MSG_WAITALL) == b"y" * 300
            client.sendall(b"z")  # carries the acknowledgement of the 300 bytes
            assert accepted.recv(1) == b"z"
            assert tcp_progress(accepted) == (300, 1001)
