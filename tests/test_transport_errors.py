"""A bug met while handling a message must not let a peer flood the log: a peer repeating the
message that meets it gets one traceback per interval logged, the rest at DEBUG, and the
socket keeps delivering."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import zmq
import zmq.asyncio
from helpers import logged_to

from wool._throttle import WARN_INTERVAL
from wool._transport import SocketDriver, context

pytestmark = pytest.mark.timeout(30)

MESSAGES = 200


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_an_error_repeated_by_every_message_is_logged_in_full_once_per_interval() -> None:
    ctx = context()
    server = ctx.socket(zmq.ROUTER)
    client = zmq.asyncio.Context.shadow(ctx).socket(zmq.DEALER)
    handled = 0
    all_handled = asyncio.Event()

    def on_message(frames: list[Any]) -> None:
        nonlocal handled
        handled += 1
        if handled == MESSAGES:
            all_handled.set()
        raise RuntimeError(f"a bug met by message {handled}")

    records = Records()
    try:
        server.bind("inproc://transport-errors")
        client.connect("inproc://transport-errors")
        with logged_to(records, "wool.transport", logging.DEBUG):
            started = time.monotonic()
            driver = SocketDriver(server, on_message, routed=True)
            try:
                for i in range(MESSAGES):
                    await client.send_multipart([b"%d" % i])
                await asyncio.wait_for(all_handled.wait(), 20)
                elapsed = time.monotonic() - started
            finally:
                driver.close()
    finally:
        client.close(linger=0)
        server.close(linger=0)
    mine = [r for r in records.records if r.getMessage().startswith("unhandled error while handling a message")]
    full = [r for r in mine if r.levelno >= logging.WARNING]
    assert len(mine) == MESSAGES
    assert 1 <= len(full) <= 1 + elapsed // WARN_INTERVAL, [r.getMessage() for r in full]
    assert all(r.exc_info is not None and f"for {WARN_INTERVAL:.0f} s" in r.getMessage() for r in full)
    assert all(r.levelno == logging.DEBUG and r.exc_info is not None for r in mine if r not in full)
