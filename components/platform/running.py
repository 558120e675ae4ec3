"""The platform's precondition for what comes after it: every one of its containers running.

The release switch checks its own container before nginx points at it; this is the same for
the platform (issue #28 item 1): a container the provider created but never started (a
failure after its id was set) must fail the `up` that follows, not leave it green with the
service stopped (templates/docker/check-running.sh.j2 says why it can happen)."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.host.connection import HostConnection, host_command
from components.host.templates import render

HEALTH_WAIT_SECONDS = 90


def check_running(name: str, connection: HostConnection,
                  containers: dict[str, docker.Container],
                  opts: pulumi.ResourceOptions) -> pulumi.Resource:
    """Runs whenever one of `containers` (name → resource) is new: their ids are its triggers."""
    script = render("docker/check-running.sh.j2", containers=sorted(containers),
                    health_wait_seconds=HEALTH_WAIT_SECONDS)
    ids = [containers[container_name].id for container_name in sorted(containers)]
    return host_command(name, connection, script, triggers=ids,
                        opts=pulumi.ResourceOptions.merge(
                            opts, pulumi.ResourceOptions(depends_on=list(containers.values()))))
