"""Which discoveries a process without CURVE keys may follow.

Without keys nothing proves that a worker is who discovery says: whoever answers at a listed
endpoint receives the calls sent there (their pickled arguments), and its replies are
unpickled by the caller, which runs any code they carry. So a keyless process may only
follow a discovery whose entries this user alone can write and whose endpoints this user
alone can listen at: a registry file in the private runtime directory (`LocalDiscovery`) with
its workers' private `ipc://` sockets, or a static list of such sockets. Zeroconf takes
announcements from every host on the network and every local user (`LanDiscovery`), DNS
answers are not authenticated (`DnsDiscovery`), and a tcp:// port belongs to whoever listens
there first: those need keys, or an explicit opt-in.
A user-defined discovery is the user's to judge.
"""

from __future__ import annotations

from .._endpoints import parse_endpoint
from .._info import Discovery
from .._ipc import ipc_endpoint_problem
from ._dns import DnsDiscovery
from ._lan import LanDiscovery
from ._static import StaticDiscovery


def keyless_exposure(discovery: Discovery | None) -> str | None:
    """Who besides this user could pose as a worker of `discovery` (None: nobody)."""
    if isinstance(discovery, LanDiscovery):
        return f"{discovery!r} takes worker announcements from every host on the network and every user of this machine"
    if isinstance(discovery, DnsDiscovery):
        return (
            f"{discovery!r} takes worker addresses from DNS answers, which are not authenticated, and every host "
            "and user that gets a listed port first can listen there"
        )
    if isinstance(discovery, StaticDiscovery):
        for endpoint in discovery.endpoints:
            if endpoint.startswith("tcp://"):
                who = "every user of this machine" if parse_endpoint(endpoint).local_only else "every host and user"
                return f"{discovery!r} lists {endpoint}, where {who} that gets the port first can listen"
            problem = ipc_endpoint_problem(endpoint)
            if problem is not None:
                return f"{discovery!r} lists {endpoint}, which other users may be able to take: {problem}"
    return None


def keyless_refusal(discovery: Discovery | None, opt_in: str) -> str | None:
    """Why a process without keys must not follow `discovery` unless it passes `opt_in`
    (None: it may)."""
    exposure = keyless_exposure(discovery)
    if exposure is None:
        return None
    return (
        f"refusing to follow discovery without CURVE keys: {exposure}; whoever poses as one of its workers would "
        "receive calls, and their replies, unpickled here, could run any code as this user. Generate keys with "
        "`python -m wool.keys generate DIR` and use them on both sides (WorkerPool(keys=DIR), "
        f"python -m wool.worker --keys DIR), or pass {opt_in} if everyone who can reach it is trusted"
    )
