"""certbot: Let's Encrypt certificates by webroot, renewed by cron, nginx reloaded after.

certbot runs as a transient container (`docker run --rm`), not a resident one: it is
needed a few seconds twice a day, and its memory counts only in the peak budget. Until
it has issued, nginx serves the self-signed bootstrap certificates (components/nginx.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.host_files import HostFile, HostFileArgs, host_command
from components.platform_context import PlatformContext
from components.templates import render


@dataclass
class CertbotArgs:
    context: PlatformContext
    image_name: pulumi.Input[str]
    letsencrypt_volume: docker.Volume
    nginx_reload: str
    depends_on: list[pulumi.Resource]


class Certbot(pulumi.ComponentResource):
    def __init__(self, name: str, args: CertbotArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:platform:Certbot", name, None, opts)
        context = args.context
        platform = context.platform
        domains = [env.domain for env in platform.environments] + [platform.status_domain]
        hook = HostFile(
            f"{name}-deploy-hook",
            HostFileArgs(connection=context.connection,
                         path=context.host_path("certbot", "deploy-hook.sh"),
                         content=render("certbot/deploy-hook.sh.j2"), mode="0755"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.script_path = context.host_path("bin", "certbot.sh")
        script_content = pulumi.Output.all(args.letsencrypt_volume.name, args.image_name).apply(
            lambda values: render(
                "certbot/certbot.sh.j2", prefix=context.prefix,
                memory_mb=platform.certbot.memory_mb, letsencrypt_volume=values[0],
                image=values[1], root_dir=context.root_dir, domains=domains,
                email=platform.tls.email, staging=platform.tls.mode == "letsencrypt_staging",
                nginx_reload=args.nginx_reload))
        script = HostFile(
            f"{name}-script",
            HostFileArgs(connection=context.connection, path=self.script_path,
                         content=script_content, mode="0750"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # First issuance as soon as nginx answers the ACME challenge; re-run when the
        # domains change. Renewal is cron's job from then on.
        self.issue = host_command(
            f"{name}-issue", context.connection, self.script_path,
            triggers=[",".join(domains)],
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[hook, script, *args.depends_on]),
        )
        self.cron = HostFile(
            f"{name}-cron",
            HostFileArgs(connection=context.connection,
                         path=f"/etc/cron.d/{context.prefix}-certbot",
                         content=render("cron/certbot.cron.j2", script=self.script_path,
                                        log=context.host_path("logs", "certbot.log")),
                         mode="0644"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"script_path": self.script_path})
