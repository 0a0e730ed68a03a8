"""The decorator itself: what `@wool.routine` returns, before anything is dispatched."""

from __future__ import annotations

import inspect
import pydoc

import pytest
from routines import Calculator, add, countdown

import wool


def test_keeps_name_docstring_and_signature() -> None:
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers on a worker."
    assert str(inspect.signature(add)) == "(x: 'int', y: 'int') -> 'int'"
    assert "Add two numbers" in (inspect.getdoc(add) or "")


def test_coroutine_and_generator_kinds_are_preserved() -> None:
    assert inspect.iscoroutinefunction(add)
    assert inspect.isasyncgenfunction(countdown)
    coro = add(1, 2)
    assert inspect.iscoroutine(coro)
    coro.close()
    assert inspect.isasyncgen(countdown(3))


@pytest.mark.parametrize("fn", [len, 42, "add"], ids=["builtin", "int", "str"])
def test_what_is_not_a_function_is_rejected_at_decoration(fn: object) -> None:
    with pytest.raises(TypeError, match="needs a function"):
        wool.routine(fn)  # type: ignore[call-overload]


def test_a_plain_def_becomes_a_coroutine_function() -> None:
    @wool.routine
    def sync(x: int) -> int:
        return x

    assert inspect.iscoroutinefunction(sync)
    coro = sync(1)
    assert inspect.iscoroutine(coro)
    coro.close()


async def test_call_outside_a_pool_names_the_problem() -> None:
    with pytest.raises(wool.NoPoolError, match="outside any worker pool") as info:
        await add(1, 2)
    assert isinstance(info.value, wool.WoolError)
    with pytest.raises(wool.NoPoolError):
        await anext(countdown(2))


def test_methods_are_routines_too() -> None:
    assert inspect.iscoroutinefunction(Calculator.plus)
    assert inspect.iscoroutinefunction(Calculator.double)
    assert inspect.iscoroutinefunction(Calculator.triple)
    assert inspect.signature(Calculator(1).plus).parameters.keys() == {"x"}


def test_help_shows_the_original_signature_and_docstring() -> None:
    text = pydoc.render_doc(add, renderer=pydoc.plaintext)
    assert "add(x: 'int', y: 'int') -> 'int'" in text
    assert "Add two numbers on a worker." in text
