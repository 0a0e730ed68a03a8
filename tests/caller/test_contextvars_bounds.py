"""What a context frame may cost a process: values for keys no `wool.ContextVar` of the
process names are held in the receiving context, never as process-wide state; a variable
created later still finds them; and a frame carries at most `MAX_CONTEXT_KEYS` values in at
most `MAX_CONTEXT_BYTES`, refused at the sender (`ValueError`) and at the receiver
(`SerializationError`, the size checked before anything is unpickled). No processes here:
`tests/test_hostile_callers.py` sends such frames to a real worker."""

from __future__ import annotations

import contextvars
import pickle
from typing import Any

import pytest

import wool
from wool.caller import _contextvars as cv

FRESH = [("tests.fresh", f"k{i}") for i in range(cv.MAX_CONTEXT_KEYS)]


def fresh_namespace(tag: str) -> str:
    """A namespace no variable of this process names (each test its own)."""
    namespace = f"tests.bounds.{tag}"
    assert not any(key[0] == namespace for key in cv._storage)
    return namespace


def test_values_for_unknown_keys_create_no_process_wide_variable() -> None:
    namespace = fresh_namespace("unknown")
    values = {(namespace, f"k{i}"): i for i in range(cv.MAX_CONTEXT_KEYS)}
    before = len(cv._storage)

    def receive() -> tuple[dict[Any, Any], bytes]:
        baseline = cv.apply(cv.unpickle("a call", pickle.dumps(values)))
        return cv.changes(contextvars.copy_context(), baseline), cv.capture()

    changed, forwarded = contextvars.Context().run(receive)
    assert len(cv._storage) == before
    assert changed == {}  # nothing was set: nothing goes back
    assert cv.unpickle("x", forwarded) == values  # and all of it goes on to nested calls


def test_a_variable_created_after_its_value_arrived_finds_it_in_that_context_only() -> None:
    namespace = fresh_namespace("late")
    key = (namespace, "trace")

    def receive() -> tuple[Any, Any, Any, Any, dict[Any, Any]]:
        baseline = cv.apply({key: "arrived"})
        var: wool.ContextVar[str] = wool.ContextVar("trace", namespace=namespace)  # the module is imported now
        seen = var.get()
        token = var.set("changed")
        old = token.old_value
        after_set = var.get()
        changed = cv.changes(contextvars.copy_context(), baseline)
        var.reset(token)
        return seen, old, after_set, var.get(), changed

    seen, old, after_set, after_reset, changed = contextvars.Context().run(receive)
    assert (seen, old, after_set, after_reset) == ("arrived", "arrived", "changed", "arrived")
    assert changed == {key: "changed"}
    assert contextvars.Context().run(wool.ContextVar("trace", namespace=namespace).get, None) is None


def test_unknown_keys_a_nested_reply_brings_travel_back_and_can_be_unset() -> None:
    namespace = fresh_namespace("nested")
    sent, added = (namespace, "sent"), (namespace, "added")

    def receive() -> tuple[dict[Any, Any], dict[Any, Any]]:
        baseline = cv.apply({sent: 1})
        cv.merge([(added, 2)])  # a nested call's reply set a variable this process does not know
        first = cv.changes(contextvars.copy_context(), baseline)
        cv.merge([(sent, cv._UNSET), (added, cv._UNSET)])  # and then unset both
        return first, cv.changes(contextvars.copy_context(), baseline)

    first, second = contextvars.Context().run(receive)
    assert first == {added: 2}
    assert second == {sent: cv._UNSET}  # `added` was never in the baseline: nothing to report
    assert not any(key[0] == namespace for key in cv._storage)


def test_an_unknown_key_unset_is_reported_beside_a_known_variable_set() -> None:
    namespace = fresh_namespace("mixed")
    known: wool.ContextVar[int] = wool.ContextVar("known", namespace=namespace)

    def receive() -> dict[Any, Any]:
        baseline = cv.apply({(namespace, "unknown"): 1})
        known.set(2)
        cv.merge([((namespace, "unknown"), cv._UNSET)])
        return cv.changes(contextvars.copy_context(), baseline)

    assert contextvars.Context().run(receive) == {(namespace, "known"): 2, (namespace, "unknown"): cv._UNSET}


def test_a_known_variable_unset_by_a_reply_is_unset_even_if_its_value_arrived_unknown() -> None:
    namespace = fresh_namespace("unset")

    def receive() -> Any:
        cv.apply({(namespace, "v"): "arrived"})
        var: wool.ContextVar[str] = wool.ContextVar("v", namespace=namespace)
        cv.merge([((namespace, "v"), cv._UNSET)])
        return var.get("unset")

    assert contextvars.Context().run(receive) == "unset"


def test_the_next_step_replaces_unknown_values() -> None:
    """`apply` makes the context exactly the new values, unknown ones included."""
    namespace = fresh_namespace("steps")

    def receive() -> Any:
        cv.apply({(namespace, "a"): 1})
        cv.apply({(namespace, "b"): 2})
        return cv.unpickle("x", cv.capture())

    assert contextvars.Context().run(receive) == {(namespace, "b"): 2}


def test_more_variables_than_a_call_carries_fail_at_the_call_site() -> None:
    variables = [wool.ContextVar(f"v{i}", namespace="tests.bounds.many") for i in range(cv.MAX_CONTEXT_KEYS + 1)]

    def capture(count: int) -> bytes:
        for var in variables[:count]:
            var.set(0)
        return cv.capture()

    assert len(cv.unpickle("x", contextvars.Context().run(capture, cv.MAX_CONTEXT_KEYS))) == cv.MAX_CONTEXT_KEYS
    with pytest.raises(ValueError, match=rf"{cv.MAX_CONTEXT_KEYS + 1} wool.ContextVars are set.*at most {cv.MAX_CONTEXT_KEYS}"):
        contextvars.Context().run(capture, cv.MAX_CONTEXT_KEYS + 1)


def test_values_larger_than_a_call_carries_fail_at_the_call_site() -> None:
    var = wool.ContextVar("big", namespace="tests.bounds")
    contextvars.Context().run(var.set, b"x" * (cv.MAX_CONTEXT_BYTES - 100))  # fits: nothing raised
    with pytest.raises(ValueError, match=rf"pickle to \d+ bytes.*at most {cv.MAX_CONTEXT_BYTES}.*as arguments"):
        contextvars.Context().run(lambda: (var.set(b"x" * cv.MAX_CONTEXT_BYTES), cv.capture()))


def test_a_receiver_refuses_an_oversize_frame_before_unpickling_it() -> None:
    """A frame one byte over the limit is refused by its size: it is not even a pickle."""
    with pytest.raises(wool.SerializationError, match=rf"{cv.MAX_CONTEXT_BYTES + 1} bytes, more than the {cv.MAX_CONTEXT_BYTES}"):
        cv.unpickle("call 7", b"\x00" * (cv.MAX_CONTEXT_BYTES + 1))


def test_a_receiver_refuses_more_values_than_a_call_carries() -> None:
    frame = pickle.dumps({("", str(i)): None for i in range(cv.MAX_CONTEXT_KEYS + 1)})
    assert len(frame) <= cv.MAX_CONTEXT_BYTES
    with pytest.raises(wool.SerializationError, match=rf"{cv.MAX_CONTEXT_KEYS + 1} of them, more than the {cv.MAX_CONTEXT_KEYS}"):
        cv.unpickle("call 7", frame)
    assert len(cv.unpickle("call 7", pickle.dumps(dict.fromkeys(FRESH)))) == cv.MAX_CONTEXT_KEYS


class Key(tuple):  # type: ignore[type-arg]
    """A tuple subclass: its pickle could run a class's code wherever keys are hashed."""


@pytest.mark.parametrize("keys", [[("a",)], [("a", 1)], [(b"a", "b")], [["a", "b"]], ["ab"]], ids=repr)
def test_a_receiver_refuses_keys_that_name_no_variable(keys: list[Any]) -> None:
    for bad in [*keys, Key(("a", "b"))]:
        try:
            frame = pickle.dumps({bad: 1})
        except TypeError:  # unhashable: not even a dict key
            continue
        with pytest.raises(wool.SerializationError, match="not a snapshot"):
            cv.unpickle("call 7", frame)
