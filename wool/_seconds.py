"""The one check of a number of seconds given by a user (timeouts, intervals, periods).

A leaf module: it imports nothing from wool, so every layer may use it.
"""

from __future__ import annotations

import math


def check_seconds(
    value: object,
    what: str,
    *,
    positive: bool = False,
    at_least: float | None = None,
    at_most: float | None = None,
) -> float:
    """`value` as a float number of seconds: an int or float (not a bool), finite, not negative
    (`positive`: above zero), and within [`at_least`, `at_most`] when given. Otherwise
    `TypeError` or `ValueError`, naming `what` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if at_least is not None and at_most is not None and not at_least <= value <= at_most:
        raise ValueError(f"{what} must be between {at_least:g} and {at_most:g} seconds, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{what} must be a finite, {kind} number of seconds, got {value!r}")
    if at_least is not None and value < at_least:
        raise ValueError(f"{what} must be at least {at_least:g} seconds, got {value!r}")
    if at_most is not None and value > at_most:
        raise ValueError(f"{what} must be at most {at_most:g} seconds, got {value!r}")
    return float(value)


def check_optional_seconds(value: object, what: str, *, positive: bool = False) -> float | None:
    """None, or `value` checked as by `check_seconds`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    return check_seconds(value, what, positive=positive)
