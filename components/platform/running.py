"""The platform's precondition for what comes after it: every one of its containers running.

The release switch checks its own container before nginx points at it; this is the same for
the platform (issue #28 item 1): a container the provider created but never started (a
failure after its id was set) must fail the `up` that follows, not leave it green with the
service stopped (templates/docker/check-running.sh.j2 says why it can happen).

It also holds each to a task limit (review L7), which pulumi-docker cannot set: see
pids_limit."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.host.connection import HostConnection, host_command
from components.host.templates import render

HEALTH_WAIT_SECONDS = 90
# Tasks (processes and threads) a platform container may hold: nginx, PgBouncer and Redis
# run fewer than 10 each; PostgreSQL a process per connection and about ten of its own.
SERVICE_PIDS_LIMIT = 128


def pids_limit(service: str, postgres_max_connections: int) -> int:
    """A fork bomb or a thread leak in one container then fails there, with the host's pids
    left to the others and to sshd. PostgreSQL's is twice its connections and room for its
    own processes and parallel workers: it must never be the one refused a fork."""
    if service == "postgres":
        return 2 * postgres_max_connections + 64
    return SERVICE_PIDS_LIMIT


def check_running(name: str, connection: HostConnection,
                  containers: dict[str, tuple[docker.Container, int]],
                  opts: pulumi.ResourceOptions) -> pulumi.Resource:
    """Runs whenever one of `containers` (name → resource and its task limit) is new: their
    ids are its triggers."""
    script = render("docker/check-running.sh.j2",
                    containers={name: containers[name][1] for name in sorted(containers)},
                    health_wait_seconds=HEALTH_WAIT_SECONDS)
    resources = [containers[container_name][0] for container_name in sorted(containers)]
    return host_command(name, connection, script,
                        triggers=[resource.id for resource in resources],
                        opts=pulumi.ResourceOptions.merge(
                            opts, pulumi.ResourceOptions(depends_on=resources)))
