"""The metrics endpoint under attack: another local user gets a 401 and not one sample;
hundreds of half-sent requests cost the worker at most a few descriptors while trusted
calls go on; a taken fixed port is named. And what the endpoint answers, decided with no
socket at all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import wool
import wool.metrics
from tests import routines
from tests.other_user import as_other_user, needs_root, shared_tmp
from tests.test_metrics import get, metrics_address, scrape
from wool import _metrics_server
from wool._metrics_server import DESCRIPTOR_RESERVE, MAX_CONNECTIONS, answer

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]

TOKEN = "ab" * 32


def render() -> bytes:
    return b"wool_calls_total 1.0\n"


@pytest.mark.parametrize(
    ("head", "status", "shows_metrics"),
    [
        (f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}", "200 OK", True),
        (f"GET /metrics?x=1 HTTP/1.0\r\nauthorization:  Bearer {TOKEN} ", "200 OK", True),
        ("GET /metrics HTTP/1.1\r\nHost: x", "401 Unauthorized", False),
        (f"GET /metrics HTTP/1.1\r\nAuthorization: Bearer {TOKEN[:-1]}", "401 Unauthorized", False),
        (f"GET /metrics HTTP/1.1\r\nAuthorization: Basic {TOKEN}", "401 Unauthorized", False),
        (f"POST /metrics HTTP/1.1\r\nAuthorization: Bearer {TOKEN}", "405 Method Not Allowed", False),
        (f"GET /secrets HTTP/1.1\r\nAuthorization: Bearer {TOKEN}", "404 Not Found", False),
        ("GET /metrics", "400 Bad Request", False),
        (f"GET /metrics HTTP/1.1\r\nno colon here\r\nAuthorization: Bearer {TOKEN}", "400 Bad Request", False),
        ("\x16\x03\x01 TLS hello", "400 Bad Request", False),
    ],
)
def test_the_endpoint_answers_only_requests_bearing_the_token(head: str, status: str, shows_metrics: bool) -> None:
    response = answer(head.encode(), TOKEN, render)
    assert response.startswith(f"HTTP/1.1 {status}\r\n".encode())
    assert (b"wool_calls_total" in response) is shows_metrics
    if status.startswith("401"):
        assert b'WWW-Authenticate: Bearer realm="wool"' in response


def test_a_head_request_gets_the_headers_only() -> None:
    response = answer(f"HEAD /metrics HTTP/1.1\r\nAuthorization: Bearer {TOKEN}".encode(), TOKEN, render)
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"Content-Length: 21" in head and body == b""


def test_the_token_is_private_and_kept(runtime_dir: Path) -> None:
    token = wool.metrics.token()
    path = wool.metrics.token_path()
    assert path == runtime_dir / "metrics.token"
    assert os.stat(path).st_mode & 0o777 == 0o600 and path.read_text().strip() == token
    assert wool.metrics.token() == token  # written once, read after
    os.chmod(path, 0o644)
    with pytest.raises(wool.DiscoveryError, match=r"open to other users \(mode 0644\); remove it"):
        wool.metrics.token()
    path.unlink()
    path.symlink_to("/etc/passwd")
    with pytest.raises(wool.DiscoveryError, match="cannot read the metrics token"):
        wool.metrics.token()


@needs_root()
async def test_another_user_cannot_read_a_pools_metrics() -> None:
    """The attack of issue 22: another uid scraped `wool_calls_total{routine=...}` of a
    private pool from its loopback port. Now it gets a 401, and cannot read the token."""
    async with wool.WorkerPool(size=1, metrics_port=0) as pool:
        (worker,) = pool.workers
        address = metrics_address(worker)
        assert await routines.add(1, 2) == 3
        with shared_tmp() as shared:
            host, port = address.rsplit(":", 1)
            script = (
                "import socket\n"
                f"s = socket.create_connection(({host!r}, {port}), timeout=10)\n"
                f"s.sendall(b'GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
                "data = b''\n"
                "while chunk := s.recv(65536):\n"
                "    data += chunk\n"
                f"open({str(shared / 'scraped')!r}, 'wb').write(data)\n"
            )
            (shared / "scrape.py").write_text(script)
            os.chmod(shared / "scrape.py", 0o644)
            token_file = wool.metrics.token_path()
            as_other_user(
                f"/usr/bin/python3 {shared}/scrape.py; cat {token_file} > {shared}/token 2>/dev/null || echo denied > {shared}/token"
            )
            scraped = (shared / "scraped").read_bytes()
            stolen = (shared / "token").read_text()
        mine = await scrape(address)
    assert scraped.startswith(b"HTTP/1.1 401 ") and b"wool_calls" not in scraped, scraped[:200]
    assert stolen == "denied\n"
    assert mine[("wool_calls_total", (("outcome", "ok"), ("routine", "add")))] == 1  # the owner's scrape works


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextlib.contextmanager
def half_sent_requests(address: str, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections to `address`, each sending the first line of a request and then
    nothing: what a slow (or hostile) client holds open."""
    host, port = address.rsplit(":", 1)
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setblocking(False)
            sock.connect_ex((host, int(port)))  # EINPROGRESS; some wait in the backlog
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.send(b"GET /metrics HTTP/1.1\r\n")
        yield socks
    finally:
        for sock in socks:
            sock.close()


async def test_half_sent_requests_cannot_exhaust_a_workers_descriptors() -> None:
    """The attack of issue 22: 2,100 half-sent requests held one thread and one descriptor
    each until the worker could not accept a ZeroMQ connection and aborted. Now the endpoint
    holds at most MAX_CONNECTIONS of them; calls go on and the worker lives."""
    async with wool.WorkerPool(size=1, metrics_port=0) as pool:
        (worker,) = pool.workers
        (process,) = pool.processes
        assert process.pid is not None
        address = metrics_address(worker)
        assert await routines.add(0, 1) == 1
        before = descriptors(process.pid)
        with half_sent_requests(address, 400):
            async with asyncio.timeout(30):
                while descriptors(process.pid) < before + MAX_CONNECTIONS:
                    await asyncio.sleep(0.05)  # polls what the worker holds; bounded
            assert [await routines.add(i, 1) for i in range(20)] == list(range(1, 21))
            during = descriptors(process.pid)
            assert process.returncode is None
        # Once the attackers are gone, the endpoint serves again (those still queued in the
        # backlog are read as closed and dropped at once).
        async with asyncio.timeout(60):
            after = await scrape(address)
        assert await routines.add(2, 3) == 5
    assert MAX_CONNECTIONS <= 16 and during <= before + MAX_CONNECTIONS + 4, (before, during)  # +4: the calls' own
    assert after[("wool_calls_total", (("outcome", "ok"), ("routine", "add")))] == 21
    print(f"\nworker descriptors: {before} before, {during} with 400 half-sent requests held")


async def test_the_endpoint_accepts_nothing_while_descriptors_run_low(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the reserve the endpoint leaves connections in the kernel's backlog (they
    hold no descriptor of ours); once descriptors are free again it serves them."""
    free = [DESCRIPTOR_RESERVE - 1]
    monkeypatch.setattr(_metrics_server, "free_descriptors", lambda: free[0])
    server = _metrics_server.MetricsServer(0, "127.0.0.1", TOKEN, render)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"GET /metrics HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(20):
            seen = server.deferred
            while server.deferred < seen + 2:  # it looked again after our connection arrived
                await asyncio.sleep(0.05)
        assert server.open_connections == 0
        free[0] = DESCRIPTOR_RESERVE
        async with asyncio.timeout(20):
            response = await reader.read()
        writer.close()
        assert response.startswith(b"HTTP/1.1 200 OK") and response.endswith(render())
    finally:
        server.close()


def free_port_pair() -> tuple[int, socket.socket]:
    """A port P that is free, and a listening socket squatting P + 1."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        squatter = socket.socket()
        try:
            squatter.bind(("127.0.0.1", port + 1))
        except OSError:
            squatter.close()
            continue
        squatter.listen(1)
        return port, squatter
    raise AssertionError("no two consecutive free ports on 127.0.0.1")


async def test_a_taken_fixed_port_is_named() -> None:
    port, squatter = free_port_pair()
    try:
        with pytest.raises(wool.WorkerStartError, match=rf"cannot serve metrics on 127\.0\.0\.1:{port + 1}: .*taken"):
            async with wool.WorkerPool(size=2, metrics_port=port):
                pass
    finally:
        squatter.close()


async def test_an_unauthenticated_scrape_of_a_caller_is_refused() -> None:
    port = wool.metrics.serve(0)
    try:
        head, body = await get(f"127.0.0.1:{port}", None)
        assert " 401 " in head.splitlines()[0] and "wool_" not in body
        head, body = await get(f"127.0.0.1:{port}", wool.metrics.token())
        assert " 200 " in head.splitlines()[0] and "wool_dispatch_duration_seconds" in body
    finally:
        wool.metrics.stop()
