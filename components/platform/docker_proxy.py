"""The dashboard collector's way to Docker (review L2): a GET-only, allowlisting proxy
(dashboard/docker_proxy.py) in front of the Docker socket, which the collector never opens.

On a VPS systemd listens for it (templates/dashboard/aiia-dashboard-docker-proxy.socket.j2,
the collector's group alone) and starts it for a collection; the Dashboard component writes
those units. On a developer's machine, with no systemd, it is a resident container of its
own, the only one of the dashboard's with the socket, and its socket lies in a volume only
the collector's container mounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import pulumi
import pulumi_docker as docker

from components.host.containers import healthcheck, service_container
from components.platform.context import PlatformContext

# Where the collector finds it (the config's docker_socket).
DOCKER_PROXY_SOCKET = {"vps": "/run/aiia-dashboard-docker-proxy.sock",
                       "local": "/run/aiia-docker-proxy/docker.sock"}
# Seconds the socket-activated proxy waits for another request before it exits: a
# collection's requests come less than a second apart, collections a minute apart.
DOCKER_PROXY_IDLE_EXIT_S = 5


@dataclass
class LocalDockerProxy:
    container: docker.Container
    mount: docker.ContainerVolumeArgs  # what the collector's container mounts


def local_docker_proxy(name: str, context: PlatformContext, image: pulumi.Input[str],
                       parent: pulumi.Resource) -> LocalDockerProxy:
    """The local stack's proxy: root by uid in its container (the socket's owner), no
    capability, a read-only system, its listening socket (0660) in a volume of its own."""
    volume = docker.Volume(name, name=f"{context.prefix}-dashboard-docker-proxy",
                           opts=context.child(parent))
    socket_path = DOCKER_PROXY_SOCKET["local"]
    directory = str(PurePosixPath(socket_path).parent)
    # Connects and closes: the proxy answers nothing and logs nothing for that.
    probe = ("import socket; s = socket.socket(socket.AF_UNIX); s.settimeout(2); "
             f"s.connect({socket_path!r})")
    container = service_container(
        name,
        context.service_args(
            image=image, service="dashboard-docker-proxy",
            memory_mb=context.platform.dashboard.docker_proxy_memory_mb,
            command=["python3", "-m", "dashboard.docker_proxy",
                     "--upstream", "/var/run/docker.sock", "--listen", socket_path],
            user="0:0",
            read_only=True,
            network_mode="none",  # its one listener is a unix socket
            healthcheck=healthcheck(["CMD", "python3", "-c", probe]),
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name,
                                                container_path=directory),
                     docker.ContainerVolumeArgs(host_path="/var/run/docker.sock",
                                                container_path="/var/run/docker.sock",
                                                read_only=True)]),
        context.child(parent))
    return LocalDockerProxy(container, docker.ContainerVolumeArgs(
        volume_name=volume.name, container_path=directory, read_only=True))
