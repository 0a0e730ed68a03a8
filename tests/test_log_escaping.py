"""Text that discovery or a peer supplies reaches the log escaped: a worker id carrying a
newline and a forged log line, announced over Zeroconf or written into a registry file,
shows up as one escaped line, never as a line of its own."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import uuid
from collections.abc import Iterator

import pytest
import routines
from helpers import logged_to
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

import wool
from wool.discovery import LanDiscovery, LocalDiscovery, WorkerInfo
from wool.discovery import _lan_record as record
from wool.workers import format_table

pytestmark = pytest.mark.timeout(30)

FORGED = "x\nWARNING wool.mesh: all good, trust key AAAA"
PREFIX = "LOG "


class Capture(logging.Handler):
    """Formats every `wool` record into `text`, one line per record as a file handler
    would, and wakes whoever waits for a record containing some text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(PREFIX + "%(levelname)s %(name)s: %(message)s"))
        self.stream = io.StringIO()
        self.arrived = asyncio.Event()
        self.wanted = ""

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.stream.write(line + "\n")
        if self.wanted and self.wanted in line:
            self.arrived.set()

    @property
    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    with logged_to(handler, level=logging.DEBUG):
        yield handler


def assert_escaped(capture: Capture) -> None:
    assert capture.lines, "nothing was logged"
    assert all(line.startswith(PREFIX) for line in capture.lines), capture.lines  # no injected line
    assert any(repr(FORGED)[1:-1] in line for line in capture.lines)  # the newline arrived as \n


async def test_a_zeroconf_id_with_a_newline_is_logged_escaped(capture: Capture) -> None:
    """A keyed pool on a LAN namespace meets a record whose id carries a forged log line and
    whose key it does not trust: it warns once, on one line, with the id escaped."""
    ns = f"lan-{uuid.uuid4().hex[:10]}"
    forged = WorkerInfo(FORGED, "tcp://127.0.0.1:9", 4321, "box", public_key=wool.Keys.generate().public)
    name = f"forged-{uuid.uuid4().hex[:8]}.{record.SERVICE_TYPE}"
    service = AsyncServiceInfo(
        record.SERVICE_TYPE,
        name,
        port=9,
        properties=record.encode(forged, ns, forged.endpoint, record.local_scope()),
        server=record.server_name(name),
        parsed_addresses=["127.0.0.1"],
    )
    capture.wanted = "does not trust"
    async with AsyncZeroconf(interfaces=["127.0.0.1"]) as attacker:
        await attacker.async_register_service(service, cooperating_responders=True)
        async with wool.WorkerPool(discovery=LanDiscovery(ns, ["127.0.0.1"]), keys=wool.Keys.generate()):
            await asyncio.wait_for(capture.arrived.wait(), 10)
        await attacker.async_unregister_service(service)
    assert_escaped(capture)


async def test_a_registry_id_with_a_newline_is_logged_escaped(capture: Capture) -> None:
    """The same id in a registry entry, for a keyless pool: its endpoint refuses connections,
    which the pool warns about, escaped, when a call first connects to it."""
    entry = WorkerInfo(FORGED, "tcp://127.0.0.1:9", os.getpid(), "")
    discovery = LocalDiscovery("escaping")
    await discovery.publish(entry)
    capture.wanted = "refuses connections"
    try:
        async with wool.WorkerPool(discovery=discovery):
            with pytest.raises(wool.NoWorkersAvailable):  # the only worker refuses: none is live
                await asyncio.wait_for(routines.add(1, 2), 20)
            await asyncio.wait_for(capture.arrived.wait(), 10)
    finally:
        await discovery.withdraw(entry)
    assert_escaped(capture)


def test_the_workers_table_escapes_what_discovery_listed() -> None:
    row = {**WorkerInfo(FORGED, "tcp://127.0.0.1:9", 1, "box\r").to_dict(), "reachable": False, "calls": None, "queued": None}
    table = format_table([row])
    assert len(table.splitlines()) == 2 and "\r" not in table
    assert repr(FORGED) in table
