"""An environment's maintenance switch, owned by the stack that releases it.

`releases.<env>.maintenance: true` rewrites the environment's switch in nginx's tree
(`{root}/nginx/maintenance/<env>.conf`, included by nginx.conf; the platform seeds it off)
and reloads nginx gracefully, like a release's switch: from then on every request but the
health path, and but the addresses of `maintenance_allow`, gets 503 with `Retry-After` and the
page (the program's, or `maintenance_page` from the repository), while the release keeps
running behind it — so turning it off is one more reload, and the release's watch, health
gate and rollbacks go on as before. The page is written first, and stays when maintenance
ends (the next one replaces it).
"""

from __future__ import annotations

import pulumi

from components.host.connection import HostConnection, HostFile, HostFileArgs
from components.host.templates import render
from components.platform.nginx import (
    maintenance_path,
    nginx_lock_file,
    reload_command,
    render_maintenance,
)
from components.settings.maintenance import page_path
from components.settings.releases import ReleaseSettings

PAGE_FILE = "aiia-maintenance.html"  # site.conf.j2's internal location serves this name


def maintenance_switch(name: str, release: ReleaseSettings, domain: pulumi.Input[str],
                       ready: pulumi.Input[bool], connection: HostConnection, root: str,
                       nginx_container: str, parent: pulumi.Resource) -> HostFile:
    """The page, then the switch that points nginx at it (or away from it), once the
    platform's nginx runs (`ready`: its site reads the switch's variables)."""
    environment = release.environment
    custom = page_path(release.maintenance_page)
    content = (pulumi.Output.from_input(custom.read_text()) if custom else
               pulumi.Output.from_input(domain).apply(
                   lambda value: render("nginx/maintenance.html.j2", domain=value)))
    page = HostFile(
        f"{name}-maintenance-page",
        HostFileArgs(connection=connection,
                     path=f"{root}/www/{environment}/maintenance/{PAGE_FILE}",
                     content=content, mode="0644", owner="0:0"),
        opts=pulumi.ResourceOptions(parent=parent))
    return HostFile(
        f"{name}-maintenance",
        HostFileArgs(connection=connection, path=f"{root}/nginx/{maintenance_path(environment)}",
                     content=pulumi.Output.from_input(ready).apply(
                         lambda _: render_maintenance(
                             environment, release.maintenance, tuple(release.maintenance_allow),
                             release.maintenance_retry_after_seconds)),
                     mode="0644", on_change=reload_command(nginx_container),
                     lock_file=nginx_lock_file(f"{root}/state")),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[page]))
