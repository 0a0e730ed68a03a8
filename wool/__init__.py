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
    "state",
]
