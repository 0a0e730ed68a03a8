"""How a worker is written into, and read back from, a Zeroconf service record. Pure: no I/O
beyond reading this machine's own identity and interface list.

A worker is one `_wool._tcp.local.` service instance. Its TXT record carries the `WorkerInfo`
and the namespace; the SRV and A records carry the address(es) it can be reached at. The TXT
endpoint is always one a peer can connect to: a worker bound to a wildcard (`tcp://0.0.0.0:P`)
is advertised at this host's interface addresses, the first in the TXT record and all of them
as A records, and a reader on another subnet picks the address on its own subnet.

An endpoint only reachable from this machine's network namespace (loopback, ipc) is stamped
with a `scope` naming that namespace; readers elsewhere ignore it, so a peer never dials its
own 127.0.0.1 thinking it reaches ours.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import socket
from collections.abc import Iterable, Mapping, Sequence

import ifaddr

from .._endpoints import parse_endpoint
from .._info import DiscoveryError, WorkerInfo

SERVICE_TYPE = "_wool._tcp.local."
TXT_VERSION = "1"
_WILDCARDS = {"0.0.0.0", "*", "::", ""}
_MAX_TXT_ENTRY = 255  # bytes of one `key=value` string (RFC 6763 section 6.1)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def instance_name(worker_id: str, namespace: str) -> str:
    """The worker's service instance name: unique per worker start (its id is), per namespace."""
    ns = hashlib.sha256(namespace.encode()).hexdigest()[:8]
    wid = worker_id if len(worker_id.encode()) <= 48 else hashlib.sha256(worker_id.encode()).hexdigest()[:32]
    return f"{wid}-{ns}.{SERVICE_TYPE}"


def server_name(name: str) -> str:
    """A host name of the instance's own (SRV target), so no two workers share A records."""
    return f"wool-{hashlib.sha256(name.encode()).hexdigest()[:16]}.local."


def local_scope() -> str:
    """This kernel boot and network namespace: where loopback and ipc endpoints are reachable."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/net').st_ino}"
    except OSError:
        return socket.gethostname()


def local_networks() -> list[Network]:
    """The networks this host's interfaces are on."""
    networks: list[Network] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                networks.append(ipaddress.ip_interface(f"{address.split('%')[0]}/{ip.network_prefix}").network)
            except ValueError:
                continue
    return networks


def interface_addresses(interfaces: Sequence[str] | None) -> list[str]:
    """IPv4 addresses a wildcard-bound worker is advertised at: the chosen interfaces (all of
    this host's when None), non-loopback first."""
    if interfaces is None:
        candidates = [ip.ip for a in ifaddr.get_adapters() for ip in a.ips if isinstance(ip.ip, str)]
    else:
        candidates = list(interfaces)
    v4 = list(dict.fromkeys(a for a in candidates if isinstance(_address(a), ipaddress.IPv4Address)))
    return sorted(v4, key=lambda a: ipaddress.IPv4Address(a).is_loopback)


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _split_tcp(endpoint: str) -> tuple[str, str] | None:
    """(host, port) of a `tcp://HOST:PORT` endpoint, else None."""
    try:
        parsed = parse_endpoint(endpoint)
    except ValueError:
        return None
    return (parsed.host, str(parsed.port)) if parsed.scheme == "tcp" else None


def is_local_only(endpoint: str) -> bool:
    """Whether only this machine's network namespace can reach `endpoint` (not, if it is
    not an endpoint at all)."""
    try:
        return parse_endpoint(endpoint).local_only
    except ValueError:
        return False


def advertise(info: WorkerInfo, interfaces: Sequence[str] | None) -> tuple[str, list[str], int]:
    """The endpoint to publish for `info`, the addresses for its A records (readers need at
    least one to resolve the service), and the port."""
    tcp = _split_tcp(info.endpoint)
    if tcp is None or is_local_only(info.endpoint):
        return info.endpoint, ["127.0.0.1"], int(tcp[1]) if tcp else 0
    host, port = tcp
    if host in _WILDCARDS:
        addresses = interface_addresses(interfaces)
        if not addresses:
            raise DiscoveryError(f"no IPv4 interface address to advertise {info.endpoint} at")
        return f"tcp://{addresses[0]}:{port}", addresses, int(port)
    address = _address(host)
    if address is not None and address.version == 4:
        return info.endpoint, [str(address)], int(port)
    # A host name or an IPv6 address: readers dial the TXT endpoint; the A records only
    # have to exist.
    return info.endpoint, interface_addresses(interfaces) or ["127.0.0.1"], int(port)


def encode(info: WorkerInfo, namespace: str, endpoint: str, scope: str) -> dict[str, str]:
    """The TXT properties of `info` published at `endpoint`; `DiscoveryError` if too big."""
    txt = {
        "txtvers": TXT_VERSION,
        "ns": namespace,
        "id": info.id,
        "ep": endpoint,
        "pid": str(info.pid),
        "host": info.host,
        "tags": json.dumps(sorted(info.tags), separators=(",", ":")),
        "pv": str(info.version),
    }
    if info.max_calls is not None:
        txt["max"] = str(info.max_calls)
    if info.public_key is not None:
        txt["key"] = info.public_key
    if info.max_message_size is not None:
        txt["mms"] = str(info.max_message_size)
    if is_local_only(endpoint):
        txt["scope"] = scope
    for key, value in txt.items():
        if len(key.encode()) + 1 + len(value.encode()) > _MAX_TXT_ENTRY:
            raise DiscoveryError(f"worker {info.id!r}: {key!r} is too long for a Zeroconf TXT record")
    return txt


def _text(properties: Mapping[bytes, bytes | None], key: str) -> str:
    value = properties.get(key.encode())
    if value is None:
        raise ValueError(f"no {key!r} in the TXT record")
    return value.decode()


def decode(
    properties: Mapping[bytes, bytes | None],
    addresses: Iterable[str],
    scope: str,
    networks: Sequence[Network],
) -> tuple[str, WorkerInfo] | None:
    """(namespace, worker) from a service record, or None if this host cannot reach it.
    Raises `ValueError` (also `UnicodeError`) naming what is malformed."""
    if _text(properties, "txtvers") != TXT_VERSION:
        raise ValueError(f"unsupported TXT format {_text(properties, 'txtvers')!r}")
    max_calls = properties.get(b"max")
    public_key = properties.get(b"key")
    max_message_size = properties.get(b"mms")
    info = WorkerInfo.from_dict(
        {
            "id": _text(properties, "id"),
            "endpoint": _text(properties, "ep"),
            "pid": int(_text(properties, "pid")),
            "host": _text(properties, "host"),
            "tags": json.loads(_text(properties, "tags")),
            "version": int(_text(properties, "pv")),
            "max_calls": None if max_calls is None else int(max_calls),
            "public_key": None if public_key is None else public_key.decode(),
            "max_message_size": None if max_message_size is None else int(max_message_size),
        }
    )
    if is_local_only(info.endpoint):
        stamp = properties.get(b"scope")
        if stamp is None or stamp.decode() != scope:
            return None
    else:
        info = dataclasses.replace(info, endpoint=_nearest(info.endpoint, addresses, networks))
    return _text(properties, "ns"), info


def _nearest(endpoint: str, addresses: Iterable[str], networks: Sequence[Network]) -> str:
    """`endpoint`, with its address swapped for another of the worker's addresses when only
    that one is on a network of ours (a multi-homed worker bound to a wildcard)."""
    tcp = _split_tcp(endpoint)
    host = _address(tcp[0]) if tcp is not None else None
    if tcp is None or host is None or host.version != 4 or any(host in n for n in networks):
        return endpoint
    for text in addresses:
        other = _address(text)
        if other is not None and other.version == 4 and any(other in n for n in networks):
            return f"tcp://{other}:{tcp[1]}"
    return endpoint
