"""A release's processes (releases.<env>.processes: a Celery worker, beat, …): containers of
the release's image beside its web container, switched and rolled back with it.

Each is a resource of the release like the web container: its Pulumi name carries the release
and its container name the generation, so a release (or a changed variable, command or check)
creates the new process beside the old one, create-before-delete. The switch of nginx waits
for every one of them (app_release.py: depends_on), so a process that fails its check fails
the update before the web switch and the old release — its processes included — keeps
running; at the end of a successful update Pulumi deletes the old ones, each with its own
stop grace period (SIGTERM, then SIGKILL). Rollback puts the previous release back: its
processes follow, since they are declared from the same release.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pulumi
import pulumi_docker as docker

from components.host.containers import ServiceContainerArgs, healthcheck, service_container
from components.names import generation, release_slug
from components.settings.processes import ProcessSettings, processes_over_reservation
from components.settings.releases import ReleaseSettings

# The check of a process without one of its own: PID 1 (the process: no shell, no init
# runs before it) has run `settle` seconds without a restart, read from /proc with the
# image's python3 (the image contract asks for it). A process that exits is restarted by
# Docker and starts over, so a crashing command never passes. Kamal's readiness_delay (7 s)
# for a role without a health check: the container must still run after it.
SETTLE_PROBE = """import os, sys
up = float(open("/proc/uptime").read().split()[0])
stat = open("/proc/1/stat").read().rsplit(")", 1)[1].split()
ran = up - int(stat[19]) / os.sysconf("SC_CLK_TCK")
sys.exit(0 if ran >= {settle} else f"PID 1 has run {{ran:.1f}} s of {settle} s")
"""


def process_container_name(prefix: str, environment: str, release: str, process: str,
                           digest: str) -> str:
    """Like the web container's (names.release_container_name), with the process's name
    where the web container has `app`."""
    return f"{prefix}-{process}-{environment}-{release_slug(release)}-{digest}"


def process_health_check(process: ProcessSettings) -> list[str]:
    """The container's health check (Docker's CMD form): its own check command (a shell
    line), else the settle probe."""
    if process.check is not None:
        return ["CMD-SHELL", process.check]
    return ["CMD", "python3", "-c", SETTLE_PROBE.format(settle=process.settle_seconds)]


def process_wait_seconds(process: ProcessSettings) -> int:
    """How long the release waits for a process to pass its check: the settle period, the
    check's own timeout, and the process's start (a worker connecting to its broker)."""
    return process.settle_seconds + process.check_timeout_seconds + 30


@dataclass
class ProcessesArgs:
    """What a release's processes share with its web container (app_release.py)."""

    prefix: str
    release: ReleaseSettings
    image_id: pulumi.Input[str]
    envs: pulumi.Input[list[str]]
    network: pulumi.Input[str]
    volumes: list[dict]
    read_only_tmpfs: dict[str, str]
    # The web container's generation inputs: a process's generation digests them too.
    generation_inputs: pulumi.Output[dict]
    health_start_interval: pulumi.Input[str | None]
    # The environment as the platform exports it (its processes_memory_mb).
    environment: pulumi.Output[dict]
    depends_on: list[pulumi.Resource]


def release_processes(name: str, args: ProcessesArgs,
                      opts: pulumi.ResourceOptions) -> list[docker.Container]:
    """One container per process, in the order the config lists them."""
    release = args.release
    # The platform's reservation, for a platform of another stack (load.py checks it when
    # the platform is this stack's): a preview of a release that does not fit fails here.
    reserved = args.environment.apply(lambda env: _check_reservation(release, env))
    return [_process_container(name, process, args, reserved, opts)
            for process in release.processes]


def _check_reservation(release: ReleaseSettings, environment: dict) -> bool:
    problem = processes_over_reservation(release, environment.get("processes_memory_mb"))
    if problem:
        raise ValueError(problem)
    return True


def _process_container(name: str, process: ProcessSettings, args: ProcessesArgs,
                       reserved: pulumi.Output[bool],
                       opts: pulumi.ResourceOptions) -> docker.Container:
    release = args.release
    check = process_health_check(process)
    health = {"interval": "10s", "timeout": f"{process.check_timeout_seconds}s",
              "retries": 3, "start_period": f"{process.settle_seconds + 30}s"}
    container_name = pulumi.Output.unsecret(pulumi.Output.all(
        web=args.generation_inputs, process=asdict(process), check=check, health=health,
    ).apply(lambda values: process_container_name(
        args.prefix, release.environment, release.release, process.name,
        generation(values))))
    return service_container(
        f"{name}-{process.name}-{release_slug(release.release)}",
        ServiceContainerArgs(
            stack=args.prefix,
            container_name=container_name,
            image=args.image_id,
            service="process",
            environment=release.environment,
            memory_mb=reserved.apply(lambda _: process.memory_mb),
            healthcheck=healthcheck(check, **health),
            health_start_interval=args.health_start_interval,
            network=args.network,
            command=process.argv,
            envs=args.envs,
            volumes=[docker.ContainerVolumeArgs(**volume) for volume in args.volumes],
            read_only=True,
            tmpfs=args.read_only_tmpfs,
            user=release.run_as,
            extra_labels={"aiia.release": release.release, "aiia.process": process.name},
            stop_signal="SIGTERM",
            stop_grace_seconds=process.stop_grace_seconds,
            wait_timeout_seconds=process_wait_seconds(process),
        ),
        # Create-before-delete, as the web container (app_release.py).
        pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            depends_on=args.depends_on, delete_before_replace=False)),
    )
