"""What to do about a value that cannot be pickled: the common cases, named by the type that
pickle refused. Pure: the text of an error in, a sentence out."""

from __future__ import annotations

import re

_REFUSED = re.compile(r"cannot pickle '([\w.]+)' object")

_INSIDE = "create it inside the routine"
_LIFESPAN = "or once per worker in a lifespan (`WorkerPool(lifespan=...)`) and read it there with `wool.state()`"

# (pattern on the refused type's name, what it is, what to do); first match wins.
_CASES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (
        re.compile(r"(^|\.)(lock|RLock|Condition|Semaphore|BoundedSemaphore|Event|Barrier)$", re.I),
        "a lock only works within one process",
        f"{_INSIDE}, {_LIFESPAN}; to coordinate calls across workers, pass data rather than locks",
    ),
    (
        re.compile(r"(^|\.)(socket|SSLSocket|SSLContext|Socket|Poller|\w*Selector)$"),
        "a socket (or a network client holding one) belongs to the process that opened it",
        f"pass its address and connect {_INSIDE.replace('create it ', '')}, {_LIFESPAN}",
    ),
    (
        re.compile(r"^_io\.|(^|\.)(TextIOWrapper|BufferedReader|BufferedWriter|BufferedRandom|FileIO|mmap)$"),
        "an open file belongs to the process that opened it",
        "pass its path (or its contents) and open it inside the routine",
    ),
    (
        re.compile(r"^(generator|coroutine|async_generator|itertools\.\w+|\w*_iterator)$"),
        "an iterator's or coroutine's state cannot travel",
        "pass the values themselves (say `list(...)`), or make the producer a routine and call it where the values are needed",
    ),
    (
        re.compile(r"(connection|cursor|engine|session|pool|client)$", re.I),
        "a database connection (or a client of some service) belongs to the process that opened it",
        f"pass what it needs to connect and {_INSIDE.replace('create it ', 'connect ')}, {_LIFESPAN}",
    ),
)


def pickling_hint(error: BaseException) -> str:
    """A sentence (starting with ". ") saying what to do about `error`, raised by pickling a
    value; "" when it is not one of the common cases."""
    text = str(error)
    if text.startswith("Cannot pickle files"):  # cloudpickle's words for a file open for writing
        text = "cannot pickle '_io.TextIOWrapper' object"
    found = _REFUSED.search(text)
    if found is None:
        return ""
    refused = found.group(1)
    for pattern, why, what in _CASES:
        if pattern.search(refused):
            return f". {why[0].upper()}{why[1:]}: {what}"
    return ""
