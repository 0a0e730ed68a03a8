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
    WoolError,
    WorkerLost,
    WorkerStartError,
)
from ._keys import Keys
from ._loadbalancer import Candidate, LeastOutstanding, LoadBalancer, RoundRobin
from ._pool import WorkerPool
from ._readahead import ReadAhead, readahead
from ._routine import routine
from .discovery import (
    Discovery,
    DiscoveryError,
    DiscoveryEvent,
    LanDiscovery,
    LocalDiscovery,
    StaticDiscovery,
    WorkerInfo,
)

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "Candidate",
    "Discovery",
    "DiscoveryError",
    "DiscoveryEvent",
    "DispatchError",
    "Keys",
    "LanDiscovery",
    "LeastOutstanding",
    "LoadBalancer",
    "LocalDiscovery",
    "NoPoolError",
    "NoWorkersAvailable",
    "ReadAhead",
    "RemoteBaseException",
    "RemoteError",
    "RoundRobin",
    "SerializationError",
    "StaticDiscovery",
    "WoolError",
    "WorkerInfo",
    "WorkerLost",
    "WorkerPool",
    "WorkerStartError",
    "readahead",
    "routine",
]
