"""PostgreSQL: one instance, one database and role per environment, tuned for 512 MB."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

import pulumi
import pulumi_command
import pulumi_docker as docker

from components.host.connection import HostFile, HostFileArgs, host_command
from components.host.containers import healthcheck, service_container
from components.host.templates import render
from components.names import database_name, database_role
from components.platform.backup import restore_role, scratch_database_prefix
from components.platform.context import RANDOM_SALT_COMMAND, PlatformContext
from components.platform.pitr import ARCHIVE_MOUNT, archive_command, archive_script
from components.settings.accounts import data_owner
from components.settings.postgres import LEGACY_DATA_MAJOR, data_directory

CONFIG_DIR_IN_CONTAINER = "/etc/postgresql/aiia"
POSTGRES_UID = data_owner("postgres")
POSTGRES_PORT = 5432  # postgresql.conf.j2's, on the data network
DATA_VOLUME_PATH = "/var/lib/postgresql/data"  # the image's VOLUME; PGDATA is a folder in it
SCRAM_ITERATIONS = 4096  # PostgreSQL's scram_iterations default


def role_salt(stack_salt_hex: str, role: str) -> bytes:
    """A role's SCRAM salt: the stack's random salt keyed with the role's name, so two roles
    and two installations never share one (a salt known in advance, as one derived from the
    role's name alone was, lets guesses be computed before a verifier leaks)."""
    stack_salt = bytes.fromhex(stack_salt_hex.strip())
    if len(stack_salt) < 16:
        raise ValueError(f"the roles' password salt is {len(stack_salt)} bytes, not 16")
    return hmac.new(stack_salt, f"aiia-scram:{role}".encode(), hashlib.sha256).digest()[:16]


def scram_verifier(role: str, password: str, stack_salt_hex: str) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677).

    `ALTER ROLE … PASSWORD '<verifier>'` then never carries the password itself, so a
    failing statement that PostgreSQL logs does not reveal it. The salt (role_salt) is
    random per stack and kept in its state, so the same password renders the same script
    (and the preview shows no change).
    PostgreSQL SASLprep-normalises a password before hashing it; for printable ASCII
    (generated passwords) that is the identity, so anything else is sent as it is and
    PostgreSQL hashes it itself.
    """
    if not (password.isascii() and password.isprintable()):
        return password
    salt = role_salt(stack_salt_hex, role)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return (f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}$"
            f"{b64(stored_key)}:{b64(server_key)}")


@dataclass
class PostgresArgs:
    context: PlatformContext
    data_volume: docker.Volume
    image_id: pulumi.Input[str]


class Postgres(pulumi.ComponentResource):
    def __init__(self, name: str, args: PostgresArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:platform:Postgres", name, None, opts)
        context = args.context
        settings = context.platform.postgres
        self.container_name = context.container_name("postgres")
        # The cluster's folder in the volume follows its major, so an upgrade builds the new
        # one beside the old (scripts/pg_upgrade.py) and switching is a change of PGDATA.
        major = settings.data_major or LEGACY_DATA_MAJOR
        self.data_directory = f"{DATA_VOLUME_PATH}/{data_directory(major)}"
        data_major_checked = self._check_data_major(name, context, args, major)
        pitr = context.platform.backup.pitr
        archiving = [archive_script(name, context, self)] if pitr.enabled else []
        config = HostFile(
            f"{name}-config",
            HostFileArgs(
                connection=context.connection,
                path=context.host_path("postgres", "postgresql.conf"),
                content=render(
                    "postgres/postgresql.conf.j2",
                    host_memory_mb=context.settings.host.memory_mb,
                    memory_mb=settings.memory_mb,
                    max_connections=settings.max_connections,
                    shared_buffers_mb=settings.shared_buffers_mb,
                    effective_cache_size_mb=settings.effective_cache_size_mb,
                    work_mem_mb=settings.work_mem_mb,
                    maintenance_work_mem_mb=settings.maintenance_work_mem_mb,
                    hba_file=f"{CONFIG_DIR_IN_CONTAINER}/pg_hba.conf",
                    archive_command=archive_command(major) if pitr.enabled else "",
                    archive_timeout=pitr.archive_timeout_seconds,
                ),
                mode="0644",
                # Parameters that need a restart are listed by pg_settings.pending_restart.
                on_change=f"docker exec {self.container_name} psql -U postgres -qc "
                "'SELECT pg_reload_conf()' || true",
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        databases = [
            {"name": database_name(context.prefix, env.name),
             "role": database_role(context.prefix, env.name), "environment": env.name}
            for env in context.platform.environments
        ]
        self.databases = databases
        hba = self._client_rules(name, context, databases)
        # The superuser's password reaches the image's entrypoint as a file (it reads
        # POSTGRES_PASSWORD_FILE on first start), not as a variable `docker inspect` shows.
        # Readable by the server's uid alone; on a developer's unprivileged local stack the
        # file is the developer's and cannot be handed to 999, so it is world-readable there.
        password_file = HostFile(
            f"{name}-superuser-password",
            HostFileArgs(
                connection=context.connection,
                path=context.host_path("postgres", "superuser-password"),
                content=pulumi.Output.secret(context.platform.postgres_password),
                mode="0444" if context.unprivileged_local() else "0400",
                owner=POSTGRES_UID,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.container = service_container(
            f"{name}-container",
            context.service_args(
                image=args.image_id,
                service="postgres",
                memory_mb=settings.memory_mb,
                # As the image's postgres user from the start, so its entrypoint needs no
                # capability to chown and switch users (its data volume belongs to 999;
                # the image supports any uid that owns PGDATA).
                user=POSTGRES_UID,
                command=["postgres", "-c",
                         f"config_file={CONFIG_DIR_IN_CONTAINER}/postgresql.conf"],
                envs=[f"POSTGRES_PASSWORD_FILE={CONFIG_DIR_IN_CONTAINER}/superuser-password",
                      f"PGDATA={self.data_directory}"],
                healthcheck=healthcheck(["CMD", "pg_isready", "-U", "postgres", "-h", "127.0.0.1"],
                                        start_period="1m0s"),
                volumes=[
                    docker.ContainerVolumeArgs(volume_name=args.data_volume.name,
                                               container_path=DATA_VOLUME_PATH),
                    docker.ContainerVolumeArgs(host_path=context.host_path("postgres"),
                                               container_path=CONFIG_DIR_IN_CONTAINER,
                                               read_only=True),
                    # The WAL archive (pitr.py): its own directory, the server's to write.
                    *([docker.ContainerVolumeArgs(host_path=context.host_path("pitr", "wal"),
                                                  container_path=ARCHIVE_MOUNT)]
                      if pitr.enabled else []),
                ],
                # Read-only: it writes PGDATA (its volume), its socket and lock file, and
                # temporary files of the entrypoint's first-start server.
                read_only=True,
                tmpfs={"/var/run/postgresql": "size=1m,mode=1777", "/tmp": "size=8m,mode=1777"},
                # Fast shutdown: roll back open transactions, checkpoint, exit cleanly.
                stop_signal="SIGINT",
                stop_grace_seconds=60,
            ),
            context.child(self, depends_on=[config, hba, password_file, data_major_checked,
                                             *archiving]),
        )
        # The stack's salt for every role's verifier (role_salt). Kept in the state from
        # the first run on: a change of the command draws a new one,
        # and every role's verifier is set again with it, as a password rotation does.
        self.password_salt = pulumi_command.local.Command(
            f"{name}-password-salt", create=RANDOM_SALT_COMMAND,
            opts=pulumi.ResourceOptions(parent=self)).stdout
        passwords = context.platform.database_passwords
        init_sql = pulumi.Output.all(self.password_salt,
                                     *[passwords[db["environment"]] for db in databases]).apply(
            lambda values: render(
                "postgres/init-databases.sql.j2",
                databases=[{**db, "password": scram_verifier(db["role"], value, values[0])}
                           for db, value in zip(databases, values[1:], strict=True)],
            )
        )
        # Idempotent, so it runs again on any change (a new environment, a new password).
        self.init_databases = host_command(
            f"{name}-init-databases",
            context.connection,
            f"docker exec -i {self.container_name} psql -U postgres -v ON_ERROR_STOP=1 -q -f -",
            stdin=pulumi.Output.secret(init_sql),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.container]),
        )
        self.register_outputs({"container_name": self.container_name})

    def _check_data_major(self, name: str, context: PlatformContext, args: PostgresArgs,
                          major: int) -> pulumi.CustomResource:
        """A step before the server is created or replaced: the volume holds no cluster of
        another major (templates/postgres/check-data-major.sh.j2). It runs again whenever
        the image or the major changes, so a failure leaves the serving container alone."""
        inside = render("postgres/check-data-major-inside.sh.j2", mount=DATA_VOLUME_PATH,
                        data_directory=data_directory(major), major=major,
                        stack=context.settings.stack,
                        volume=f"{context.prefix}-postgres-data")
        script = pulumi.Output.all(args.image_id, args.data_volume.name).apply(
            lambda values: render("postgres/check-data-major.sh.j2", image=values[0],
                                  volume=values[1], mount=DATA_VOLUME_PATH, uid=POSTGRES_UID,
                                  inside=inside).strip())
        return host_command(f"{name}-data-major", context.connection, script,
                            opts=pulumi.ResourceOptions(parent=self,
                                                        depends_on=[args.data_volume]))

    def _client_rules(self, name: str, context: PlatformContext,
                      databases: list[dict]) -> HostFile:
        """pg_hba.conf: each environment's role to its own database and the superuser, from
        the data network alone (review M7). A change is reloaded, never a restart."""
        scratch = scratch_database_prefix(context.prefix)
        return HostFile(
            f"{name}-client-rules",
            HostFileArgs(
                connection=context.connection,
                path=context.host_path("postgres", "pg_hba.conf"),
                content=render("postgres/pg_hba.conf.j2",
                               data_subnet=context.platform.network_subnet,
                               databases=databases,
                               drill_databases=[f"{scratch}{db['environment']}"
                                                for db in databases],
                               drill_role=f"{scratch}role",
                               restore_role=restore_role(context.prefix),
                               replication=context.platform.backup.pitr.enabled),
                mode="0644",
                on_change=render(
                    "postgres/apply-hba.sh.j2", container=self.container_name,
                    inside=render("postgres/apply-hba-inside.sh.j2",
                                  mounted=f"{CONFIG_DIR_IN_CONTAINER}/pg_hba.conf")).strip(),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
