"""wool: async routines that run on a ZeroMQ peer mesh with the semantics of local asyncio.

@wool.routine
async def add(x: int, y: int) -> int:
    return x + y

async with wool.WorkerPool(size=4):
    await add(1, 2)
"""

from ._errors import (
    AuthenticationError,
    DispatchError,
    NoPoolError,
    NoWorkersAvailable,
    RemoteBaseException,
    RemoteError,
    SerializationError,
    SharedLost,
    SharedReleased,
    WoolError,
    WorkerLost,
    WorkerStartError,
)
from ._keys import Keys
from ._pool import Executor, WorkerPool
from ._run import run
from ._state import state
from .caller import (
    Candidate,
    ContextVar,
    LeastOutstanding,
    LoadBalancer,
    Map,
    Options,
    ReadAhead,
    RoundRobin,
    Token,
    map,
    options,
    readahead,
    remaining,
    routine,
)
from .discovery import (
    Discovery,
    DiscoveryError,
    DiscoveryEvent,
    DnsDiscovery,
    LanDiscovery,
    LocalDiscovery,
    StaticDiscovery,
    WorkerInfo,
)
from .sharing import Shared, share

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Candidate",
    "ContextVar",
    "Discovery",
    "DiscoveryError",
    "DiscoveryEvent",
    "DispatchError",
    "DnsDiscovery",
    "Executor",
    "Keys",
    "LanDiscovery",
    "LeastOutstanding",
    "LoadBalancer",
    "LocalDiscovery",
    "Map",
    "NoPoolError",
    "NoWorkersAvailable",
    "Options",
    "ReadAhead",
    "RemoteBaseException",
    "RemoteError",
    "RoundRobin",
    "SerializationError",
    "Shared",
    "SharedLost",
    "SharedReleased",
    "StaticDiscovery",
    "Token",
    "WoolError",
    "WorkerInfo",
    "WorkerLost",
    "WorkerPool",
    "WorkerStartError",
    "map",
    "options",
    "readahead",
    "remaining",
    "routine",
    "share",
    "run",
    "state",
]


def _present_as_wool() -> None:
    """Make each public name print as `wool.X` (in tracebacks, reprs and span attributes)
    rather than as the private module that defines it; pickles still find it, as `wool.X`."""
    for name in __all__:
        value = globals()[name]
        if str(getattr(value, "__module__", "")).startswith("wool."):
            try:
                value.__module__ = __name__
            except (AttributeError, TypeError):  # a type defined in C: not ours to rename
                pass


_present_as_wool()
