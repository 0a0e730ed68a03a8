"""The call lifecycle tables: which reply may answer which request, which replies end a call,
and which requests a call accepts in each state. No sockets."""

from __future__ import annotations

import itertools

import pytest

from wool import protocol as p

K = p.Kind
# A fetch (worker -> caller) and its part (caller -> worker) answer no request of a call: a
# worker asks its caller for a shared value while the call runs (see `wool.sharing._fetch`).
REQUESTS = [K.CALL, K.NEXT, K.SEND, K.THROW, K.CLOSE, K.CANCEL, K.PING, K.CREDIT, K.PART]
REPLIES = [K.RETURN, K.YIELD, K.RAISE, K.STOP, K.PONG, K.REJECT, K.FETCH, K.OUTPUT]  # output: legal for no request (taken aside)

# Written out by hand from the protocol's rules, to check the tables against.
COROUTINE = {(K.CALL, K.RETURN), (K.CALL, K.RAISE), (K.CALL, K.REJECT), (K.PING, K.PONG), (K.PING, K.REJECT)}
GENERATOR = {
    *((step, reply) for step in (K.CALL, K.NEXT, K.SEND, K.THROW) for reply in (K.YIELD, K.STOP, K.RAISE, K.REJECT)),
    (K.CLOSE, K.STOP),
    (K.CLOSE, K.RAISE),
    (K.CLOSE, K.REJECT),
    *((K.CREDIT, reply) for reply in (K.YIELD, K.STOP, K.RAISE, K.REJECT)),
}


def test_kinds_split_into_requests_and_replies() -> None:
    assert set(REQUESTS) | set(REPLIES) == set(p.Kind)
    assert not set(REQUESTS) & set(REPLIES)


@pytest.mark.parametrize(("request_", "reply"), list(itertools.product(REQUESTS, REPLIES)), ids=lambda k: k.name.lower())
def test_legal_reply_of_a_coroutine_call(request_: p.Kind, reply: p.Kind) -> None:
    assert p.legal_reply(False, request_, reply) is ((request_, reply) in COROUTINE)


@pytest.mark.parametrize(("request_", "reply"), list(itertools.product(REQUESTS, REPLIES)), ids=lambda k: k.name.lower())
def test_legal_reply_of_a_generator_call(request_: p.Kind, reply: p.Kind) -> None:
    assert p.legal_reply(True, request_, reply) is ((request_, reply) in GENERATOR)


def test_a_coroutine_call_is_never_answered_by_yield_or_stop() -> None:
    assert not p.legal_reply(False, K.CALL, K.YIELD)
    assert not p.legal_reply(False, K.CALL, K.STOP)


def test_a_generator_call_never_returns() -> None:
    assert not any(p.legal_reply(True, request, K.RETURN) for request in REQUESTS)


def test_close_is_never_answered_by_yield() -> None:
    assert not p.legal_reply(True, K.CLOSE, K.YIELD)
    assert p.legal_reply(True, K.CLOSE, K.STOP)


def test_a_coroutine_call_takes_no_steps() -> None:
    for step in p.STEPS:
        assert not any(p.legal_reply(False, step, reply) for reply in REPLIES)


def test_cancel_is_never_answered_and_ping_is_a_one_shot_exchange() -> None:
    """Cancel is never answered itself; a ping is answered by a pong (or a reject), like a
    coroutine call, never as a step of a generator."""
    for generator in (False, True):
        for reply in REPLIES:
            assert not p.legal_reply(generator, K.CANCEL, reply)
            assert p.legal_reply(generator, K.PING, reply) == (not generator and reply in (K.PONG, K.REJECT))


def test_a_reply_never_answers_a_reply() -> None:
    for generator, request, reply in itertools.product((False, True), REPLIES, REPLIES):
        assert not p.legal_reply(generator, request, reply)


@pytest.mark.parametrize(
    ("generator", "reply", "final"),
    [
        (False, K.RETURN, True),
        (False, K.RAISE, True),
        (False, K.REJECT, True),
        (False, K.YIELD, False),
        (False, K.STOP, False),
        (False, K.PONG, True),  # ends a ping
        (True, K.STOP, True),
        (True, K.RAISE, True),
        (True, K.REJECT, True),
        (True, K.YIELD, False),
        (True, K.RETURN, False),
        (True, K.PONG, False),
    ],
    ids=lambda v: v.name.lower() if isinstance(v, p.Kind) else str(v),
)
def test_is_final(generator: bool, reply: p.Kind, final: bool) -> None:
    assert p.is_final(generator, reply) is final


def test_every_legal_reply_but_yield_ends_the_call() -> None:
    """A step that does not yield leaves nothing to step: the call is over."""
    for generator, table in ((False, COROUTINE), (True, GENERATOR)):
        for _, reply in table:
            assert p.is_final(generator, reply) is (reply is not K.YIELD)


def test_steps() -> None:
    assert p.STEPS == {K.NEXT, K.SEND, K.THROW, K.CLOSE}


S = p.CallState


def test_a_running_call_accepts_only_cancel_and_credit() -> None:
    assert p.ACCEPTS[S.RUNNING] == {K.CANCEL, K.CREDIT}
    assert not p.ACCEPTS[S.RUNNING] & p.STEPS


def test_a_suspended_generator_accepts_every_step_cancel_and_credit() -> None:
    assert p.ACCEPTS[S.SUSPENDED] == p.STEPS | {K.CANCEL, K.CREDIT}


def test_a_read_ahead_stream_only_iterates_but_may_be_closed() -> None:
    assert p.ACCEPTS[S.READ_AHEAD] == {K.CLOSE, K.CANCEL, K.CREDIT}


def test_a_waiting_call_accepts_only_cancel() -> None:
    assert p.ACCEPTS[S.WAITING] == {K.CANCEL}


def test_cancel_is_accepted_in_every_state_and_steps_only_when_suspended() -> None:
    """A cancel is never answered, so it cannot be rejected; a step needs a generator at a
    `yield` waiting for it (a read-ahead stream's close aside)."""
    for state, accepted in p.ACCEPTS.items():
        assert K.CANCEL in accepted
        steps = accepted & p.STEPS
        assert steps == (p.STEPS if state is S.SUSPENDED else {K.CLOSE} if state is S.READ_AHEAD else set())


def test_every_state_has_a_row() -> None:
    assert set(p.ACCEPTS) == set(S)


def test_no_state_accepts_a_new_call_ping_or_reply() -> None:
    for accepted in p.ACCEPTS.values():
        assert K.CALL not in accepted and K.PING not in accepted
        assert not accepted & set(REPLIES)


@pytest.mark.parametrize("generator", [False, True])
def test_the_callers_table_agrees_with_the_rules(generator: bool) -> None:
    """`REPLIES`, which the caller reads once per reply, says the same as `legal_reply` and
    `is_final` for every request and reply."""
    table = GENERATOR if generator else COROUTINE
    for request in REQUESTS:
        row = p.REPLIES[generator].get(request, p.NO_REPLIES)
        assert set(row) == {reply for req, reply in table if req is request}
        for reply, final in row.items():
            assert final is p.is_final(generator, reply)
