"""The legal shapes of a call, as data: one table for both sides.

A coroutine call is one request and one reply. A generator call is a sequence of steps, each a
request answered by exactly one reply; the caller sends the next step only after the previous
reply (pull-based), so at most one step of a call is ever running. `Cancel` may arrive at any
time and is never answered itself: it makes the running step (if any) finish early, and
abandons the call. A read-ahead stream (`credit`) lets the worker run the generator ahead of
its caller, sending yields unasked while credit lasts; it only iterates, and may be closed.

The worker's generator call holds one `CallState` and checks each request against `ACCEPTS`
(what it does with an accepted one moves it to its next state); the caller checks each reply
against `REPLIES` (legal for the request it answers, and whether it ends the call).
"""

from __future__ import annotations

import enum

from ._messages import Kind


class CallState(enum.Enum):
    """Where a generator call stands on its worker (the value reads well in a reject's text)."""

    WAITING = "waiting for a slot"  # built, not started: its first step has not begun
    RUNNING = "running a step"  # a step the caller asked for runs; its reply is pending
    SUSPENDED = "suspended at a yield"  # between steps: the caller may send the next one
    READ_AHEAD = "reading ahead"  # granted credit: runs ahead (or waits for credit), only iterates
    CLOSING = "closing"  # a read-ahead stream asked to close: its item stops, then the generator closes
    DONE = "done"  # ended or abandoned: a step still running only finishes


# Steps a caller sends one at a time, each answered by one reply.
STEPS = frozenset({Kind.NEXT, Kind.SEND, Kind.THROW, Kind.CLOSE})

# The requests a worker accepts for an existing generator call, by the call's state; others
# are rejected (BAD_STATE). A cancel is accepted in every state (it is never answered), and a
# credit in every state after the start (it may cross the end of the stream on the wire; one
# that arrives while closing or done is ignored).
ACCEPTS: dict[CallState, frozenset[Kind]] = {
    CallState.WAITING: frozenset({Kind.CANCEL}),
    CallState.RUNNING: frozenset({Kind.CANCEL, Kind.CREDIT}),
    CallState.SUSPENDED: STEPS | {Kind.CANCEL, Kind.CREDIT},
    CallState.READ_AHEAD: frozenset({Kind.CLOSE, Kind.CANCEL, Kind.CREDIT}),
    CallState.CLOSING: frozenset({Kind.CANCEL, Kind.CREDIT}),
    CallState.DONE: frozenset({Kind.CANCEL, Kind.CREDIT}),
}

# The replies that may answer each request, for the request's kind of call. A `fetch` (worker
# to caller) and the `part` answering it are outside these tables: a worker asks its caller
# for part of a shared value while one of its calls runs, whatever its state.
COROUTINE_REPLIES: dict[Kind, frozenset[Kind]] = {
    Kind.CALL: frozenset({Kind.RETURN, Kind.RAISE, Kind.REJECT}),
    Kind.PING: frozenset({Kind.PONG, Kind.REJECT}),  # a one-shot exchange outside any call
}
GENERATOR_REPLIES: dict[Kind, frozenset[Kind]] = {
    Kind.CALL: frozenset({Kind.YIELD, Kind.STOP, Kind.RAISE, Kind.REJECT}),
    Kind.NEXT: frozenset({Kind.YIELD, Kind.STOP, Kind.RAISE, Kind.REJECT}),
    Kind.SEND: frozenset({Kind.YIELD, Kind.STOP, Kind.RAISE, Kind.REJECT}),
    Kind.THROW: frozenset({Kind.YIELD, Kind.STOP, Kind.RAISE, Kind.REJECT}),
    Kind.CLOSE: frozenset({Kind.STOP, Kind.RAISE, Kind.REJECT}),
    # A credit is answered by as many yields as it grants (then, maybe, the end): the
    # caller takes them as a stream, not as the reply to one request.
    Kind.CREDIT: frozenset({Kind.YIELD, Kind.STOP, Kind.RAISE, Kind.REJECT}),
}

# (`output` is no reply: it may come at any time while a call is open, and the caller takes it
# aside, see `wool.caller._output`.)
# Replies after which a call is over: nothing more may be sent for it.
FINAL = {
    False: frozenset({Kind.RETURN, Kind.RAISE, Kind.REJECT, Kind.PONG}),
    True: frozenset({Kind.STOP, Kind.RAISE, Kind.REJECT}),
}

# What the caller looks up per reply, built from the tables above: by kind of call
# (generator or not), then by request, each legal reply mapped to whether it ends the call.
# One lookup per reply, and the request's row is taken once, when the request is sent.
REPLIES: dict[bool, dict[Kind, dict[Kind, bool]]] = {
    generator: {request: {reply: reply in FINAL[generator] for reply in replies} for request, replies in table.items()}
    for generator, table in ((False, COROUTINE_REPLIES), (True, GENERATOR_REPLIES))
}
NO_REPLIES: dict[Kind, bool] = {}  # the row of a request nothing answers (cancel)


def legal_reply(generator: bool, request: Kind, reply: Kind) -> bool:
    """Whether `reply` may answer `request` on a call of this kind."""
    return reply in REPLIES[generator].get(request, NO_REPLIES)


def is_final(generator: bool, reply: Kind) -> bool:
    """Whether `reply` ends its call."""
    return reply in FINAL[generator]
