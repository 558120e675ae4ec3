"""The DNS records each domain needs: A and AAAA to the VPS's addresses, as this machine
resolves its host (both families), or placeholders where it does not resolve."""

from __future__ import annotations

import socket
from collections.abc import Callable

Resolver = Callable[..., list]


def addresses(host: str, resolve: Resolver = socket.getaddrinfo) -> tuple[list[str], list[str]]:
    """The host's IPv4 and IPv6 addresses (an address is its own)."""
    try:
        found = resolve(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return [], []
    return (sorted({info[4][0] for info in found if info[0] == socket.AF_INET}),
            sorted({info[4][0] for info in found if info[0] == socket.AF_INET6}))


def dns_records(domains: list[str], host: str, resolve: Resolver = socket.getaddrinfo) -> str:
    """The A and AAAA records each domain needs, pointing at the VPS."""
    ipv4, ipv6 = addresses(host, resolve)
    if not ipv4 and not ipv6:
        note = (f"({host} does not resolve from here: put the VPS's addresses in place of the "
                "placeholders)")
        ipv4, ipv6 = ["<the VPS's IPv4 address>"], ["<its IPv6 address, if it has one>"]
    elif not ipv6:
        note = f"({host} has no IPv6 address here: no AAAA records; add them if it has one)"
    else:
        note = f"({host} is {', '.join(ipv4 + ipv6)})"
    width = max(len(domain) for domain in domains) + 1
    rows = [f"       {domain + '.':<{width}}  {kind:<4}  {address}" for domain in domains
            for kind, listed in (("A", ipv4), ("AAAA", ipv6)) for address in listed]
    return "\n".join([f"     {note}", *rows])

