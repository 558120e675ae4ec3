"""nginx: the one internet-facing container, routing every environment and the status domain.

nginx is never replaced by a config change: its files live on the host (bind-mounted
read-only) and a change is validated with `nginx -t` and applied with a graceful reload,
so no connection is cut. The container's own inputs are kept free of anything that
changes with a release; a release only rewrites its upstream file, its maintenance
switch and its health path's location.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.host.connection import HostFile, HostFileArgs, host_command
from components.host.containers import healthcheck, service_container
from components.host.templates import render
from components.platform.context import PlatformContext
from components.settings.contract import DEFAULT_HEALTH_PATH, health_uri
from components.settings.nginx import NginxSettings
from components.settings.platform import PlatformSettings

CONFIG_DIR_IN_CONTAINER = "/etc/aiia-nginx"
PLACEHOLDER_UPSTREAM = "127.0.0.1:8081"
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; "
                           "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


def reload_command(container: str, workers_file: str | None = None) -> str:
    """`nginx -t`, then a graceful reload. With `workers_file`, the pids of the workers that
    serve before the reload are written there, so a release can wait for them to finish."""
    return render("nginx/reload.sh.j2", container=container, workers_file=workers_file).strip()


def nginx_lock_file(state_dir: str) -> str:
    """The lock every change of nginx's tree (install, test, reload) is made under."""
    return f"{state_dir.rstrip('/')}/nginx.lock"


def render_upstream(environment: str, server: str, description: str) -> str:
    return render("nginx/upstream.conf.j2", environment=environment, server=server,
                  description=description)


def render_maintenance(environment: str, enabled: bool, allow: tuple[str, ...] = (),
                       retry_after_seconds: int = 600) -> str:
    """An environment's maintenance switch (templates/nginx/maintenance.conf.j2)."""
    return render("nginx/maintenance.conf.j2", environment=environment, enabled=enabled,
                  allow=[str(ipaddress.ip_network(entry, strict=False)) for entry in allow],
                  retry_after_seconds=retry_after_seconds)


def maintenance_path(environment: str) -> str:
    """Where an environment's switch lives, under the host's nginx directory."""
    return f"maintenance/{environment}.conf"


def health_route_path(environment: str) -> str:
    """Where an environment's health location lives, under the host's nginx directory."""
    return f"health/{environment}.conf"


def render_health_route(environment: str, path: str = DEFAULT_HEALTH_PATH) -> str:
    """The health path's location and maintenance exception (templates/nginx/health.conf.j2):
    `path` is releases.<env>.health.path, matched without its query, as nginx's $uri."""
    return render("nginx/health.conf.j2", environment=environment, path=path,
                  uri=health_uri(path))


def render_site(environment: str, domain: str, nginx: NginxSettings, ocsp_stapling: bool) -> str:
    # /api/ is a location of its own already: an upload path there raises its body limit;
    # any other upload path gets a location of its own.
    return render("nginx/site.conf.j2", environment=environment, domain=domain, nginx=nginx,
                  health_file=health_route_path(environment),
                  api_max_body_mb=nginx.upload_max_body_mb if "/api/" in nginx.upload_paths
                  else nginx.max_body_mb,
                  other_upload_paths=[path for path in nginx.upload_paths if path != "/api/"],
                  ocsp_stapling=ocsp_stapling)


def render_main(platform: PlatformSettings) -> str:
    nginx = platform.nginx
    return render("nginx/nginx.conf.j2",
                  worker_shutdown_timeout_seconds=nginx.worker_shutdown_timeout_seconds,
                  keepalive_timeout_seconds=nginx.keepalive_timeout_seconds,
                  keepalive_min_timeout_seconds=nginx.reload_keeps_idle_seconds,
                  general_rate_per_second=nginx.general_rate_per_second,
                  api_rate_per_second=nginx.api_rate_per_second,
                  worker_connections=nginx.worker_connections,
                  connections_per_address=nginx.connections_per_address,
                  max_body_mb=nginx.max_body_mb,
                  network_subnet=platform.network_subnet)


@dataclass
class NginxArgs:
    context: PlatformContext
    image_id: pulumi.Input[str]
    cache_volume: docker.Volume
    dashboard_address: pulumi.Input[str]
    depends_on: list[pulumi.Resource]


class Nginx(pulumi.ComponentResource):
    def __init__(self, name: str, args: NginxArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:platform:Nginx", name, None, opts)
        context = args.context
        platform = context.platform
        settings = platform.nginx
        self.container_name = context.container_name("nginx")
        self.reload_command = reload_command(self.container_name)
        # Only for a CA that serves OCSP (tls.ocsp_stapling; refused for Let's Encrypt,
        # which ended OCSP in 2025, and for self-signed certificates).
        ocsp = platform.tls.ocsp_stapling

        def config_file(resource: str, relative_path: str, content: pulumi.Input[str],
                        only_if_absent: bool = False, *after: HostFile) -> HostFile:
            return HostFile(
                f"{name}-{resource}",
                HostFileArgs(connection=context.connection,
                             path=context.host_path("nginx", relative_path),
                             content=content, mode="0644", only_if_absent=only_if_absent,
                             on_change=None if only_if_absent else self.reload_command,
                             lock_file=nginx_lock_file(context.host_path("state"))),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
            )

        files = [
            config_file("main", "nginx.conf", render_main(platform)),
            config_file("security-headers", "snippets/security-headers.conf", render(
                "nginx/snippets/security-headers.conf.j2",
                content_security_policy=CONTENT_SECURITY_POLICY)),
            config_file("dhparam", "ffdhe2048.pem", render("nginx/ffdhe2048.pem.j2")),
            config_file("status-site", "conf.d/status.conf", pulumi.Output.from_input(
                args.dashboard_address).apply(lambda address: render(
                    "nginx/status.conf.j2", domain=platform.status_domain,
                    dashboard_address=address, nginx=settings,
                    allow_from=platform.dashboard.allow_from))),
        ]
        for env in platform.environments:
            # Before an environment's first release its upstream answers 503; the release's
            # switch owns the file from then on, so the platform never overwrites it.
            files.append(config_file(
                f"upstream-{env.name}", f"upstreams/{env.name}.conf",
                render_upstream(env.name, PLACEHOLDER_UPSTREAM, "no release deployed yet"),
                only_if_absent=True))
            # Off until the releasing stack says otherwise; it owns the file from then on.
            # The site reads its variables: both, and nginx.conf's include of them, first.
            maintenance = config_file(
                f"maintenance-{env.name}", maintenance_path(env.name),
                render_maintenance(env.name, enabled=False), True)
            # The health path the default contract answers, until a release says its own.
            health = config_file(
                f"health-{env.name}", health_route_path(env.name),
                render_health_route(env.name), True)
            files += [maintenance, health, config_file(
                f"site-{env.name}", f"conf.d/{env.name}.conf",
                render_site(env.name, env.domain, settings, ocsp), False, files[0],
                maintenance, health)]
        domains = [env.domain for env in platform.environments] + [platform.status_domain]
        self.tls_bootstrap = host_command(
            f"{name}-tls-bootstrap",
            context.connection,
            render("nginx/self-signed-bootstrap.sh.j2", domains=domains,
                   tls_dir=context.host_path("nginx", "tls"),
                   days=825 if platform.tls.mode == "self_signed" else 30),
            opts=pulumi.ResourceOptions(parent=self),
        )
        ports = [
            docker.ContainerPortArgs(internal=80, external=settings.http_port,
                                     ip=settings.bind_address),
            docker.ContainerPortArgs(internal=443, external=settings.https_port,
                                     ip=settings.bind_address),
        ]
        self.container = service_container(
            f"{name}-container",
            context.service_args(
                image=args.image_id,
                service="nginx",
                memory_mb=settings.memory_mb,
                command=["nginx", "-c", f"{CONFIG_DIR_IN_CONTAINER}/nginx.conf",
                         "-g", "daemon off;"],
                healthcheck=healthcheck(
                    ["CMD", "curl", "-fsS", "-o", "/dev/null",
                     "http://127.0.0.1:8080/nginx-health"], start_period="10s"),
                ports=ports,
                volumes=[
                    docker.ContainerVolumeArgs(host_path=context.host_path("nginx"),
                                               container_path=CONFIG_DIR_IN_CONTAINER,
                                               read_only=True),
                    docker.ContainerVolumeArgs(host_path=context.host_path("www"),
                                               container_path="/var/www/aiia", read_only=True),
                    docker.ContainerVolumeArgs(host_path=context.host_path("logs", "nginx"),
                                               container_path="/var/log/aiia-nginx"),
                    docker.ContainerVolumeArgs(volume_name=args.cache_volume.name,
                                               container_path="/var/cache/nginx"),
                ],
                # The master runs as root and needs: NET_BIND_SERVICE to listen on 80 and
                # 443, SETUID/SETGID to start its workers as `nginx`, CHOWN to hand its
                # temp and cache directories to them. Workers run with none of it.
                cap_add=["CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID",
                         *context.root_file_access()],
                # Read-only: it writes only its cache volume (temp paths too), the log
                # directory and its pid file (/var/run is /run in both images).
                read_only=True,
                tmpfs={"/run": "size=1m,mode=0755"},
                # SIGQUIT is nginx's graceful shutdown: in-flight requests finish first.
                stop_signal="SIGQUIT",
                stop_grace_seconds=settings.worker_shutdown_timeout_seconds,
            ),
            context.child(self, depends_on=[*files, self.tls_bootstrap, *args.depends_on]),
        )
        self.register_outputs({"container_name": self.container_name})
