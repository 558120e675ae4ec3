"""The platform's networks, one per concern, and how a running container joins them.

- the data network (`<prefix>`, platform.network_subnet): PostgreSQL, PgBouncer and the
  backup jobs; PostgreSQL's pg_hba.conf admits nothing from anywhere else;
- one network per environment (`<prefix>-<environment>`): that environment's releases and
  their jobs, nginx, PgBouncer and Redis. A release reaches neither PostgreSQL, nor another
  environment's release, nor the dashboard;
- the status network (`<prefix>-status`, platform.status_subnet): nginx at a fixed address,
  the dashboard (a VPS's server listens on the network's gateway and admits nginx's
  address alone; locally, its containers) and certbot's runs.

pulumi-docker replaces a container whose networks change, and replaces it stopping the old
one first (`docker_container` is DeleteBeforeReplace): for nginx, PgBouncer or Redis that
is an outage. So these declare the networks a new container is created with, ignore later
changes to them (`ignore_changes`), and join the others while they run
(`docker network connect`, which restarts nothing), by a command that runs again whenever
its container is a new one. A network they no longer need (nginx's and Redis's old one, the
data network) is left once no release runs on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.host.connection import HostConnection, host_command
from components.host.templates import render


@dataclass(frozen=True)
class Attachment:
    network: pulumi.Input[str]  # the network's name
    address: str | None = None  # a fixed address on it, which others are told


@dataclass(frozen=True)
class ServiceNetworks:
    """The networks of one platform container; the first is the one it starts on."""

    attachments: list[Attachment]
    # It joins them while it runs (nginx, PgBouncer, Redis: never replaced for this).
    joined_live: bool = False
    leaves: pulumi.Input[str] | None = None  # a network it leaves once no release is on it

    def networks_advanced(self) -> list[docker.ContainerNetworksAdvancedArgs]:
        return [docker.ContainerNetworksAdvancedArgs(name=attachment.network,
                                                     ipv4_address=attachment.address)
                for attachment in self.attachments]


def network_subnet(network: docker.Network) -> pulumi.Output[str]:
    """A network's subnet as Docker made it: the one configured, or the one Docker picked
    (the provider reads it back into `ipam_configs`)."""

    def first(configs: list) -> str:
        config = configs[0]
        return config["subnet"] if isinstance(config, dict) else config.subnet

    return network.ipam_configs.apply(first)


def join_networks(name: str, connection: HostConnection, stack: str,
                  container: docker.Container, container_name: str,
                  networks: ServiceNetworks, parent: pulumi.Resource) -> pulumi.Resource:
    """The command that makes a running container's networks what `networks` says."""
    script = pulumi.Output.all(
        [attachment.network for attachment in networks.attachments],
        networks.leaves).apply(lambda values: render(
            "docker/join-networks.sh.j2", container=container_name, stack=stack,
            attachments=[{"network": network, "address": attachment.address}
                         for network, attachment in zip(values[0], networks.attachments,
                                                        strict=True)],
            leaves=values[1]))
    return host_command(name, connection, script, triggers=[container.id],
                        opts=pulumi.ResourceOptions(parent=parent, depends_on=[container]))
