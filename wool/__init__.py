"""wool: async routines that run on a ZeroMQ peer mesh with the semantics of local asyncio.

@wool.routine
async def add(x: int, y: int) -> int:
    return x + y

async with wool.WorkerPool(size=4):
    await add(1, 2)
"""

from ._contextvars import ContextVar, Token
from ._errors import (
    AuthenticationError,
    DispatchError,
    NoPoolError,
    NoWorkersAvailable,
    RemoteBaseException,
    RemoteError,
    SerializationError,
    WoolError,
    WorkerLost,
    WorkerStartError,
)
from ._keys import Keys
from ._loadbalancer import Candidate, LeastOutstanding, LoadBalancer, RoundRobin
from ._map import Map, map
from ._options import Options, options, remaining
from ._pool import WorkerPool
from ._readahead import ReadAhead, readahead
from ._routine import routine
from ._state import state
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
    "state",
]
