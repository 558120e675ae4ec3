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
    # How often the health check runs while the container starts, until its first success
    # (host.health_start_interval: "1s" where the engine takes it, None where it cannot).
    health_start_interval: pulumi.Input[str | None] | None = None
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
    # No network at all ("none": a container that talks only over a unix socket).
    network_mode: str | None = None
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
        healthcheck=with_start_interval(args.healthcheck, args.health_start_interval),
        # Wait for "healthy" so whatever depends on this container (a switch of traffic
        # above all) runs only once it really serves.
        wait=True,
        wait_timeout=args.wait_timeout_seconds,
        restart=house_rules()["restart"],
        must_run=True,
        network_mode=args.network_mode,
        networks_advanced=None if args.network_mode == "none" else args.networks or [
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


def with_start_interval(check: docker.ContainerHealthcheckArgs,
                        start_interval: pulumi.Input[str | None] | None,
                        ) -> pulumi.Input[docker.ContainerHealthcheckArgs]:
    """`check` probing every `start_interval` during its start period until it first
    succeeds, then every `interval` (moby v26.1 `daemon/health.go` `monitor`: the start
    interval applies while the status is "starting" and the start period lasts), so the
    gate (`wait=True`) passes about a second after the service is ready instead of a whole
    interval. None, or an Output that resolves to None, leaves the field out: the provider
    then sends none (terraform-provider-docker v4.5.0 defaults it to "0s", and a zero
    StartInterval is omitted from the create request), which an engine older than API 1.44
    accepts; a value there is refused by the provider's client (components/settings/host.py,
    START_INTERVAL_API). An Output (a release reads it from the platform's stack) gives the
    check once it resolves, with the field or without it."""
    if isinstance(start_interval, pulumi.Output):
        return start_interval.apply(lambda value: with_start_interval(check, value))
    if start_interval is None:
        return check
    return docker.ContainerHealthcheckArgs(
        tests=check.tests, interval=check.interval, timeout=check.timeout,
        retries=check.retries, start_period=check.start_period, start_interval=start_interval)
