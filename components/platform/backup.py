"""Backups: a daily encrypted, verified backup of the host, kept by retention, and a monthly
restore drill that proves the newest one restores.

Two scripts reach the host: {root}/bin/backup.sh (cron's and the operator's entry point:
locking, the free-space and disk-budget checks, verification, retention, the records the
dashboard reads) and {root}/bin/backup-job.sh, which backup.sh runs in a transient
container of the PostgreSQL image (by id, on the platform network) for everything that
touches data: pg_dump and pg_restore stream through gpg there, so plain data never lands
on the host's disk. The host itself needs only bash, coreutils, flock and Docker.

Every backup is encrypted to the operators' keys (platform.backup.recipients) and to the
host's own drill key, made on the host by the first `pulumi up` (its private half never
leaves {root}/backup/drill-gnupg, and only the containers that decrypt mount it): the drill
and a restore on this host decrypt with it, an operator restores anywhere with theirs. Every
backup is also signed with the host's signing key ({root}/backup/signing, never in a
container or a backup), and nothing restores a backup whose signature does not verify; a
restore runs as the environment's own database role and the media owner's uid.

The off-host copy (platform.backup.off_host) goes to a receiver the operator installs on the
target (templates/backup/receive-backup.sh.j2) and forces for the host's copy key: the host
can add a backup there and never overwrite, read or delete one. docs/runbooks.md has the
trade-offs, what each control does not stop, and the restore commands.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.host.connection import HostFile, HostFileArgs, host_command
from components.host.templates import render
from components.names import database_name, database_role
from components.platform.context import PlatformContext

DRILL_KEY_FILE = "drill.asc"
# Where the operator installs the receiver on the off-host target; the authorized_keys line
# the program prints forces it for the copy key.
RECEIVER_PATH = "/usr/local/sbin/aiia-receive-backup"
# The ssh-keygen -Y namespace of backup signatures: a signature made for anything else (an
# SSH login, a git commit) never passes for a backup's.
SIGNATURE_NAMESPACE = "aiia-backup"


def scratch_database_prefix(prefix: str) -> str:
    """The drill restores environment <env> into <prefix>_drill_<env>."""
    return database_name(prefix, "drill_")


def restore_role(prefix: str) -> str:
    """The throw-away login role a restore connects as: it may only become the environment's
    role. Environment names have no underscore, so no environment's role can be this."""
    return database_name(prefix, "restore_role")


def backup_signer(prefix: str) -> str:
    """The signer's identity in allowed_signers (ssh-keygen -Y verify -I)."""
    return f"backup@{prefix}"


def operator_key_file(fingerprint: str) -> str:
    return f"operator-{fingerprint}.asc"


def render_backup_cron(script: str, log: str, time: str, drill_day: int,
                       drill_time: str) -> str:
    hour, minute = (int(part) for part in time.split(":"))
    drill_hour, drill_minute = (int(part) for part in drill_time.split(":"))
    return render("cron/backup.cron.j2", script=script, log=log, time=time, hour=hour,
                  minute=minute, drill_day=drill_day, drill_time=drill_time,
                  drill_hour=drill_hour, drill_minute=drill_minute)


@dataclass
class BackupArgs:
    context: PlatformContext
    image_id: pulumi.Input[str]  # the PostgreSQL image, by id: pg_dump of the server's major
    postgres_host: pulumi.Input[str]
    network_name: pulumi.Input[str]
    depends_on: list[pulumi.Resource]


class Backup(pulumi.ComponentResource):
    def __init__(self, name: str, args: BackupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:platform:Backup", name, None, opts)
        context = args.context
        platform = context.platform
        backup = platform.backup
        prefix = context.prefix
        child = pulumi.ResourceOptions(parent=self)
        if not backup.keys:
            pulumi.log.warn(
                "aiia:platform.backup.recipients is empty: backups are encrypted to this "
                "host's drill key alone, so they are lost with the host; add your GPG public "
                "key (gpg --armor --export <fingerprint>)", resource=self)
        keys_dir = context.host_path("backup", "keys")
        self.operator_keys = operator_keys = [
            HostFile(f"{name}-key-{key.fingerprint[-16:].lower()}",
                     HostFileArgs(connection=context.connection,
                                  path=f"{keys_dir}/{operator_key_file(key.fingerprint)}",
                                  content=key.armored, mode="0644"),
                     opts=child)
            for key in backup.keys]
        self.drill_key = host_command(
            f"{name}-drill-key", context.connection,
            pulumi.Output.from_input(args.image_id).apply(lambda image: render(
                "backup/drill-key.sh.j2", home=context.host_path("backup", "drill-gnupg"),
                public_key=f"{keys_dir}/{DRILL_KEY_FILE}", image=image, prefix=prefix,
                memory_mb=backup.memory_mb, extra_capabilities=context.root_file_access(),
                user_id=f"{prefix} drill key ({context.root_dir}) <drill@{prefix}.invalid>")),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on))
        self.signing_key = host_command(
            f"{name}-signing-key", context.connection,
            render("backup/signing-key.sh.j2", directory=context.host_path("backup", "signing"),
                   signer=backup_signer(prefix), namespace=SIGNATURE_NAMESPACE),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on))
        # The allowed_signers line the operators keep off the host.
        self.signing_key.stdout.apply(
            lambda out: pulumi.log.info(out.strip(), resource=self) if out else None)
        environments = [{"name": env.name, "database": database_name(prefix, env.name),
                         "role": database_role(prefix, env.name),
                         "app_memory_mb": env.app_memory_mb} for env in platform.environments]
        recipient_files = [DRILL_KEY_FILE] + [operator_key_file(key.fingerprint)
                                              for key in backup.keys]
        scratch_prefix = scratch_database_prefix(prefix)
        scratch_role = f"{scratch_prefix}role"
        self.job_path = context.host_path("bin", "backup-job.sh")
        self.script_path = context.host_path("bin", "backup.sh")
        job = pulumi.Output.from_input(args.postgres_host).apply(lambda host: render(
            "backup/backup-job.sh.j2", root_dir=context.root_dir, postgres_host=host,
            environments=environments, recipient_files=recipient_files,
            scratch_prefix=scratch_prefix, scratch_role=scratch_role,
            restore_role=restore_role(prefix)))
        script = pulumi.Output.all(args.image_id, args.network_name, args.postgres_host).apply(
            lambda values: render(
                "backup/backup.sh.j2", root_dir=context.root_dir, prefix=prefix,
                image=values[0], network=values[1], postgres_host=values[2],
                memory_mb=backup.memory_mb, environments=environments,
                keep_daily=backup.keep_daily, keep_monthly=backup.keep_monthly,
                disk_budget_mb=backup.disk_budget_mb, scratch_prefix=scratch_prefix,
                scratch_role=scratch_role, off_host=backup.off_host,
                signer=backup_signer(prefix), signature_namespace=SIGNATURE_NAMESPACE,
                # A developer's unprivileged local stack: the backup directory is theirs.
                extra_capabilities=context.root_file_access(),
                # The host's journal and audit trail, a VPS's (review H3).
                host_logs=context.settings.host.kind == "ssh"))
        files = [
            HostFile(f"{name}-job", HostFileArgs(connection=context.connection,
                                                 path=self.job_path, content=job, mode="0750"),
                     opts=child),
            HostFile(f"{name}-script", HostFileArgs(connection=context.connection,
                                                    path=self.script_path, content=script,
                                                    mode="0750"),
                     opts=child),
        ]
        # The copy key and the target's host key, which the log shipping sends with too.
        self.off_host_files = self._off_host(name, context) if backup.off_host else []
        files += self.off_host_files
        self.cron = HostFile(
            f"{name}-cron",
            HostFileArgs(connection=context.connection, path=context.cron_file("backup"),
                         content=render_backup_cron(
                             self.script_path, context.host_path("logs", "backup.log"),
                             backup.time, backup.drill_day, backup.drill_time),
                         mode="0644"),
            opts=pulumi.ResourceOptions(parent=self,
                                        depends_on=[self.drill_key, self.signing_key, *files,
                                                    *operator_keys]))
        self.register_outputs({"script_path": self.script_path})

    def _off_host(self, name: str, context: PlatformContext) -> list[pulumi.Resource]:
        """The pinned host key of the off-host target and this host's key to reach it."""
        target = context.platform.backup.off_host
        assert target is not None
        directory = context.host_path("backup", "off-host")
        known_hosts = HostFile(
            f"{name}-off-host-known-hosts",
            HostFileArgs(connection=context.connection, path=f"{directory}/known_hosts",
                         content=render("backup/known_hosts.j2", host=target.host,
                                        port=target.port, host_key=target.host_key.strip()),
                         mode="0600"),
            opts=pulumi.ResourceOptions(parent=self))
        key = host_command(
            f"{name}-off-host-key", context.connection,
            render("backup/off-host-key.sh.j2", directory=directory,
                   target=f"{target.user}@{target.host}", receiver=RECEIVER_PATH,
                   store=target.path, comment=f"{context.prefix} backups ({context.root_dir})"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[known_hosts]))
        # What the operator installs on the target and adds to its authorized_keys.
        key.stdout.apply(lambda out: pulumi.log.info((out or "").strip(), resource=self)
                         if out else None)
        return [known_hosts, key]
