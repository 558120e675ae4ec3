"""One environment's app release: migrate, start beside the old one, switch nginx, record.

Every release gets resources of its own: the image, the migration step and the container
carry the release in their Pulumi *name*, not only in the container name. A release
therefore never replaces anything: it creates the new release's resources, switches the
upstream (an in-place update of one file), and only at the end of a fully successful
update does Pulumi delete the previous release's resources, because the program no
longer declares them. A failed update stops before any deletion, so the container nginx
points at keeps running, and putting the previous value back re-declares it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.host.connection import HostConnection, HostFile, HostFileArgs, host_command
from components.host.containers import (
    ServiceContainerArgs,
    healthcheck,
    house_rules,
    service_container,
)
from components.host.templates import render
from components.names import generation, release_container_name, release_slug
from components.platform.nginx import nginx_lock_file, reload_command, render_upstream
from components.platform.outputs import PlatformHandle
from components.release.app_contract import (
    MEDIA_ROOT,
    MIGRATE_ENV_MARK,
    SECRETS_IN_CONTAINER,
    STATIC_ROOT,
    app_environment_variables,
    app_port,
    app_secrets,
    health_check_command,
    migrate_environment_variables,
    secret_file_names,
)
from components.release.health_route import HEALTH_PATH_LABEL, health_route
from components.release.maintenance import maintenance_switch
from components.release.processes import ProcessesArgs, release_processes
from components.settings import Settings
from components.settings.contract import health_uri
from components.settings.releases import RELEASE_DRAIN_SECONDS, ReleaseSettings

# The app's only writable path besides its log directory: Django's temp files for large
# uploads. Counted in the container's memory when used.
APP_TMPFS = {"/tmp": "size=8m,mode=1777"}
# In the upstream's content, the new container's address: the switch's precondition reads it
# from the engine on the host (templates/app/switch-precondition.sh.j2).
ADDRESS_MARKER = "@ADDRESS@"


def keep_idle_seconds(value: float | None) -> int:
    """The platform's nginx_keep_idle_seconds, an int (a StackReference gives floats).

    A platform stack updated before that output existed runs an nginx without
    keepalive_min_timeout: its reloads keep no idle connection, so 0 is the truth there.
    """
    return 0 if value is None else int(value)


@dataclass
class AppReleaseArgs:
    settings: Settings
    release: ReleaseSettings
    platform: PlatformHandle
    connection: HostConnection
    docker_provider: docker.Provider


class AppRelease(pulumi.ComponentResource):
    def __init__(self, name: str, args: AppReleaseArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:release:AppRelease", name, None, opts)
        settings, release = args.settings, args.release
        env_name = release.environment
        slug = release_slug(release.release)
        prefix = settings.prefix
        root = settings.host.root_dir.rstrip("/")
        docker_opts = pulumi.ResourceOptions(parent=self, provider=args.docker_provider)
        stack_name = settings.platform_stack or settings.stack
        environment = args.platform.environment(env_name, stack_name)
        platform_values = pulumi.Output.all(
            **{key: args.platform.output(key)
               for key in ("pgbouncer_host", "pgbouncer_port", "redis_host", "redis_port",
                           "postgres_host", "postgres_port", "network_name", "prefix",
                           "dashboard_uid")},
            environment=environment)

        def check_platform(values: dict) -> dict:
            if values["prefix"] != prefix:
                raise ValueError(
                    f"aiia:prefix={prefix!r} differs from the platform stack's prefix "
                    f"{values['prefix']!r} ({stack_name}); set the same prefix in both stacks")
            dashboard_uid = values["dashboard_uid"]
            if dashboard_uid is not None and \
                    str(int(dashboard_uid)) in str(release.run_as).split(":"):
                raise ValueError(
                    f"aiia:releases.{env_name}.run_as={release.run_as!r} shares "
                    f"{int(dashboard_uid)} with the dashboard's account ({stack_name}: "
                    "platform.dashboard.uid): its server could read the app's secret files; "
                    "give the release another uid:gid")
            # The environment's own network (a platform stack of an earlier program has
            # one network for everything: network_name); the data network, PostgreSQL's,
            # for the migrations alone.
            values["data_network"] = values["network_name"]
            values["network_name"] = values["environment"].get("network") or \
                values["network_name"]
            return values

        platform_values = platform_values.apply(check_platform)
        # From this stack's own config, never from the platform's stack (outputs.py).
        # The extra secrets (releases.<env>.secrets) after them, in their order.
        passwords = (pulumi.Output.secret(release.database_password),
                     pulumi.Output.secret(release.redis_password),
                     pulumi.Output.secret(release.secret_key),
                     *[pulumi.Output.secret(value)
                       for _, _, value in release.contract.secrets])
        variables = pulumi.Output.all(environment, platform_values, *passwords).apply(
            lambda values: app_environment_variables(release, *values))
        variables = pulumi.Output.secret(variables)
        migrate_variables = pulumi.Output.secret(
            pulumi.Output.all(environment, platform_values, *passwords).apply(
                lambda values: migrate_environment_variables(release, *values)))
        secrets = pulumi.Output.secret(
            pulumi.Output.all(environment, platform_values, *passwords).apply(
                lambda values: app_secrets(release, *values)))
        secrets_dir = f"{root}/secrets/{env_name}"
        # Secrets as files: one per secret, 0400 for the app's uid (readable by it alone),
        # in place before the release's jobs run; the app reads them at its start, so a
        # changed one takes effect with the new generation its value is part of.
        secret_files = [] if release.secrets_as != "files" else [
            HostFile(
                f"{name}-secret-{file}",
                HostFileArgs(connection=args.connection, path=f"{secrets_dir}/{file}",
                             content=secrets.apply(lambda values, key=key: values[key]),
                             mode="0444" if args.connection.unprivileged_local else "0400",
                             owner=release.run_as),
                opts=pulumi.ResourceOptions(parent=self))
            for key, file in secret_file_names(release).items()]

        # The image of this release; kept on the host after the release is gone, so a
        # rollback never depends on the registry.
        self.image = docker.RemoteImage(
            f"{name}-image-{slug}", name=release.image_reference, keep_locally=True,
            opts=docker_opts)
        memory_mb = environment.apply(lambda env: int(env["app_memory_mb"]))
        network = platform_values.apply(lambda values: values["network_name"])
        log_volume = {"host_path": f"{root}/logs/{env_name}",
                      "container_path": f"/var/log/aiia/{env_name}"}
        media_volume = {"host_path": f"{root}/media/{env_name}", "container_path": MEDIA_ROOT}
        volumes = [log_volume, media_volume] + ([{"host_path": secrets_dir,
                                    "container_path": SECRETS_IN_CONTAINER, "read_only": True}]
                                  if secret_files else [])
        health = {"interval": "5s", "timeout": "4s", "retries": 3, "start_period": "20s"}
        port = environment.apply(lambda env: app_port(release, env))
        health_command = pulumi.Output.all(environment, port).apply(
            lambda values: health_check_command(release, values[0]["domain"], values[1]))
        configured_health = release.contract.health is not None
        if configured_health:
            # The probe's own timeout plus a second.
            health["timeout"] = f"{release.contract.health.timeout_seconds + 1}s"
        # One second between checks while it starts, where the host's engine takes it (the
        # platform's stack knows its host); the digest below names it only when set, so a
        # generation on a host without it keeps its name.
        start_interval = args.platform.output("health_start_interval")
        # The command is part of the generation only when releases.<env>.health is set: a
        # stack that sets none keeps the digest, and the names, it had.
        health_digest = pulumi.Output.all(start_interval, health_command).apply(
            lambda values: {**health, **({"start_interval": values[0]} if values[0] else {}),
                            **({"command": values[1]} if configured_health else {})})
        # A generation of this release: every input that pulumi-docker cannot change in
        # place (image, variables with the secrets, network, volume, health check, stop
        # grace) named in the container's name. pulumi-docker replaces a container
        # delete-before-create, which would stop the serving one before its successor
        # exists; with a new name and create-before-delete below, a rotated secret or a
        # changed variable goes through the same side-by-side path as a release. Memory is
        # updated in place (docker update) and is not part of it. The house rules of every
        # container (capabilities, security options, logs) are: a change to them is a new
        # generation too.
        generation_inputs = pulumi.Output.all(
            image=self.image.image_id, variables=variables, secrets=secrets,
            network=network, volume=volumes, health=health_digest, grace=release.stop_grace_seconds,
            house_rules=house_rules(), root={"read_only": True, "tmpfs": APP_TMPFS},
            user=release.run_as,
        )
        self.container_name = pulumi.Output.unsecret(generation_inputs.apply(
            lambda values: release_container_name(prefix, env_name, release.release,
                                                  generation(values))))
        state_dir = f"{root}/state"
        upstream_file = f"{root}/nginx/upstreams/{env_name}.conf"
        old_workers_file = f"{state_dir}/release-{env_name}.old-nginx-workers"
        nginx_container = f"{prefix}-nginx"
        script_values = pulumi.Output.all(self.image.image_id, network, memory_mb,
                                          environment, args.platform.output("ready"),
                                          self.container_name)

        def script(template: str, **extra) -> pulumi.Output[str]:
            """A release script; `extra` may hold Outputs too."""
            return pulumi.Output.all(script_values, pulumi.Output.from_input(extra)).apply(
                lambda values: render(
                    template, environment=env_name, release=release.release, slug=slug,
                    state_dir=state_dir, container_name=values[0][5],
                    network=values[0][1], memory_mb=values[0][2], image_id=values[0][0],
                    image=release.image_reference, domain=values[0][3]["domain"],
                    upstream_file=upstream_file, nginx_container=nginx_container, stack=prefix,
                    **values[1]))

        # `ready` (pgbouncer, redis and nginx healthy) in the inputs makes this wait for them.
        self.migrate = host_command(
            f"{name}-migrate-{slug}", args.connection,
            script("app/release-begin.sh.j2", static_dir=f"{root}/www/{env_name}/static",
                   static_root=STATIC_ROOT, run_as=release.run_as,
                   # The jobs have no log volume: no log file (releases.<env>.variables).
                   log_file_variable=release.contract.name("log_file"),
                   log_dir=log_volume["host_path"], media_dir=media_volume["host_path"],
                   secrets_dir=secrets_dir if secret_files else None,
                   secrets_in_container=SECRETS_IN_CONTAINER,
                   data_network=platform_values.apply(lambda values: values["data_network"]),
                   lock_timeout_seconds=release.migrate_lock_timeout_seconds,
                   attempts=release.migrate_attempts,
                   gate_watch=script("app/release-gate-watch.sh.j2", timeout_seconds=300)),
            # Two environment files: the app's, and the migrations' (PostgreSQL directly).
            stdin=pulumi.Output.all(variables, migrate_variables).apply(
                lambda files: render("app/app.env.j2", variables=files[0]) + MIGRATE_ENV_MARK
                + "\n" + render("app/app.env.j2", variables=files[1])),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.image, *secret_files]),
        )

        self.container = service_container(
            f"{name}-app-{slug}",
            ServiceContainerArgs(
                stack=prefix,
                container_name=self.container_name,
                image=self.image.image_id,
                service="app",
                environment=env_name,
                memory_mb=memory_mb,
                envs=variables.apply(lambda pairs: [f"{key}={value}" for key, value in pairs]),
                healthcheck=healthcheck(health_command, **health),
                health_start_interval=start_interval,
                network=network,
                volumes=[docker.ContainerVolumeArgs(**volume) for volume in volumes],
                # Read-only: the app writes its log and media directories (mounted) and,
                # for uploads larger than Django keeps in memory, /tmp.
                read_only=True,
                tmpfs=APP_TMPFS,
                # Set here, not left to the image: an image without USER would run as root.
                user=release.run_as,
                # The health path the dashboard's probe asks when the contract sets its own
                # (dashboard/collector.py); a default contract adds nothing, so no diff.
                extra_labels={"aiia.release": release.release,
                              **({HEALTH_PATH_LABEL: release.contract.health_path}
                                 if release.contract.health else {})},
                # Long enough for requests and WebSockets to drain after the switch (nginx's
                # worker_shutdown_timeout holds the client side for the same time).
                stop_grace_seconds=release.stop_grace_seconds,
                # Past its start period (20 s) and three failed checks it is unhealthy; the
                # gate waits releases.<env>.health_gate_seconds (60) for it to be healthy.
                wait_timeout_seconds=release.health_gate_seconds,
            ),
            # Create-before-delete, explicitly: the new generation runs beside the old one
            # (the engine takes the program's choice over the provider's
            # delete-before-replace), and the old one goes at the end of the update.
            pulumi.ResourceOptions.merge(docker_opts, pulumi.ResourceOptions(
                depends_on=[self.migrate], delete_before_replace=False)),
        )
        envs = variables.apply(lambda pairs: [f"{key}={value}" for key, value in pairs])
        # The release's processes (workers, beat): beside the web container, gated like it.
        self.processes = release_processes(name, ProcessesArgs(
            prefix=prefix, release=release, image_id=self.image.image_id, envs=envs,
            network=network, volumes=volumes, read_only_tmpfs=APP_TMPFS,
            generation_inputs=generation_inputs, health_start_interval=start_interval,
            environment=environment, depends_on=[self.migrate]), docker_opts)
        # The switch: only once the new container and every process are healthy (wait=True)
        # is the upstream rewritten, validated with nginx -t and reloaded gracefully. One
        # resource for every release, updated in place. Its address is the engine's, read by
        # the precondition on the host: Pulumi's state has none for a container whose health
        # gate failed in an earlier `up` (the provider's update never reads it back), and
        # re-running that release once it is healthy must still switch (issue #28 item 2).
        self.switch = HostFile(
            f"{name}-upstream",
            HostFileArgs(
                connection=args.connection,
                path=upstream_file,
                content=pulumi.Output.all(port, self.container_name).apply(
                    lambda values: render_upstream(
                        env_name, f"{ADDRESS_MARKER}:{int(values[0])}",
                        f"release {release.release}: {values[1]}")),
                fill_in={ADDRESS_MARKER: "address"},
                on_change=reload_command(nginx_container, workers_file=old_workers_file),
                precondition=script("app/switch-precondition.sh.j2", timeout_seconds=60,
                                    processes=[process.name for process in self.processes],
                                    pids_limit=release.pids_limit),
                lock_file=nginx_lock_file(state_dir),
            ),
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[self.container, *self.processes]),
        )
        # The contract's health path in nginx, before the watch asks it there.
        self.health_route = health_route(name, release, args.platform.output("ready"),
                                         args.connection, root, nginx_container, self)
        self.watch = host_command(
            f"{name}-watch", args.connection,
            script("app/release-watch.sh.j2", watch_seconds=release.watch_seconds,
                   max_error_percent=release.watch_max_error_percent,
                   min_requests=release.watch_min_requests, keep_images=release.keep_images,
                   access_log=f"{root}/logs/nginx/access.log",
                   drain_seconds=RELEASE_DRAIN_SECONDS, old_workers_file=old_workers_file,
                   keep_idle_seconds=args.platform.output("nginx_keep_idle_seconds").apply(
                       keep_idle_seconds),
                   image_repository=release.image,
                   health_path=release.contract.health_path,
                   health_uri=health_uri(release.contract.health_path),
                   health_status=release.contract.health_status,
                   # No release header: the watch recognises the release by the address
                   # nginx logs for its requests (templates/app/release-watch.sh.j2).
                   check_upstream=release.contract.release_header is None, port=port,
                   nginx_reload=reload_command(nginx_container),
                   lock_file=nginx_lock_file(state_dir)),
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[self.switch, self.health_route]),
        )
        self.maintenance = maintenance_switch(
            name, release, environment.apply(lambda env: env["domain"]),
            args.platform.output("ready"), args.connection, root, nginx_container, self)
        self.register_outputs({"container_name": self.container_name,
                               "release": release.release})
