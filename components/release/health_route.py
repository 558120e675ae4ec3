"""An environment's health path in nginx, owned by the stack that releases it.

The contract's `releases.<env>.health.path` is the path the release's watch and the
dashboard's probe ask through nginx. nginx's site (templates/nginx/site.conf.j2) includes
`{root}/nginx/health/<env>.conf` (templates/nginx/health.conf.j2): that path's location,
answered from a one-second cache to the internet and never to the platform's own callers,
and its exception from maintenance. The platform seeds it with the default contract's
`/healthz/`; from its first release on, the releasing stack writes it, before the watch asks
the path, and reloads nginx gracefully when it changed.
"""

from __future__ import annotations

import pulumi

from components.host.connection import HostConnection, HostFile, HostFileArgs
from components.platform.nginx import (
    health_route_path,
    nginx_lock_file,
    reload_command,
    render_health_route,
)
from components.settings.releases import ReleaseSettings

# On the app's container when the contract sets its own health path: the dashboard's probe
# asks that path (dashboard/collector.py reads the label; the dashboard imports no component).
HEALTH_PATH_LABEL = "aiia.health.path"


def health_route(name: str, release: ReleaseSettings, ready: pulumi.Input[bool],
                 connection: HostConnection, root: str, nginx_container: str,
                 parent: pulumi.Resource) -> HostFile:
    """The health path's location, once the platform's nginx runs (`ready`)."""
    environment = release.environment
    return HostFile(
        f"{name}-health-route",
        HostFileArgs(connection=connection, path=f"{root}/nginx/{health_route_path(environment)}",
                     content=pulumi.Output.from_input(ready).apply(
                         lambda _: render_health_route(environment,
                                                       release.contract.health_path)),
                     mode="0644", on_change=reload_command(nginx_container),
                     lock_file=nginx_lock_file(f"{root}/state")),
        opts=pulumi.ResourceOptions(parent=parent))
