"""What a DNS name lists, asked with dnspython: the endpoints behind an SRV name, or a name's
addresses at a given port.

Kept apart from `_dns`, which imports this module only when a `DnsDiscovery` first resolves:
dnspython takes about 40 ms to import, which every process importing wool (each worker
start) would otherwise pay whether or not it uses DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

# An answer listing more endpoints is cut to this many (DNS answers are untrusted): a watch asks
# each one at least every poll interval, `_probe.PROBES_AT_ONCE` at a time.
MAX_ENDPOINTS = 512


class ResolutionError(Exception):
    """No server gave an answer (as opposed to an answer listing nothing)."""


def endpoint(address: str, port: int) -> str:
    """The tcp:// endpoint of `address` (IPv4 or IPv6) and `port`."""
    return f"tcp://[{address}]:{port}" if ":" in address else f"tcp://{address}:{port}"


async def resolve_endpoints(
    name: str, port: int | None, nameservers: tuple[tuple[str, int], ...] | None, timeout: float
) -> set[str]:
    """With `port`, `name`'s A and AAAA addresses at that port; without, the endpoints of its
    SRV records. Empty for a name that does not exist or has no such records; raises
    `ResolutionError` (with dnspython's text) if no server answered within `timeout`."""
    try:
        resolver = _resolver(nameservers, timeout)
        if port is not None:
            return {endpoint(a, port) for a in await _addresses(resolver, name, timeout)}
        return await _srv_endpoints(resolver, name, timeout)
    except dns.exception.DNSException as e:
        raise ResolutionError(str(e)) from None


def _resolver(nameservers: tuple[tuple[str, int], ...] | None, timeout: float) -> dns.asyncresolver.Resolver:
    if nameservers is None:
        resolver = dns.asyncresolver.Resolver()  # /etc/resolv.conf: servers, search domains
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in nameservers]
    resolver.lifetime = resolver.timeout = timeout
    # EDNS0 with the 1232-byte payload DNS Flag Day recommends: a Service with dozens of pods
    # fits one UDP answer, where plain DNS's 512 bytes would be truncated and asked again over
    # TCP (32 A records: 2 queries instead of 4).
    resolver.use_edns(0, 0, 1232)
    return resolver


async def _lookup(resolver: dns.asyncresolver.Resolver, name: str | dns.name.Name, rdtype: str, timeout: float) -> list[str]:
    """The records of one type, as text ([] for a name that does not exist or has none)."""
    try:
        answer = await resolver.resolve(name, rdtype, search=True, lifetime=timeout)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    return [rr.to_text() for rr in answer]


async def _addresses(resolver: dns.asyncresolver.Resolver, name: str | dns.name.Name, timeout: float) -> set[str]:
    """`name`'s IPv4 and IPv6 addresses."""
    v4, v6 = await asyncio.gather(_lookup(resolver, name, "A", timeout), _lookup(resolver, name, "AAAA", timeout))
    return {str(ipaddress.ip_address(a)) for a in [*v4, *v6]}


async def _srv_endpoints(resolver: dns.asyncresolver.Resolver, name: str, timeout: float) -> set[str]:
    """The endpoints `name`'s SRV records point at: each target's addresses at its port.
    Priority and weight are ignored: every target is a worker."""
    # Over TCP: one answer carries every record and the targets' addresses with them. Over
    # UDP, a Service of 32 pods outgrows even an EDNS payload, and the server drops the
    # addresses to fit: 64 more queries (measured against dnsmasq: 110 ms instead of 16 ms).
    try:
        answer = await resolver.resolve(name, "SRV", tcp=True, search=True, lifetime=timeout)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return set()
    # Addresses the server sent along (the additional section) save a lookup per target.
    known: dict[dns.name.Name, set[str]] = {}
    for rrset in answer.response.additional:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            known.setdefault(rrset.name, set()).update(str(ipaddress.ip_address(rr.to_text())) for rr in rrset)
    ports: dict[dns.name.Name, set[int]] = {}
    for rr in list(answer)[:MAX_ENDPOINTS]:
        if rr.port > 0 and rr.target != dns.name.root:  # "." means "no such service here"
            ports.setdefault(rr.target, set()).add(int(rr.port))
    missing = [target for target in ports if target not in known]
    for target, addresses in zip(
        missing, await asyncio.gather(*(_addresses(resolver, t, timeout) for t in missing)), strict=True
    ):
        known[target] = addresses
    return {endpoint(a, port) for target, target_ports in ports.items() for a in known[target] for port in target_ports}
