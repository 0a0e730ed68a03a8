"""Discovery cannot inject a worker into a keyless pool beyond this user.

A forged worker is a ROUTER that anyone could bind, announced with a real Zeroconf record on
127.0.0.1 (any local user can multicast there, any host on a LAN). Without keys a pool cannot
tell it from a worker, so a keyless pool refuses `LanDiscovery`, and a `StaticDiscovery`
listing tcp:// endpoints, unless opened with `insecure=True`; the control shows what that
opt-in exposes: the forged worker gets the call and its reply becomes the caller's result. A
pool with keys never connects to a forged record without a key it trusts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import routines
import zmq
import zmq.asyncio
from helpers import REPO, CliWorker, logged_to
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

import wool
from wool import protocol as p
from wool._transport import context
from wool.discovery import LanDiscovery, StaticDiscovery
from wool.discovery import _lan_record as record

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

LOOPBACK = ["127.0.0.1"]
FORGED_RESULT = "forged"


class ForgedWorker:
    """A ROUTER at a loopback port that answers pings as worker `id` and every call with
    `FORGED_RESULT`; `accepted` counts the connections made to it."""

    def __init__(self, public_key: str | None = None) -> None:
        self.id = f"forged{uuid.uuid4().hex[:10]}"
        self.public_key = public_key
        self.calls: list[p.Call] = []
        self.accepted = 0

    async def __aenter__(self) -> ForgedWorker:
        ctx = zmq.asyncio.Context.shadow(context())
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:0")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_ACCEPTED)
        self._events = zmq.Socket.shadow(self.monitor.underlying)  # read without awaiting
        self.info = wool.WorkerInfo(self.id, self.endpoint, os.getpid(), "forger", public_key=self.public_key)
        self._task = asyncio.ensure_future(self._serve())
        return self

    async def _serve(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            msg = p.decode(frames[1:])
            if isinstance(msg, p.Ping):
                reply: p.Reply = p.Pong(msg.call_id, self.id)
            elif isinstance(msg, p.Call):
                self.calls.append(msg)
                reply = p.Return(msg.call_id, p.dumps(FORGED_RESULT))
            else:
                continue
            await self.sock.send_multipart([frames[0], *p.encode(reply)])

    def connections(self) -> int:
        while self._events.poll(0):
            self._events.recv_multipart()
            self.accepted += 1
        return self.accepted

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)


@asynccontextmanager
async def announced(*workers: ForgedWorker) -> AsyncIterator[str]:
    """A fresh namespace in which `workers` are announced by real Zeroconf records on 127.0.0.1,
    and seen by a `LanDiscovery` before this yields."""
    namespace = f"forged-{uuid.uuid4().hex[:10]}"
    watch = LanDiscovery(namespace, LOOPBACK).watch()
    try:
        async with AsyncZeroconf(interfaces=LOOPBACK) as forger:
            for worker in workers:
                name = record.instance_name(worker.id, namespace)
                txt = record.encode(worker.info, namespace, worker.endpoint, record.local_scope())
                service = AsyncServiceInfo(
                    record.SERVICE_TYPE,
                    name,
                    port=int(worker.endpoint.rpartition(":")[2]),
                    properties=dict(txt),
                    server=record.server_name(name),
                    parsed_addresses=LOOPBACK,
                )
                await forger.async_register_service(service, cooperating_responders=True)
            seen: set[str] = set()
            async with asyncio.timeout(20):
                while seen != {w.id for w in workers}:
                    event = await anext(watch)
                    if event.kind == "added":
                        seen.add(event.worker.id)
            yield namespace
    finally:
        await watch.aclose()  # type: ignore[attr-defined]


@contextmanager
def wool_log() -> Iterator[list[str]]:
    """The messages logged under 'wool' while in the block."""
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    with logged_to(handler):
        yield messages


def refusal_text(opt_in: str) -> list[str]:
    return ["refusing to follow discovery without CURVE keys", "python -m wool.keys generate DIR", "keys=DIR", opt_in]


# -- LAN ------------------------------------------------------------------------------------


async def test_a_keyless_pool_refuses_lan_discovery_so_a_forged_record_gets_no_call() -> None:
    async with ForgedWorker() as forged, announced(forged) as namespace:
        with pytest.raises(ValueError) as refused:
            wool.WorkerPool(discovery=LanDiscovery(namespace, LOOPBACK))
        for text in [*refusal_text("insecure=True"), "takes worker announcements from every host"]:
            assert text in str(refused.value)
        with pytest.raises(ValueError, match="without CURVE keys"):
            wool.WorkerPool(size=1, discovery=LanDiscovery(namespace, LOOPBACK))
        assert (forged.connections(), forged.calls) == (0, [])


async def test_control_with_insecure_true_the_forged_record_gets_the_call_and_answers_it() -> None:
    async with ForgedWorker() as forged, announced(forged) as namespace:
        async with wool.WorkerPool(discovery=LanDiscovery(namespace, LOOPBACK), insecure=True) as pool:
            await pool.wait_for_workers(timeout=10)
            assert await routines.add(1, 2) == FORGED_RESULT  # its reply, unpickled here
        assert forged.connections() >= 1
        assert [c.name for c in forged.calls] == ["add"]
        args, _ = p.loads(forged.calls[0].payload)  # and it read the arguments
        assert args == (1, 2)


async def test_a_keyed_pool_ignores_forged_records_without_a_key_it_trusts() -> None:
    keys = wool.Keys.generate()
    async with (
        ForgedWorker() as keyless,
        ForgedWorker(public_key=wool.Keys.generate().public) as untrusted,
        announced(keyless, untrusted) as namespace,
    ):
        with wool_log() as log:
            async with wool.WorkerPool(size=1, discovery=LanDiscovery(namespace, LOOPBACK), keys=keys) as pool:
                # The pool takes in what discovery lists as it opens: both forged records.
                (spawned,) = pool.processes
                assert [w.pid for w in pool.workers] == [spawned.pid]
                assert {await routines.pid() for _ in range(6)} == {spawned.pid}
                assert set(await routines.pids_of_nested(6)) == {spawned.pid}
        assert any(f"worker {keyless.id!r} at {keyless.endpoint!r} has no CURVE key" in m for m in log), log
        assert any(f"worker {untrusted.id!r} at {untrusted.endpoint!r} publishes the public key" in m for m in log), log
        assert (keyless.connections(), untrusted.connections()) == (0, 0)
        assert (keyless.calls, untrusted.calls) == ([], [])


# -- static lists ---------------------------------------------------------------------------


async def test_a_keyless_pool_refuses_a_static_tcp_endpoint_unless_insecure() -> None:
    async with ForgedWorker() as squatter:
        with pytest.raises(ValueError) as refused:
            wool.WorkerPool(discovery=StaticDiscovery([squatter.endpoint]))
        for text in [*refusal_text("insecure=True"), f"lists {squatter.endpoint}, where every user of this machine"]:
            assert text in str(refused.value)
        assert squatter.connections() == 0
        # The control: opted in, whoever holds the port gets the call and decides the result.
        async with wool.WorkerPool(discovery=StaticDiscovery([squatter.endpoint]), insecure=True) as pool:
            await pool.wait_for_workers(timeout=10)
            assert await routines.add(1, 2) == FORGED_RESULT
        assert [c.name for c in squatter.calls] == ["add"]


async def test_static_ipc_endpoints_need_no_opt_in_only_in_a_private_directory(tmp_path: Path) -> None:
    async with CliWorker("--discovery", f"static:ipc://{os.environ['WOOL_RUNTIME_DIR']}/nobody.sock") as worker:
        async with wool.WorkerPool(discovery=StaticDiscovery([worker.endpoint])) as pool:
            await pool.wait_for_workers(timeout=10)
            assert await routines.pid() == worker.pid
        worker.signal()
        assert await worker.wait() == 0
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ValueError, match=f"{shared} is open to other users"):
        wool.WorkerPool(discovery=StaticDiscovery([f"ipc://{shared}/w.sock"]))
    with pytest.raises(ValueError, match="abstract socket"):
        wool.WorkerPool(discovery=StaticDiscovery(["ipc://@wool-w"]))
    wool.WorkerPool(discovery=StaticDiscovery([f"ipc://{shared}/w.sock"]), insecure=True)


def test_a_keyless_pool_refuses_dns_discovery_unless_insecure() -> None:
    """DNS answers are not authenticated, and the addresses they give are tcp:// ports."""
    discovery = wool.DnsDiscovery("workers.test", 7001, nameservers=["127.0.0.1"])
    with pytest.raises(ValueError) as refused:
        wool.WorkerPool(discovery=discovery)
    for text in [*refusal_text("insecure=True"), "takes worker addresses from DNS answers, which are not authenticated"]:
        assert text in str(refused.value)
    assert wool.WorkerPool(discovery=discovery, insecure=True).insecure
    assert wool.WorkerPool(discovery=discovery, keys=wool.Keys.generate()).keys is not None


def test_insecure_is_checked() -> None:
    with pytest.raises(ValueError, match="insecure=True and keys exclude each other"):
        wool.WorkerPool(size=1, keys=wool.Keys.generate(), insecure=True)
    with pytest.raises(TypeError, match="insecure must be a bool"):
        wool.WorkerPool(size=1, insecure="yes")  # type: ignore[arg-type]


# -- workers started by hand -----------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    return subprocess.run(
        [sys.executable, "-m", "wool.worker", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=30
    )


@pytest.mark.parametrize(
    "spec, exposure",
    [
        ("lan@127.0.0.1", "takes worker announcements from every host"),
        ("static:tcp://127.0.0.1:9", "lists tcp://127.0.0.1:9, where every user of this machine"),
        ("dns:w.test:7001@127.0.0.1", "takes worker addresses from DNS answers, which are not authenticated"),
    ],
)
def test_a_keyless_cli_worker_refuses_discovery_others_could_inject_peers_into(spec: str, exposure: str) -> None:
    """Its own mesh would send nested calls to them, and unpickle their replies."""
    result = run_cli("--discovery", spec)
    assert result.returncode == 2, result.stderr
    for text in [*refusal_text("--insecure"), exposure, "--keys DIR"]:
        assert text in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_keyless_cli_worker_on_lan_starts_with_insecure() -> None:
    async with CliWorker("--discovery", "lan@127.0.0.1", "--insecure") as worker:
        assert worker.endpoint.startswith("ipc://")  # its own socket stays private all the same
        worker.signal()
        assert await worker.wait() == 0
