"""What every platform component is handed: settings, where the host is, the Docker provider."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.host.connection import HostConnection
from components.host.containers import ServiceContainerArgs
from components.names import container_name
from components.platform.networks import ServiceNetworks
from components.settings import Settings
from components.settings.platform import PlatformSettings

# 16 random bytes in hex, printed once on the machine that runs `pulumi up` (od is in
# POSIX, so on a laptop and a CI runner alike); a local Command's output stays in the state,
# so a salt drawn with it is the same on every later run.
RANDOM_SALT_COMMAND = "od -An -N16 -tx1 /dev/urandom | tr -d ' \\n'"


@dataclass
class PlatformContext:
    settings: Settings
    connection: HostConnection
    docker_provider: docker.Provider
    network_name: pulumi.Input[str]  # the data network (networks.py)
    # The networks of the services that are not on the data network alone, by service.
    networks: dict[str, ServiceNetworks] = field(default_factory=dict)

    @property
    def platform(self) -> PlatformSettings:
        assert self.settings.platform is not None
        return self.settings.platform

    @property
    def prefix(self) -> str:
        return self.settings.prefix

    @property
    def root_dir(self) -> str:
        return self.settings.host.root_dir

    def container_name(self, service: str) -> str:
        return container_name(self.prefix, service)

    def host_path(self, *parts: str) -> str:
        return "/".join([self.root_dir.rstrip("/"), *parts])

    def cron_file(self, job: str) -> str:
        """Where the cron entry of a host job goes: /etc/cron.d/<prefix>-<job> on a VPS. A
        local stack has no system cron of its own: the entry is written beside the stack,
        for a developer (or a test) to run."""
        if self.settings.host.kind == "local":
            return self.host_path("cron.d", f"{self.prefix}-{job}")
        return f"/etc/cron.d/{self.prefix}-{job}"

    def container_user(self, default: str) -> str:
        """The uid:gid a service container runs as.

        On a VPS the install step runs as root and hands each service's files to the uid
        the image runs as. On a developer's machine `pulumi up -s local` usually runs
        unprivileged and cannot chown, so the container runs as the developer instead and
        the 0600 files stay readable to it alone.
        """
        if self.unprivileged_local():
            return f"{os.getuid()}:{os.getgid()}"
        return default

    def unprivileged_local(self) -> bool:
        return self.connection.unprivileged_local

    def root_file_access(self) -> list[str]:
        """What a container's root needs to write into host directories it does not own.

        On a VPS (and a local stack set up by root) the program makes root own what a
        container's root writes, so nothing. When a developer's unprivileged `pulumi up`
        prepared them, they belong to the developer and root gets through by
        DAC_OVERRIDE, as it did with Docker's default capabilities."""
        return ["DAC_OVERRIDE"] if self.unprivileged_local() else []

    def service_args(self, service: str, image: pulumi.Input[str], memory_mb: int,
                     **options) -> ServiceContainerArgs:
        """A platform service's container: named, labelled and networked like the others."""
        networks = self.networks.get(service)
        return ServiceContainerArgs(
            stack=self.prefix, container_name=self.container_name(service), image=image,
            service=service, environment="platform", memory_mb=memory_mb,
            network=self.network_name,
            networks=networks.networks_advanced() if networks else None,
            networks_joined_live=bool(networks and networks.joined_live),
            health_start_interval=self.settings.host.health_start_interval, **options)

    def child(self, parent: pulumi.Resource, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.docker_provider, **kwargs)
