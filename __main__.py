"""AI-IA backend on one small Docker host: the platform, then this stack's app releases."""

import pulumi
import pulumi_docker as docker

from components.host.connection import HostConnection
from components.host.provision import Host, HostArgs, docker_ssh_options
from components.platform.outputs import PlatformHandle
from components.platform.ownership import refuse_dropping_the_platform
from components.platform.platform import Platform, PlatformArgs
from components.release.app_release import AppRelease, AppReleaseArgs
from components.settings import load_settings

config = pulumi.Config("aiia")
settings = load_settings(pulumi.get_stack(), config)
connection = HostConnection.for_host(settings.host, config.get_secret("ssh_private_key"),
                                     settings.stack)
provider_opts = None
if settings.platform and settings.host.provision:
    # The host is provisioned first: every other host command and every Docker resource
    # (through the provider) waits for it.
    host = Host("host", HostArgs(settings, connection))
    connection = connection.after(host.preflight)
    provider_opts = pulumi.ResourceOptions(depends_on=[host.preflight])
registry = settings.registry
docker_provider = docker.Provider(
    "docker", host=settings.host.docker_host, ssh_opts=docker_ssh_options(settings.host),
    registry_auth=[docker.ProviderRegistryAuthArgs(
        address=registry.address, username=registry.username, password=registry.password,
    )] if registry else None,
    opts=provider_opts)

if settings.platform:
    platform = Platform("platform", PlatformArgs(settings, connection, docker_provider))
    handle = PlatformHandle(platform.outputs)
    for key, value in platform.outputs.items():
        pulumi.export(key, value)
    pulumi.export("memory_budget", settings.budget.table())
else:
    refuse_dropping_the_platform(settings.stack)  # one whose last update owned it must keep it
    handle = PlatformHandle.from_stack(settings.platform_stack)

for release in settings.releases:
    app = AppRelease(f"app-{release.environment}",
                     AppReleaseArgs(settings, release, handle, connection, docker_provider))
    pulumi.export(f"{release.environment}_release", release.release)
    pulumi.export(f"{release.environment}_container", app.container_name)
