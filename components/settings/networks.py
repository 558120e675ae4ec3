"""The addresses of the platform's networks (components/platform/networks.py says who is on
which): the data network (platform.network_subnet), the status network
(platform.status_subnet: the host at its first address, nginx at its second, a local
dashboard at its third, Docker's own choices in its upper half) and each environment's
(platform.environments.<env>.network_subnet, or one Docker picks).

Standard library only, like the other settings modules."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence
from typing import Any

from components.settings.checks import NAMESPACE, Problems


def subnet_host(subnet: str, index: int) -> str:
    """The address `index` (0: the first, the gateway) of `subnet`."""
    return str(ipaddress.ip_network(subnet)[index + 1])


def upper_half(subnet: str) -> str:
    """The upper half of `subnet`: where Docker addresses containers it is not told about,
    so that the fixed addresses below it are never taken."""
    return str(list(ipaddress.ip_network(subnet).subnets(prefixlen_diff=1))[1])


def check_separate_networks(network_subnet: str, status_subnet: str,
                            environments: Sequence[Any], problems: Problems) -> None:
    """The status network and each environment's: private, apart from each other and from
    the data network, and named apart (<prefix>-status, <prefix>-<environment>)."""
    claims = [(f"{NAMESPACE}:platform.status_subnet", status_subnet)]
    claims += [(f"{NAMESPACE}:platform.environments.{env.name}.network_subnet",
                env.network_subnet) for env in environments if env.network_subnet]
    taken: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    with contextlib.suppress(ValueError):
        taken.append((f"{NAMESPACE}:platform.network_subnet",
                      ipaddress.ip_network(network_subnet)))
    for key, subnet in claims:
        try:
            network = ipaddress.ip_network(subnet)
            if not network.is_private or network.version != 4 or network.num_addresses < 16:
                raise ValueError
        except ValueError:
            problems.add(f"{key}={subnet!r} must be a private IPv4 network of at least 16 "
                         "addresses, e.g. 172.30.1.0/27")
            continue
        clash = next((other for other, known in taken if network.overlaps(known)), None)
        if clash:
            problems.add(f"{key}={subnet!r} overlaps {clash}; every network of the platform "
                         "needs a subnet of its own")
        taken.append((key, network))
    for env in environments:
        if env.name == "status":
            problems.add(f"{NAMESPACE}:platform.environments.status: 'status' names the "
                         "dashboard's network (<prefix>-status); call the environment "
                         "something else")
