"""The legal shapes of a call, as data.

A coroutine call is one request and one reply. A generator call is a sequence of steps, each a
request answered by exactly one reply; the caller sends the next step only after the previous
reply (pull-based), so at most one step of a call is ever running. `Cancel` may arrive at any
time and is never answered itself: it makes the running step (if any) finish early, and
abandons the call.
"""

from __future__ import annotations

from ._messages import Kind

# The replies that may answer each request, for the request's kind of call.
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

# Replies after which a call is over: nothing more may be sent for it.
FINAL = {
    False: frozenset({Kind.RETURN, Kind.RAISE, Kind.REJECT, Kind.PONG}),
    True: frozenset({Kind.STOP, Kind.RAISE, Kind.REJECT}),
}

# The requests a worker accepts for an existing call, by the call's state.
STEPS = frozenset({Kind.NEXT, Kind.SEND, Kind.THROW, Kind.CLOSE})
ACCEPTS: dict[str, frozenset[Kind]] = {
    "running": frozenset({Kind.CANCEL, Kind.CREDIT}),
    "suspended": STEPS | {Kind.CANCEL, Kind.CREDIT},
}


def legal_reply(generator: bool, request: Kind, reply: Kind) -> bool:
    """Whether `reply` may answer `request` on a call of this kind."""
    table = GENERATOR_REPLIES if generator else COROUTINE_REPLIES
    return reply in table.get(request, frozenset())


def is_final(generator: bool, reply: Kind) -> bool:
    """Whether `reply` ends its call."""
    return reply in FINAL[generator]
