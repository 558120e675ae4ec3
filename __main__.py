"""AI-IA backend on one small Docker host: the platform, then this stack's app releases."""

import pulumi
import pulumi_docker as docker

from components.app_release import AppRelease, AppReleaseArgs
from components.host_files import HostConnection
from components.platform import Platform, PlatformArgs
from components.platform_reference import PlatformHandle
from components.settings import load_settings

config = pulumi.Config("aiia")
settings = load_settings(pulumi.get_stack(), config)
connection = HostConnection.for_host(settings.host, config.get_secret("ssh_private_key"))
docker_provider = docker.Provider("docker", host=settings.host.docker_host)

if settings.platform:
    platform = Platform("platform", PlatformArgs(settings, connection, docker_provider))
    handle = PlatformHandle(platform.outputs)
    for key, value in platform.outputs.items():
        pulumi.export(key, value)
    pulumi.export("memory_budget", settings.budget.table())
else:
    handle = PlatformHandle.from_stack(settings.platform_stack)

for release in settings.releases:
    app = AppRelease(f"app-{release.environment}",
                     AppReleaseArgs(settings, release, handle, connection, docker_provider))
    pulumi.export(f"{release.environment}_release", release.release)
    pulumi.export(f"{release.environment}_container", app.container_name)
