"""The platform: the shared services of the host, owned by exactly one stack."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.host.connection import HostConnection, host_command
from components.host.provision import engine_requirement
from components.host.templates import render
from components.names import (
    database_name,
    database_role,
    environment_network,
    redis_user,
    status_network,
)
from components.platform.backup import Backup, BackupArgs
from components.platform.certbot import Certbot, CertbotArgs
from components.platform.context import PlatformContext
from components.platform.dashboard import Dashboard, DashboardArgs
from components.platform.log_shipping import LogShipping, LogShippingArgs
from components.platform.networks import (
    Attachment,
    ServiceNetworks,
    join_networks,
    network_subnet,
)
from components.platform.nginx import Nginx, NginxArgs
from components.platform.outputs import PlatformOutputs
from components.platform.pgbouncer import PgBouncer, PgBouncerArgs
from components.platform.pitr import Pitr, PitrArgs
from components.platform.postgres import POSTGRES_PORT, POSTGRES_UID, Postgres, PostgresArgs
from components.platform.redis import Redis, RedisArgs
from components.platform.running import check_running, pids_limit
from components.settings import Settings
from components.settings.postgres import LEGACY_DATA_MAJOR


@dataclass
class PlatformArgs:
    settings: Settings
    connection: HostConnection
    docker_provider: docker.Provider


class Platform(pulumi.ComponentResource):
    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:platform:Platform", name, None, opts)
        settings = args.settings
        platform = settings.platform
        assert platform is not None
        prefix = settings.prefix
        docker_opts = pulumi.ResourceOptions(parent=self, provider=args.docker_provider)
        # Stateful volumes are protected: `pulumi destroy` or a rename cannot delete data.
        protected = pulumi.ResourceOptions.merge(docker_opts, pulumi.ResourceOptions(protect=True))

        # The data network, then one network per environment and the status network
        # (networks.py says who is on which).
        self.network = docker.Network(
            f"{name}-network", name=prefix, driver="bridge",
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=platform.network_subnet)],
            opts=docker_opts)
        self.status_network = docker.Network(
            f"{name}-network-status", name=status_network(prefix), driver="bridge",
            # The gateway named: with an ip_range, Docker would take that range's first
            # address for it, not the subnet's (where a VPS's dashboard listens).
            ipam_configs=[docker.NetworkIpamConfigArgs(
                subnet=platform.status_subnet, ip_range=platform.status_ip_range,
                gateway=platform.status_gateway)],
            opts=docker_opts)
        # After the networks with fixed subnets, so that Docker picks a free one for an
        # environment that names none.
        self.environment_networks = {
            env.name: docker.Network(
                f"{name}-network-{env.name}", name=environment_network(prefix, env.name),
                driver="bridge",
                ipam_configs=[docker.NetworkIpamConfigArgs(subnet=env.network_subnet)]
                if env.network_subnet else None,
                opts=pulumi.ResourceOptions.merge(docker_opts, pulumi.ResourceOptions(
                    depends_on=[self.network, self.status_network])))
            for env in platform.environments}
        context = PlatformContext(settings=settings, connection=args.connection,
                                  docker_provider=args.docker_provider,
                                  network_name=self.network.name,
                                  networks=self._service_networks(platform))
        self.postgres_volume = docker.Volume(f"{name}-postgres-data",
                                             name=f"{prefix}-postgres-data", opts=protected)
        self.letsencrypt_volume = docker.Volume(f"{name}-letsencrypt",
                                                name=f"{prefix}-letsencrypt", opts=protected)
        self.redis_volume = docker.Volume(f"{name}-redis-data", name=f"{prefix}-redis-data",
                                          opts=docker_opts)
        self.nginx_cache_volume = docker.Volume(f"{name}-nginx-cache",
                                                name=f"{prefix}-nginx-cache", opts=docker_opts)

        directories = [
            {"path": context.host_path(), "mode": "0755", "owner": "0:0"},
            {"path": context.host_path("www"), "mode": "0755", "owner": "0:0"},
            {"path": context.host_path("www", "acme"), "mode": "0755", "owner": "0:0"},
            {"path": context.host_path("logs"), "mode": "0755", "owner": "0:0"},
            {"path": context.host_path("logs", "nginx"), "mode": "0755", "owner": "0:0"},
            {"path": context.host_path("state"), "mode": "0755", "owner": "0:0"},
            {"path": context.host_path("backups"), "mode": "0700", "owner": "0:0"},
            # The backup job's keys and the host's drill key (components/platform/backup.py).
            {"path": context.host_path("backup"), "mode": "0700", "owner": "0:0"},
            # Each environment's uploads, {root}/media/<env>, made and owned by its release.
            {"path": context.host_path("media"), "mode": "0755", "owner": "0:0"},
        ]
        if platform.backup.pitr.enabled:
            # The WAL archive is PostgreSQL's to write (its archive_command, pitr.py); the
            # base backups and the restores' work beside it are root's.
            directories += [
                {"path": context.host_path("pitr"), "mode": "0700", "owner": "0:0"},
                {"path": context.host_path("pitr", "wal"), "mode": "0700",
                 "owner": POSTGRES_UID},
                {"path": context.host_path("pitr", "base"), "mode": "0700", "owner": "0:0"},
                {"path": context.host_path("pitr", "restore"), "mode": "0700", "owner": "0:0"},
            ]
        # An environment's static files and logs are made and owned by its release, for the
        # uid its app runs as (releases.<env>.run_as, which lives in that environment's
        # stack; templates/app/release-begin.sh.j2).
        directories += [{"path": context.host_path("www", env.name), "mode": "0755",
                         "owner": "0:0"} for env in platform.environments]
        # nginx's logs, writable by their group (root): see prepare-directories.sh.j2.
        group_writable_logs = [context.host_path("logs", "nginx", log)
                               for log in ("access.log", "error.log")]
        # A local stack's Docker is checked here, before any container (a VPS's in the host's
        # preflight): if host.docker_api_version makes the health checks name start_interval,
        # the engine must take it.
        engine_check = [] if settings.host.kind != "local" or \
            not settings.host.health_start_interval else [host_command(
                f"{name}-docker-engine", args.connection,
                render("host/engine-api.sh.j2", docker="docker", standalone=True,
                       **engine_requirement(settings.host)),
                opts=pulumi.ResourceOptions(parent=self))]
        self.directories = host_command(
            f"{name}-directories", args.connection,
            render("host/prepare-directories.sh.j2", root_dir=settings.host.root_dir,
                   directories=directories, group_writable_logs=group_writable_logs),
            opts=pulumi.ResourceOptions(parent=self, depends_on=engine_check))

        images = {
            service: docker.RemoteImage(f"{name}-{service}-image", name=reference,
                                        keep_locally=True, opts=docker_opts)
            for service, reference in vars(platform.images).items()
            if service != "certbot" or platform.tls.mode != "self_signed"
        }
        self.postgres = Postgres(
            f"{name}-postgres",
            PostgresArgs(context=context, data_volume=self.postgres_volume,
                         image_id=images["postgres"].image_id),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.directories]))
        self.pgbouncer = PgBouncer(
            f"{name}-pgbouncer",
            PgBouncerArgs(context=context, image_id=images["pgbouncer"].image_id,
                          postgres_host=self.postgres.container_name,
                          databases=self.postgres.databases,
                          password_salt=self.postgres.password_salt,
                          depends_on=[self.postgres.init_databases],
                          environment_networks={
                              env: {"name": network.name, "subnet": network_subnet(network)}
                              for env, network in self.environment_networks.items()}),
            opts=pulumi.ResourceOptions(parent=self))
        self.redis = Redis(
            f"{name}-redis",
            RedisArgs(context=context, image_id=images["redis"].image_id,
                      data_volume=self.redis_volume),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.directories]))
        self.dashboard = Dashboard(
            f"{name}-dashboard",
            DashboardArgs(context=context, depends_on=[self.directories]),
            opts=pulumi.ResourceOptions(parent=self))
        self.nginx = Nginx(
            f"{name}-nginx",
            NginxArgs(context=context, image_id=images["nginx"].image_id,
                      cache_volume=self.nginx_cache_volume,
                      dashboard_address=self.dashboard.address,
                      depends_on=[self.directories]),
            opts=pulumi.ResourceOptions(parent=self))
        if platform.tls.mode != "self_signed":
            self.certbot = Certbot(
                f"{name}-certbot",
                CertbotArgs(context=context, image_id=images["certbot"].image_id,
                            letsencrypt_volume=self.letsencrypt_volume,
                            # Egress, and a test CA beside nginx; never the data network.
                            network_name=self.status_network.name,
                            nginx_reload=self.nginx.reload_command,
                            depends_on=[self.nginx.container]),
                opts=pulumi.ResourceOptions(parent=self))

        self.backup = Backup(
            f"{name}-backup",
            BackupArgs(context=context, image_id=images["postgres"].image_id,
                       postgres_host=self.postgres.container_name,
                       network_name=self.network.name,
                       depends_on=[self.directories, self.postgres.init_databases]),
            opts=pulumi.ResourceOptions(parent=self))

        self.log_shipping = LogShipping(
            f"{name}-log-shipping",
            LogShippingArgs(context=context,
                            depends_on=[self.backup.drill_key, *self.backup.operator_keys,
                                        *self.backup.off_host_files]),
            opts=pulumi.ResourceOptions(parent=self))

        if platform.backup.pitr.enabled:
            self.pitr = Pitr(
                f"{name}-pitr",
                PitrArgs(context=context, image_id=images["postgres"].image_id,
                         postgres_container=self.postgres.container_name,
                         postgres_host=self.postgres.container_name,
                         network_name=self.network.name,
                         nginx_container=self.nginx.container_name,
                         major=platform.postgres.data_major or LEGACY_DATA_MAJOR,
                         depends_on=[self.backup.drill_key, self.backup.signing_key,
                                     *self.backup.operator_keys]),
                opts=pulumi.ResourceOptions(parent=self))

        # nginx, PgBouncer and Redis join the networks they do not start on while they run.
        self.joins = [
            join_networks(f"{component_name}-networks", args.connection, prefix,
                          component.container, component.container_name,
                          context.networks[service], component)
            for service, component_name, component in (
                ("nginx", f"{name}-nginx", self.nginx),
                ("pgbouncer", f"{name}-pgbouncer", self.pgbouncer),
                ("redis", f"{name}-redis", self.redis))]

        # Every container of the platform running before anything relies on it (running.py).
        self.running = check_running(
            f"{name}-running", args.connection,
            {component.container_name: (component.container, pids_limit(
                service, settings.platform.postgres.max_connections))
             for service, component in (("postgres", self.postgres),
                                        ("pgbouncer", self.pgbouncer),
                                        ("redis", self.redis), ("nginx", self.nginx))},
            pulumi.ResourceOptions(parent=self, depends_on=self.joins))

        # What an environment's release needs from the platform; staging reads these
        # through a StackReference, so none of them is a secret (outputs.py).
        self.environments = {
            env.name: {
                "domain": env.domain,
                "port": env.port,
                "app_memory_mb": env.app_memory_mb,
                "processes_memory_mb": env.processes_memory_mb,
                "database_name": database_name(prefix, env.name),
                "database_user": database_role(prefix, env.name),
                "redis_user": redis_user(env.name),
                "network": self.environment_networks[env.name].name,
            }
            for env in platform.environments
        }
        self.outputs = PlatformOutputs(
            prefix=prefix,
            network_name=self.network.name,
            nginx_container=self.nginx.container_name,
            pgbouncer_host=self.pgbouncer.container_name,
            pgbouncer_port=self.pgbouncer.port,
            postgres_host=self.postgres.container_name,
            postgres_port=POSTGRES_PORT,
            redis_host=self.redis.container_name,
            redis_port=self.redis.port,
            root_dir=settings.host.root_dir,
            environments=self.environments,
            nginx_keep_idle_seconds=platform.nginx.reload_keeps_idle_seconds,
            dashboard_uid=platform.dashboard.uid,
            health_start_interval=settings.host.health_start_interval,
            ready=pulumi.Output.all(self.pgbouncer.container.id, self.redis.container.id,
                                    self.nginx.container.id, self.running.id,
                                    *[join.id for join in self.joins]).apply(lambda _: True),
        ).as_dict()
        self.register_outputs(self.outputs)

    def _service_networks(self, platform) -> dict[str, ServiceNetworks]:
        """Who is on which network, besides PostgreSQL (the data network alone)."""
        environments = [Attachment(network.name) for network in self.environment_networks.values()]
        status = self.status_network.name
        return {
            # nginx: every environment's releases and the dashboard; not the data network,
            # which an nginx of an earlier program was on (it leaves it).
            "nginx": ServiceNetworks([Attachment(status, platform.nginx_status_address),
                                      *environments], joined_live=True,
                                     leaves=self.network.name),
            # PgBouncer: PostgreSQL on the data network, the releases on theirs.
            "pgbouncer": ServiceNetworks([Attachment(self.network.name), *environments],
                                         joined_live=True),
            # Redis: the releases alone.
            "redis": ServiceNetworks(environments, joined_live=True, leaves=self.network.name),
            # A local stack's dashboard: nginx's client at a fixed address, and the collector
            # (its probes go through nginx).
            "dashboard": ServiceNetworks([Attachment(status, platform.dashboard_status_address)]),
            "dashboard-collector": ServiceNetworks([Attachment(status)]),
        }
