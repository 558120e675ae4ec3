"""certbot: ACME certificates (Let's Encrypt, or another CA) by webroot, renewed by cron,
nginx reloaded only when one changed.

certbot runs as a transient container (`docker run --rm`), not a resident one: it is
needed a few seconds twice a day, and its memory counts only in the peak budget. Until
it has issued, nginx serves the self-signed bootstrap certificates (components/platform/nginx.py).
It joins the platform's network (which has egress), so that a CA reachable only there (a
test CA) is reachable too. A domain whose issuance fails (DNS not pointing here yet, a rate
limit) does not fail `pulumi up`: the bootstrap certificate keeps serving, the update
warns and the twice-daily job tries again; the dashboard shows the certificate served (the
bootstrap one is self-signed and valid 30 days, so its expiry alerts follow). What the last
run did per domain is in {root}/state/certbot.json, which the dashboard reads ("not yet
issued", "renewal failed", a renewal job that stopped running).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components.host.connection import HostFile, HostFileArgs, host_command
from components.host.templates import render
from components.platform.context import PlatformContext
from components.platform.nginx import nginx_lock_file


@dataclass
class CertbotArgs:
    context: PlatformContext
    image_id: pulumi.Input[str]  # the pulled image, by id: what was previewed is what runs
    letsencrypt_volume: docker.Volume
    network_name: pulumi.Input[str]
    nginx_reload: str
    depends_on: list[pulumi.Resource]


def warn_about_failures(stdout: str | None) -> None:
    """Each "NOT ISSUED" / "FAILED" line of the certbot run, as a warning of `pulumi up`."""
    for line in (stdout or "").splitlines():
        if "NOT ISSUED" in line or "FAILED" in line or "did not reload" in line:
            pulumi.log.warn(line.split("certbot: ", 1)[-1])


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
        tls = platform.tls
        files = [hook]
        if tls.ca_bundle:
            # The CA of the ACME server's own HTTPS certificate (a private CA), for certbot.
            files.append(HostFile(
                f"{name}-acme-ca",
                HostFileArgs(connection=context.connection,
                             path=context.host_path("certbot", "acme-ca.pem"),
                             content=Path(tls.ca_bundle).expanduser().read_text(),
                             mode="0644"),
                opts=pulumi.ResourceOptions(parent=self)))
        key_options = ("--elliptic-curve secp256r1" if tls.key_type == "ecdsa"
                       else "--rsa-key-size 2048")
        self.script_path = context.host_path("bin", "certbot.sh")
        script_content = pulumi.Output.all(args.letsencrypt_volume.name, args.image_id,
                                           args.network_name).apply(
            lambda values: render(
                "certbot/certbot.sh.j2", prefix=context.prefix,
                memory_mb=platform.certbot.memory_mb, letsencrypt_volume=values[0],
                image=values[1], network=values[2], root_dir=context.root_dir,
                domains=domains, email=tls.email, directory=tls.acme_directory,
                ca_bundle=bool(tls.ca_bundle), key_type=tls.key_type, key_options=key_options,
                nginx_reload=args.nginx_reload,
                nginx_lock=nginx_lock_file(context.host_path("state"))))
        files.append(HostFile(
            f"{name}-script",
            HostFileArgs(connection=context.connection, path=self.script_path,
                         content=script_content, mode="0750"),
            opts=pulumi.ResourceOptions(parent=self),
        ))
        # First issuance as soon as nginx answers the ACME challenge; re-run when the
        # domains, the CA or the key type change. Renewal is cron's job from then on.
        self.issue = host_command(
            f"{name}-issue", context.connection, f"{shlex.quote(self.script_path)} --deploy",
            triggers=[",".join(domains), tls.acme_directory, tls.key_type],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*files, *args.depends_on]),
        )
        # A domain that is not issued yet does not fail the update: it is said here.
        self.issue.stdout.apply(warn_about_failures)
        self.cron = HostFile(
            f"{name}-cron",
            HostFileArgs(connection=context.connection, path=context.cron_file("certbot"),
                         content=render("cron/certbot.cron.j2", script=self.script_path,
                                        log=context.host_path("logs", "certbot.log")),
                         mode="0644"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"script_path": self.script_path})
