"""The status dashboard: installed on the host, routed by nginx on the status domain.

On a VPS it runs as systemd units (components: dashboard/ package + templates/dashboard):
an unprivileged, sandboxed HTTP server, a collector on a timer (its own account, not root),
and the collector's GET-only allowlisting proxy to the Docker socket, started through its
socket by the collector's requests (review L2). On a developer's machine (`local`) the
same package runs as containers: the server (no socket, non-root), the collector (no
socket, no published port) and the proxy (the socket, nothing else).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components.host.audit import known_keys
from components.host.connection import HostFile, HostFileArgs, host_command
from components.host.containers import healthcheck, service_container
from components.host.templates import render
from components.platform.context import PlatformContext
from components.platform.dashboard_auth import auth_settings, dashboard_password_hashes
from components.platform.docker_proxy import (
    DOCKER_PROXY_IDLE_EXIT_S,
    DOCKER_PROXY_SOCKET,
    local_docker_proxy,
)
from components.settings.alerts import secrets_document

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "dashboard"
INSTALL_DIR = "/opt/aiia"
# Host directories the server never reads, hidden from its sandbox (InaccessiblePaths): the
# data and secrets of PostgreSQL, PgBouncer, Redis and the apps, the backups and their keys,
# the uploads, the logs and nginx's private keys. It reads its config, the collector's state
# dir and the disk usage of the root (review M2).
PRIVATE_DIRS = ("postgres", "pgbouncer", "redis", "secrets", "backup", "backups", "media",
                "logs", "nginx")
# What the collector reads of them: nginx's certificates and access log (so not all of
# "nginx" and "logs" is hidden from it: the private keys and the apps' logs are).
COLLECTOR_PRIVATE_DIRS = tuple(d for d in PRIVATE_DIRS if d not in ("nginx", "logs"))
# How often the collector runs: resident in a container locally, a systemd timer (every
# minute, aiia-dashboard-collect.timer) on a VPS. The page's staleness alert reads it.
COLLECT_EVERY_S = {"local": 30, "vps": 60}
# The notifier's state on a VPS (systemd's StateDirectory=): what it sent, private to its
# dynamic user. What the page shows goes to {root}/state/notify (the server's group).
NOTIFY_STATE_DIR = "/var/lib/aiia-notify"


def collector_healthcheck(status_path: str, every_s: int) -> docker.ContainerHealthcheckArgs:
    """Healthy while the last collection is recent: its snapshot is rewritten on every run
    (also when some of its steps failed), so an old one means the loop is stuck or dead.
    Stale after two missed runs and a margin for a slow one."""
    script = render("dashboard/collector-health.sh.j2", status_path=status_path,
                    every_s=every_s, stale_after_s=2 * every_s + 15)
    return healthcheck(["CMD-SHELL", script])


def restart_on_config_change(prefix: str, local: bool) -> str:
    """What applies a new config.json: a restart of the server, the unit on a VPS, the
    container locally (at its fixed address: nginx names it). The collector reads the
    config each run, its resident loop included. Nothing runs yet on the first install."""
    if local:
        return render("dashboard/restart-container.sh.j2",
                      container=f"{prefix}-dashboard").strip()
    return render("dashboard/restart-service.sh.j2").strip()


def package_archive() -> str:
    """The dashboard package as a reproducible tar (base64): same source, same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(PACKAGE_DIR.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.name == "Dockerfile":
                continue
            info = tarfile.TarInfo(str(path.relative_to(PACKAGE_DIR.parent)))
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            archive.addfile(info, io.BytesIO(path.read_bytes()))
    # gzip with a fixed header time: the archive's digest must change only with its content.
    return base64.b64encode(gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0)).decode()


@dataclass
class DashboardArgs:
    context: PlatformContext
    depends_on: list[pulumi.Resource]


class Dashboard(pulumi.ComponentResource):
    def __init__(self, name: str, args: DashboardArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:platform:Dashboard", name, None, opts)
        context = args.context
        platform = context.platform
        settings = platform.dashboard
        local = context.settings.host.kind == "local"
        state_dir = context.host_path("state", "dashboard")
        config_path = context.host_path("dashboard", "config.json")
        # Inside the local containers the host's root is mounted at the same path, so one
        # config file serves both kinds of host.
        # The status network's (networks.py): a VPS's server on the host's address there.
        listen_host = "0.0.0.0" if local else platform.status_gateway  # noqa: S104
        nginx = context.container_name("nginx")
        environments = [
            {"name": env.name, "domain": env.domain,
             "health_url": f"https://{nginx}/healthz/" if local
             else f"https://127.0.0.1:{platform.nginx.https_port}/healthz/",
             "host_header": env.domain}
            for env in platform.environments
        ]
        services = [
            {"name": service, "container_label": service, "environment": None,
             "memory_limit_mb": getattr(platform, service).memory_mb}
            for service in ("postgres", "pgbouncer", "redis", "nginx")
        ] + [
            {"name": f"app-{env.name}", "container_label": "app", "environment": env.name,
             "memory_limit_mb": env.app_memory_mb}
            for env in platform.environments
        ] + [
            # Each process container of the environment (releases.<env>.processes), shown
            # under its own name by the collector (the aiia.process label).
            {"name": f"processes-{env.name}", "container_label": "process",
             "environment": env.name, "memory_limit_mb": env.processes_memory_mb}
            for env in platform.environments if env.processes_memory_mb
        ]
        domains = [env.domain for env in platform.environments] + [platform.status_domain]
        certificates = [{"domain": domain,
                         "path": context.host_path("nginx", "tls", domain, "fullchain.pem")}
                        for domain in domains]
        log_sources = [{"service": s["name"], "container_label": s["container_label"],
                        "environment": s["environment"]} for s in services]
        log_sources.append({"service": "nginx-access",
                            "file": context.host_path("logs", "nginx", "access.log")})
        # Logins and sudo from the journal: a VPS's (dashboard/host_access.py).
        host = context.settings.host
        host_access = None if local or host.ssh is None or host.provision is None else {
            "deploy_user": host.ssh.user, "known_keys": known_keys(host.provision.admin_ssh_keys)}
        password_hashes = dashboard_password_hashes(name, platform, self)
        config_content = password_hashes.apply(
            lambda hashes: render(
                "dashboard/config.json.j2",
                listen_host=listen_host, listen_port=settings.port, state_dir=state_dir,
                root_dir=context.root_dir, environments=environments, services=services,
                certificates=certificates,
                access_log=context.host_path("logs", "nginx", "access.log"),
                releases_file=context.host_path("state", "releases.jsonl"),
                backups_file=context.host_path("state", "backups.jsonl"),
                restore_tests_file=context.host_path("state", "restore-tests.jsonl"),
                certbot_state_file=(None if platform.tls.mode == "self_signed"
                                    else context.host_path("state", "certbot.json")),
                log_sources=log_sources, stack=context.prefix,
                docker_socket=DOCKER_PROXY_SOCKET["local" if local else "vps"],
                pulumi_stack=context.settings.stack,
                collect_every_s=COLLECT_EVERY_S["local" if local else "vps"],
                host_access=host_access, notify=self._notify_block(context, state_dir),
                # nginx alone reaches the server: its X-Real-IP names the client.
                trusted_proxies=[platform.nginx_status_address],
                **auth_settings(settings.operators, settings.user, hashes)))
        # The config holds the password hash: readable by root and the server's group alone.
        uid = settings.uid
        if local:
            user = context.container_user(f"{uid}:{uid}")
            # root:<the server's group>, as on a VPS: the collector (root, without
            # DAC_OVERRIDE) reads it as its owner, the server through its group.
            owner = user if context.unprivileged_local() else f"0:{user.split(':')[1]}"
            prerequisites = list(args.depends_on)
        else:
            user, owner = "aiia-dashboard", "root:aiia-dashboard"
            prerequisites = [host_command(
                f"{name}-prerequisites", context.connection,
                render("dashboard/prepare-host.sh.j2", uid=uid,
                       collector_uid=settings.collector_uid,
                       data_dirs=[context.host_path(d) for d in (*PRIVATE_DIRS, "www")],
                       config_dir=context.host_path("dashboard"), state_dir=state_dir),
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on))]
        # The server reads its config (the password hash above all) once, at start: a
        # changed one is applied by restarting what reads it, or a rotated password would
        # keep working until the next reboot (review M4).
        self.config = HostFile(
            f"{name}-config",
            HostFileArgs(connection=context.connection, path=config_path,
                         content=config_content, mode="0640", owner=owner,
                         on_change=restart_on_config_change(context.prefix, local)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=prerequisites))
        self.notify_secrets = self._notify_secrets(name, context, owner, prerequisites)
        if local:
            self._containers(name, args, user, owner, config_path, state_dir)
        else:
            self._systemd_units(name, args, config_path, state_dir, prerequisites)
        self.register_outputs({"address": self.address})

    @staticmethod
    def _collector_hidden(context: PlatformContext) -> list[str]:
        """What the collector's sandbox hides (InaccessiblePaths): the private directories
        but what it reads, and in those, the apps' logs, the certificates' private keys and
        the alert channels' secrets."""
        platform = context.platform
        domains = [env.domain for env in platform.environments] + [platform.status_domain]
        return ([context.host_path(d) for d in COLLECTOR_PRIVATE_DIRS]
                + [context.host_path("logs", env.name) for env in platform.environments]
                + [context.host_path("nginx", "tls", domain, "privkey.pem")
                   for domain in domains]
                + [context.host_path("dashboard", "notify-secrets.json")])

    @staticmethod
    def _notify_block(context: PlatformContext, state_dir: str) -> dict | None:
        """The notifier's part of the config (platform.alerts), without its secrets."""
        alerts = context.platform.alerts
        if alerts is None:
            return None
        local = context.settings.host.kind == "local"
        files = ({"state_file": f"{state_dir}/notify-state.json",
                  "summary_file": f"{state_dir}/notify-summary.json"} if local else
                 {"state_file": f"{NOTIFY_STATE_DIR}/state.json",
                  "summary_file": context.host_path("state", "notify", "summary.json"),
                  # The page's button (a VPS's: locally `make alerts-test`).
                  "requests_dir": context.host_path("state", "notify-requests")})
        return {**alerts.block, **files,
                "dashboard_url": f"https://{context.platform.status_domain}/",
                "secrets_file": context.host_path("dashboard", "notify-secrets.json")}

    def _notify_secrets(self, name: str, context: PlatformContext, owner: str,
                        prerequisites: list[pulumi.Resource]) -> HostFile | None:
        """The channels' URLs, tokens and passwords: root's alone (0600). The notifier gets
        them from systemd (LoadCredential), the local collector as root."""
        alerts = context.platform.alerts
        if alerts is None:
            return None
        content = pulumi.Output.secret(pulumi.Output.all(**alerts.secrets)).apply(
            lambda values: json.dumps(secrets_document(alerts, values), indent=1))
        return HostFile(
            f"{name}-notify-secrets",
            HostFileArgs(connection=context.connection, mode="0600",
                         path=context.host_path("dashboard", "notify-secrets.json"),
                         content=content,
                         owner=owner if context.settings.host.kind == "local" else "root:root"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=prerequisites))

    def _containers(self, name: str, args: DashboardArgs, user: str, owner: str,
                    config_path: str, state_dir: str) -> None:
        context = args.context
        platform = context.platform
        image = docker.RemoteImage(f"{name}-image", name=platform.dashboard.image,
                                   keep_locally=True, opts=context.child(self))
        root_mount = docker.ContainerVolumeArgs(host_path=context.root_dir,
                                                container_path=context.root_dir, read_only=True)
        state_mount = docker.ContainerVolumeArgs(host_path=state_dir, container_path=state_dir)
        proxy = local_docker_proxy(f"{name}-docker-proxy", context, image.image_id, self)
        # root:<the server's group>, setgid: the collector (root, without DAC_OVERRIDE)
        # writes as the owner, what it writes belongs to the server's group, the same
        # arrangement as the collector's systemd unit makes on a VPS.
        prepare = host_command(
            f"{name}-state-dir", context.connection,
            render("host/prepare-directories.sh.j2", root_dir=context.root_dir,
                   directories=[{"path": state_dir, "mode": "2750", "owner": owner}]),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on))
        self.collector = service_container(
            f"{name}-collector",
            context.service_args(
                image=image.image_id, service="dashboard-collector",
                memory_mb=platform.dashboard.collector_memory_mb,
                command=["python3", "-m", "dashboard", "collect", "--config", config_path,
                         "--every", str(COLLECT_EVERY_S["local"])],
                # Root by uid only, in its container: no capability, it owns what it writes
                # (the state dir, as on a VPS where its account does). No Docker socket: the
                # proxy's (review L2). It publishes nothing and nginx never routes to it.
                user="0:0",
                cap_add=context.root_file_access(),
                read_only=True,  # it writes its state dir (mounted) and SQLite's temp files
                tmpfs={"/tmp": "size=4m,mode=1777"},
                healthcheck=collector_healthcheck(f"{state_dir}/status.json",
                                                  COLLECT_EVERY_S["local"]),
                volumes=[root_mount, state_mount, proxy.mount],
            ),
            context.child(self, depends_on=[self.config, prepare, proxy.container]))
        self.server = service_container(
            f"{name}-server",
            context.service_args(
                image=image.image_id, service="dashboard",
                memory_mb=platform.dashboard.memory_mb, user=user,
                command=["python3", "-m", "dashboard", "serve", "--config", config_path],
                healthcheck=healthcheck(
                    ["CMD", "python3", "-c",
                     "import socket; socket.create_connection(('127.0.0.1', "
                     f"{platform.dashboard.port}), 2)"]),
                volumes=[root_mount],
                read_only=True,
            ),
            context.child(self, depends_on=[self.config, prepare]))
        # A fixed address on the status network: nginx's config names it, and a restart
        # of the container (a new config) must not move it.
        self.address = pulumi.Output.from_input(
            f"{platform.dashboard_status_address}:{platform.dashboard.port}")

    def _systemd_units(self, name: str, args: DashboardArgs, config_path: str,
                       state_dir: str, prerequisites: list[pulumi.Resource]) -> None:
        context = args.context
        platform = context.platform
        unit_context = {"python": "/usr/bin/python3", "install_dir": INSTALL_DIR,
                        "config_path": config_path, "state_dir": state_dir,
                        "root_dir": context.root_dir,
                        "server_memory_mb": platform.dashboard.memory_mb,
                        "collector_memory_mb": platform.dashboard.collector_memory_mb,
                        "inaccessible_paths": [context.host_path(d) for d in PRIVATE_DIRS],
                        "collector_inaccessible_paths": self._collector_hidden(context),
                        "docker_proxy_socket": DOCKER_PROXY_SOCKET["vps"],
                        "docker_proxy_memory_mb": platform.dashboard.docker_proxy_memory_mb,
                        "docker_proxy_idle_exit_s": DOCKER_PROXY_IDLE_EXIT_S,
                        # nginx's fixed address on the status network (networks.py).
                        "allowed_clients": [platform.nginx_status_address],
                        "notifier_memory_mb": platform.dashboard.notifier_memory_mb,
                        "secrets_path": context.host_path("dashboard", "notify-secrets.json"),
                        "notify_dir": context.host_path("state", "notify")}
        notify = platform.alerts is not None
        unit_context["requests_dir"] = (context.host_path("state", "notify-requests")
                                        if notify else None)
        archive = package_archive()
        package = host_command(
            f"{name}-package", context.connection,
            render("host/install-archive.sh.j2", install_dir=INSTALL_DIR,
                   digest=hashlib.sha256(archive.encode()).hexdigest()),
            stdin=archive,
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on))
        # The running server keeps the sandbox it started with: a changed unit restarts it
        # (the collector's run by its timer, each run under the unit's current file).
        def unit_file(unit: str, after: list[pulumi.Resource]) -> HostFile:
            return HostFile(
                f"{name}-{unit.replace('.', '-')}",
                HostFileArgs(connection=context.connection, path=f"/etc/systemd/system/{unit}",
                             content=render(f"dashboard/{unit}.j2", **unit_context),
                             mode="0644", on_change="systemctl daemon-reload" + (
                                 " && " + render("dashboard/restart-service.sh.j2").strip()
                                 if unit == "aiia-dashboard.service" else "")),
                opts=pulumi.ResourceOptions(parent=self, depends_on=after))

        units = [unit_file(unit, prerequisites) for unit in (
            "aiia-dashboard.service", "aiia-dashboard-collect.service",
            "aiia-dashboard-collect.timer") + (
            ("aiia-dashboard-notify.service", "aiia-dashboard-notify.timer") if notify else ())]
        # The proxy's units one after the other, after the collector's (enable.sh starts them
        # all): a first `up`'s widest burst of SSH connections stays what sshd's per-source
        # limit is sized to (components/host/provision.py, ssh_connections_at_once).
        proxy_service = unit_file("aiia-dashboard-docker-proxy.service",
                                  [*prerequisites, units[1]])
        units += [proxy_service, unit_file("aiia-dashboard-docker-proxy.socket",
                                           [*prerequisites, proxy_service])]
        self.enable = host_command(
            f"{name}-enable", context.connection,
            render("dashboard/enable.sh.j2", digest=hashlib.sha256(archive.encode()).hexdigest(),
                   notify=notify),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[
                package, self.config, *units, *([self.notify_secrets] if notify else [])]))
        self.address = pulumi.Output.from_input(
            f"{platform.status_gateway}:{platform.dashboard.port}")
