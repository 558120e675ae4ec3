"""The house rules every long-running container follows, in one place.

Memory limit with swap equal to it (no hidden swap use), a health check, a restart
policy, capped json-file logs, no new privileges, every capability dropped except the
ones its caller names (each with its reason), and the labels the dashboard reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}
SECURITY_OPTIONS = ["no-new-privileges:true"]


def house_rules() -> dict:
    """The inputs every service container gets whatever its caller says: a release's
    generation digests them, since a change to any of them replaces the container."""
    return {"security_opts": SECURITY_OPTIONS, "log_opts": LOG_OPTIONS, "cap_drop": ["ALL"],
            "restart": "unless-stopped"}


@dataclass
class ServiceContainerArgs:
    stack: str  # the prefix: the label aiia.stack tells this stack's containers apart
    container_name: pulumi.Input[str]
    image: pulumi.Input[str]
    service: str
    environment: str  # "platform" or the environment a release belongs to
    memory_mb: pulumi.Input[int]
    healthcheck: docker.ContainerHealthcheckArgs
    network: pulumi.Input[str]
    # More than one network, or a fixed address on one: these instead of `network` (the
    # first is the one the container starts on).
    networks: list[docker.ContainerNetworksAdvancedArgs] | None = None
    # It joins networks while it runs (components/platform/networks.py): its declared ones
    # only make a new container, and a change to them replaces nothing.
    networks_joined_live: bool = False
    command: list[str] | None = None
    envs: pulumi.Input[list[str]] | None = None
    mounts: list[docker.ContainerMountArgs] = field(default_factory=list)
    volumes: list[docker.ContainerVolumeArgs] = field(default_factory=list)
    ports: list[docker.ContainerPortArgs] = field(default_factory=list)
    user: str | None = None
    # Every capability is dropped; these (Docker's names, without CAP_) are given back.
    cap_add: list[str] = field(default_factory=list)
    stop_signal: str | None = None
    stop_grace_seconds: int = 10
    extra_labels: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    read_only: bool = False
    tmpfs: dict[str, str] | None = None
    wait_timeout_seconds: int = 120


def service_container(
    resource_name: str, args: ServiceContainerArgs, opts: pulumi.ResourceOptions
) -> docker.Container:
    labels = {"aiia.service": args.service, "aiia.environment": args.environment,
              "aiia.stack": args.stack, **args.extra_labels}
    if args.networks_joined_live:
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(ignore_changes=["networks_advanced"]))
    return docker.Container(
        resource_name,
        name=args.container_name,
        image=args.image,
        command=args.command,
        envs=args.envs,
        memory=args.memory_mb,
        memory_swap=args.memory_mb,
        healthcheck=args.healthcheck,
        # Wait for "healthy" so whatever depends on this container (a switch of traffic
        # above all) runs only once it really serves.
        wait=True,
        wait_timeout=args.wait_timeout_seconds,
        restart=house_rules()["restart"],
        must_run=True,
        networks_advanced=args.networks or [
            docker.ContainerNetworksAdvancedArgs(name=args.network)],
        mounts=args.mounts or None,
        volumes=args.volumes or None,
        ports=args.ports or None,
        user=args.user,
        capabilities=docker.ContainerCapabilitiesArgs(
            drops=house_rules()["cap_drop"], adds=sorted(args.cap_add) or None),
        security_opts=SECURITY_OPTIONS,
        log_driver="json-file",
        log_opts=LOG_OPTIONS,
        labels=[docker.ContainerLabelArgs(label=key, value=value) for key, value in
                sorted(labels.items())],
        stop_signal=args.stop_signal,
        stop_timeout=args.stop_grace_seconds,
        destroy_grace_seconds=args.stop_grace_seconds,
        read_only=args.read_only,
        tmpfs=args.tmpfs,
        opts=opts,
    )


def healthcheck(test: list[str], *, interval: str = "10s", timeout: str = "5s",
                retries: int = 3, start_period: str = "30s") -> docker.ContainerHealthcheckArgs:
    return docker.ContainerHealthcheckArgs(
        tests=test, interval=interval, timeout=timeout, retries=retries,
        start_period=start_period,
    )


def container_address(container: docker.Container, port: pulumi.Input[int]) -> pulumi.Output[str]:
    """ip:port of a container on its (first) network.

    nginx is given addresses, not names: it resolves names only when it loads its config,
    and an upstream whose name no longer resolves would stop nginx for every environment.
    """

    def address(values: list) -> str:
        first = values[0][0]
        ip = first["ip_address"] if isinstance(first, dict) else first.ip_address
        return f"{ip}:{int(values[1])}"

    return pulumi.Output.all(container.network_datas, port).apply(address)
