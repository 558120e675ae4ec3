"""Point-in-time recovery: PostgreSQL archives every WAL segment it completes, encrypted, into
{root}/pitr/wal (its archive_command, {root}/postgres/pitr-archive.sh); {root}/bin/pitr.sh takes
the base backups, ships both off the host, writes the status the dashboard reads, restores one
environment's database to a chosen second, and drills that once a month (docs/pitr.md).

The server needs nothing but its own image: gpg is in it (the backup job encrypts with it), and
archiving runs as a child of the server for a few milliseconds per segment, not as a daemon.
Segments are encrypted to the host's drill key and the operators' keys, as the daily backups
are; only the scratch server of a restore or a drill decrypts them, with the drill key.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.host.connection import HostFile, HostFileArgs, host_command
from components.host.templates import render
from components.names import database_name, database_role
from components.platform.backup import DRILL_KEY_FILE, SIGNATURE_NAMESPACE, operator_key_file
from components.platform.context import PlatformContext
from components.platform.nginx import reload_command, render_maintenance
from components.settings.accounts import data_owner

ARCHIVE_MOUNT = "/var/lib/postgresql/wal-archive"  # {root}/pitr/wal in the server
CONFIG_DIR_IN_CONTAINER = "/etc/postgresql/aiia"  # {root}/postgres (postgres.py)
ARCHIVE_SCRIPT = "pitr-archive.sh"
KEYS_DIR = "pitr-keys"


def archive_command(major: int) -> str:
    return f"bash {CONFIG_DIR_IN_CONTAINER}/{ARCHIVE_SCRIPT} %p %f {major}"


def archive_script(name: str, context: PlatformContext, parent: pulumi.Resource) -> HostFile:
    """The server's archive_command, beside its configuration (mounted read-only there)."""
    pitr = context.platform.backup.pitr
    return HostFile(
        f"{name}-pitr-archive",
        HostFileArgs(connection=context.connection,
                     path=context.host_path("postgres", ARCHIVE_SCRIPT),
                     content=render("pitr/archive.sh.j2", root_dir=context.root_dir,
                                    archive_mount=ARCHIVE_MOUNT,
                                    keys_dir=f"{CONFIG_DIR_IN_CONTAINER}/{KEYS_DIR}",
                                    reserve_mb=pitr.reserve_mb,
                                    wal_keep_cap_mb=pitr.wal_keep_cap_mb),
                     mode="0755"),
        opts=pulumi.ResourceOptions(parent=parent))


def render_pitr_cron(script: str, log: str, base_time: str, base_every_days: int,
                     drill_day: int, drill_time: str) -> str:
    hour, minute = (int(part) for part in base_time.split(":"))
    drill_hour, drill_minute = (int(part) for part in drill_time.split(":"))
    return render("cron/pitr.cron.j2", script=script, log=log, base_time=base_time,
                  hour=hour, minute=minute, every=base_every_days, drill_day=drill_day,
                  drill_time=drill_time, drill_hour=drill_hour, drill_minute=drill_minute)


@dataclass
class PitrArgs:
    context: PlatformContext
    image_id: pulumi.Input[str]
    postgres_container: str
    postgres_host: pulumi.Input[str]
    network_name: pulumi.Input[str]
    nginx_container: str
    major: int
    depends_on: list[pulumi.Resource]


class Pitr(pulumi.ComponentResource):
    def __init__(self, name: str, args: PitrArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:platform:Pitr", name, None, opts)
        context = args.context
        platform = context.platform
        pitr = platform.backup.pitr
        child = pulumi.ResourceOptions(parent=self)
        connection = context.connection
        # The public keys the server encrypts to, where it can read them: the drill key is
        # made on the host (backup.py), so they are copied there rather than rendered.
        keys = [DRILL_KEY_FILE] + [operator_key_file(key.fingerprint)
                                   for key in platform.backup.keys]
        self.keys = host_command(
            f"{name}-keys", connection,
            render("pitr/copy-keys.sh.j2", source=context.host_path("backup", "keys"),
                   target=context.host_path("postgres", KEYS_DIR), keys=keys),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on))
        environments = [{"name": env.name, "database": database_name(context.prefix, env.name),
                         "role": database_role(context.prefix, env.name)}
                        for env in platform.environments]
        script = pulumi.Output.all(args.image_id, args.network_name).apply(
            lambda values: render(
                "pitr/pitr.sh.j2", root_dir=context.root_dir, prefix=context.prefix,
                image=values[0], network=values[1], major=args.major,
                postgres_container=args.postgres_container, environments=environments,
                window_days=pitr.window_days, base_every_days=pitr.base_every_days,
                base_time=pitr.base_time, rpo_seconds=pitr.rpo_seconds,
                archive_timeout=pitr.archive_timeout_seconds, reserve_mb=pitr.reserve_mb,
                memory_mb=platform.backup.memory_mb, restore_memory_mb=pitr.restore_memory_mb,
                postgres_uid=data_owner("postgres"), off_host=platform.backup.off_host,
                signature_namespace=SIGNATURE_NAMESPACE,
                extra_capabilities=context.root_file_access(),
                reload_command=reload_command(args.nginx_container)))
        job = pulumi.Output.from_input(args.postgres_host).apply(
            lambda host: render("pitr/pitr-job.sh.j2", root_dir=context.root_dir,
                                postgres_host=host))
        self.script_path = context.host_path("bin", "pitr.sh")
        files = [
            HostFile(f"{name}-script", HostFileArgs(connection=connection, path=self.script_path,
                                                    content=script, mode="0750"), opts=child),
            HostFile(f"{name}-job", HostFileArgs(connection=connection,
                                                 path=context.host_path("bin", "pitr-job.sh"),
                                                 content=job, mode="0750"), opts=child),
            HostFile(f"{name}-restore-wal",
                     HostFileArgs(connection=connection,
                                  path=context.host_path("bin", "pitr-restore-wal.sh"),
                                  content=render("pitr/restore-wal.sh.j2"), mode="0755"),
                     opts=child),
            HostFile(f"{name}-scratch-hba",
                     HostFileArgs(connection=connection,
                                  path=context.host_path("pitr", "scratch-hba.conf"),
                                  content=render("pitr/scratch-hba.conf.j2"), mode="0644"),
                     opts=child),
        ]
        # Each environment's maintenance switch turned on, as a restore installs it for the
        # swap (nginx.render_maintenance, the release's own switch; put back after).
        for release in platform.environments:
            files.append(HostFile(
                f"{name}-maintenance-{release.name}",
                HostFileArgs(connection=connection,
                             path=context.host_path("pitr", f"maintenance-on-{release.name}.conf"),
                             content=render_maintenance(release.name, True),
                             mode="0644"),
                opts=child))
        self.cron = HostFile(
            f"{name}-cron",
            HostFileArgs(connection=connection, path=context.cron_file("pitr"),
                         content=render_pitr_cron(
                             self.script_path, context.host_path("logs", "pitr.log"),
                             pitr.base_time, pitr.base_every_days, pitr.drill_day,
                             pitr.drill_time),
                         mode="0644"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.keys, *files]))
        self.register_outputs({"script_path": self.script_path})
