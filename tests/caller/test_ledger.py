"""The bookkeeping of one connection's calls (`CallLedger`), with no sockets: which reply is
legal for which request, what a final reply frees, what is dropped, and how everything fails
or is cancelled when the worker is lost or the connection closes."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from wool import protocol as p
from wool._errors import AuthenticationError, DispatchError, WorkerLost
from wool.caller._ledger import CallLedger

K = p.Kind
REQUESTS = [K.CALL, K.NEXT, K.SEND, K.THROW, K.CLOSE, K.PING]
REPLY_KINDS = [K.RETURN, K.YIELD, K.RAISE, K.STOP, K.PONG, K.REJECT]


def reply(kind: p.Kind, call_id: int) -> p.Message:
    """A message of `kind` for `call_id`, as the worker would send it."""
    made: dict[p.Kind, p.Message] = {
        K.RETURN: p.Return(call_id, ()),
        K.YIELD: p.Yield(call_id, ()),
        K.RAISE: p.Raise(call_id, "ValueError", "no", "", ()),
        K.STOP: p.Stop(call_id),
        K.PONG: p.Pong(call_id, "w"),
        K.REJECT: p.Reject(call_id, p.RejectReason.BAD_STATE, "no"),
        K.NEXT: p.Next(call_id),  # a request: never a legal answer
    }
    return made[kind]


class Room:
    """Counts the `on_room` calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def ledger(window: int = 10) -> tuple[CallLedger, Room]:
    room = Room()
    return CallLedger(asyncio.get_running_loop(), "w1", window, room), room


# Written out by hand from the protocol's rules: (generator, request) -> {legal reply: final}.
EXPECTED = {
    (False, K.CALL): {K.RETURN: True, K.RAISE: True, K.REJECT: True},
    (False, K.PING): {K.PONG: True, K.REJECT: True},
    **{(True, r): {K.YIELD: False, K.STOP: True, K.RAISE: True, K.REJECT: True} for r in (K.CALL, K.NEXT, K.SEND, K.THROW)},
    (True, K.CLOSE): {K.STOP: True, K.RAISE: True, K.REJECT: True},
}


@pytest.mark.parametrize(
    ("generator", "request_", "answer"),
    list(itertools.product((False, True), REQUESTS, REPLY_KINDS)),
    ids=lambda v: v.name.lower() if isinstance(v, p.Kind) else ("gen" if v else "coro"),
)
async def test_each_reply_to_each_request(generator: bool, request_: p.Kind, answer: p.Kind) -> None:
    """A legal reply resolves the request's future, an illegal one fails it with
    `DispatchError` naming both; a final or illegal one ends the call (frees its slot, once);
    a yield leaves a generator open."""
    calls, room = ledger()
    opens = request_ is not K.PING  # a ping is an exchange outside any call
    if opens and request_ is not K.CALL:
        calls.register(1, K.CALL, generator)  # the call is open; its step comes next
    future = calls.register(1, request_, generator)
    assert calls.in_flight == (1 if opens else 0)
    assert calls.match(reply(answer, 1))
    final = EXPECTED.get((generator, request_), {}).get(answer)
    if final is None:
        with pytest.raises(DispatchError, match=f"worker 'w1' answered {request_.name.lower()} with {answer.name.lower()}"):
            future.result()
    else:
        assert future.result().kind is answer
    ends = final is not False
    assert calls.in_flight == (1 if opens and not ends else 0)
    assert room.calls == (1 if opens and ends else 0)
    assert len(calls) == 0  # nothing is pending any more either way


async def test_a_request_kind_sent_back_is_illegal() -> None:
    calls, _ = ledger()
    future = calls.register(1, K.CALL, True)
    assert calls.match(reply(K.NEXT, 1))
    with pytest.raises(DispatchError, match="answered call with next"):
        future.result()
    assert calls.idle


async def test_a_final_reply_calls_on_room_once_and_frees_one_slot() -> None:
    calls, room = ledger(window=2)
    a, b = calls.register(1, K.CALL, False), calls.register(2, K.CALL, False)
    assert (calls.in_flight, calls.has_room) == (2, False)
    calls.match(reply(K.RETURN, 1))
    assert (calls.in_flight, calls.has_room, room.calls) == (1, True, 1)
    calls.match(reply(K.RETURN, 1))  # a duplicate: nothing more is freed
    assert (calls.in_flight, room.calls) == (1, 1)
    calls.release(1)  # nor by releasing what is already released
    assert room.calls == 1
    assert a.done() and not b.done()


async def test_a_generator_stays_open_between_steps() -> None:
    calls, room = ledger()
    calls.register(1, K.CALL, True)
    calls.match(reply(K.YIELD, 1))
    assert (calls.in_flight, len(calls), calls.idle, room.calls) == (1, 0, False, 0)
    step = calls.register(1, K.NEXT, True)
    assert calls.in_flight == 1  # a step does not open the call again
    calls.match(reply(K.STOP, 1))
    assert isinstance(step.result(), p.Stop)
    assert (calls.in_flight, calls.idle, room.calls) == (0, True, 1)


async def test_a_ping_takes_no_slot() -> None:
    calls, room = ledger(window=1)
    future = calls.register(5, K.PING, False)
    assert (calls.in_flight, calls.has_room, calls.idle) == (0, True, False)
    calls.match(reply(K.PONG, 5))
    assert isinstance(future.result(), p.Pong)
    assert calls.idle and room.calls == 0


async def test_unknown_ids_are_reported_and_probes_dropped() -> None:
    calls, room = ledger()
    calls.register(1, K.CALL, False)
    assert calls.match(reply(K.PONG, 0))  # the worker's probe: known, dropped
    assert not calls.match(reply(K.RETURN, 99))  # no such call: the connection logs it
    assert (len(calls), calls.in_flight, room.calls) == (1, 1, 0)


async def test_a_reply_to_a_cancelled_future_still_ends_the_call() -> None:
    calls, room = ledger()
    future = calls.register(1, K.CALL, False)
    future.cancel()
    assert calls.match(reply(K.RETURN, 1))
    assert calls.idle and room.calls == 1


async def test_ids_start_at_one() -> None:
    calls, _ = ledger()
    assert [next(calls.ids) for _ in range(3)] == [1, 2, 3]


async def test_a_stream_takes_every_reply_in_order_and_ends_on_the_last() -> None:
    calls, room = ledger()
    calls.register(1, K.CALL, True)
    calls.match(reply(K.YIELD, 1))
    got: list[p.Reply | BaseException] = []
    calls.subscribe(1, got.append)
    for kind in (K.YIELD, K.YIELD, K.STOP):
        assert calls.match(reply(kind, 1))
    assert [g.kind for g in got if isinstance(g, p.Stop | p.Yield)] == [K.YIELD, K.YIELD, K.STOP]
    assert calls.idle and room.calls == 1
    assert not calls.match(reply(K.YIELD, 1))  # after its end, the stream's id is unknown


@pytest.mark.parametrize("kind", [K.RETURN, K.PONG, K.NEXT], ids=lambda k: k.name.lower())
async def test_a_stream_sent_what_no_stream_takes_fails(kind: p.Kind) -> None:
    calls, room = ledger()
    calls.register(1, K.CALL, True)
    calls.match(reply(K.YIELD, 1))
    got: list[p.Reply | BaseException] = []
    calls.subscribe(1, got.append)
    calls.match(reply(kind, 1))
    (error,) = got
    assert isinstance(error, DispatchError) and f"sent {kind.name.lower()} into a stream" in str(error)
    assert calls.idle and room.calls == 1


async def test_a_malformed_reply_fails_its_call_or_stream() -> None:
    calls, room = ledger()
    future = calls.register(1, K.CALL, False)
    calls.register(2, K.CALL, True)
    calls.match(reply(K.YIELD, 2))
    got: list[p.Reply | BaseException] = []
    calls.subscribe(2, got.append)
    calls.malformed(1, "bad envelope")
    calls.malformed(2, "bad frame")
    calls.malformed(3, "nobody's")  # unknown: nothing to fail
    with pytest.raises(DispatchError, match="worker 'w1' sent a malformed reply: bad envelope"):
        future.result()
    (error,) = got
    assert isinstance(error, DispatchError) and "bad frame" in str(error)
    assert calls.idle and room.calls == 2


async def test_forget_stops_waiting_and_frees_the_slot() -> None:
    calls, room = ledger()
    future = calls.register(1, K.CALL, False)
    calls.forget(1)
    assert calls.idle and room.calls == 1
    assert not calls.match(reply(K.RETURN, 1))  # a late reply is for an unknown call
    assert not future.done()


async def test_reattach_takes_over_the_pending_reply() -> None:
    calls, _ = ledger()
    first = calls.register(1, K.CALL, True)
    first.cancel()  # the caller was cancelled
    second = calls.reattach(1)
    calls.match(reply(K.RAISE, 1))
    assert isinstance(second.result(), p.Raise)


async def test_reattach_with_nothing_pending_fails_at_once() -> None:
    calls, _ = ledger()
    with pytest.raises(WorkerLost, match="no reply pending"):
        calls.reattach(7).result()


async def test_fail_all_delivers_the_error_to_every_future_and_sink() -> None:
    calls, room = ledger()
    futures = [calls.register(i, K.CALL, False) for i in (1, 2)]
    calls.register(3, K.CALL, True)
    calls.match(reply(K.YIELD, 3))
    got: list[p.Reply | BaseException] = []
    calls.subscribe(3, got.append)
    lost = WorkerLost("worker w1 was lost")
    calls.fail_all(lost)
    for future in futures:
        with pytest.raises(WorkerLost, match="worker w1 was lost"):
            future.result()
    (error,) = got
    assert isinstance(error, WorkerLost) and str(error) == "worker w1 was lost"
    assert calls.idle and calls.lost is lost
    assert room.calls == 0  # nobody may take a slot on a lost worker
    with pytest.raises(WorkerLost, match="worker w1 was lost"):  # reattach after loss fails at once
        calls.reattach(1).result()


async def test_fail_all_keeps_the_kind_of_error() -> None:
    calls, _ = ledger()
    future = calls.register(1, K.CALL, False)
    calls.fail_all(AuthenticationError("refused our key"))
    with pytest.raises(AuthenticationError, match="refused our key"):
        future.result()


async def test_fail_all_leaves_a_future_already_resolved() -> None:
    calls, _ = ledger()
    future = calls.register(1, K.CALL, False)
    future.set_result(p.Return(1, ()))
    calls.fail_all(WorkerLost("gone"))
    assert isinstance(future.result(), p.Return)


async def test_cancel_all_returns_the_ids_to_cancel_on_the_worker() -> None:
    calls, room = ledger()
    pending = calls.register(1, K.CALL, False)
    calls.register(2, K.CALL, True)
    calls.match(reply(K.YIELD, 2))  # open between steps, nothing pending
    calls.register(3, K.PING, False)  # pending, not open
    got: list[p.Reply | BaseException] = []
    calls.subscribe(2, got.append)
    ids = calls.cancel_all(WorkerLost("closed"))
    assert sorted(ids) == [1, 2, 3] and len(ids) == 3
    assert pending.cancelled()
    (error,) = got
    assert isinstance(error, WorkerLost)
    assert calls.idle and calls.lost is None and room.calls == 0


async def test_close_cancels_all_and_ends_the_ledger() -> None:
    calls, _ = ledger()
    calls.register(1, K.CALL, False)
    closed = WorkerLost("connection closed")
    assert calls.close(closed) == [1]
    assert calls.lost is closed
    with pytest.raises(WorkerLost, match="connection closed"):
        calls.reattach(1).result()
    assert calls.close(WorkerLost("again")) == [] and calls.lost is closed
