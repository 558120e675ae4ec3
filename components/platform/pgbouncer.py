"""PgBouncer in transaction mode in front of PostgreSQL; no host port."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.host.connection import HostFile, HostFileArgs
from components.host.containers import healthcheck, service_container
from components.host.templates import render
from components.platform.context import PlatformContext
from components.platform.postgres import scram_verifier
from components.settings.accounts import data_owner

PGBOUNCER_UID = data_owner("pgbouncer")  # the image's postgres user (Alpine)
PORT = 6432


def userlist_secret(role: str, password: str, stack_salt_hex: str) -> str:
    """What userlist.txt holds for `role`: the SCRAM verifier PostgreSQL stores for it, never
    the password (review L8). PgBouncer checks a client's SCRAM proof against it, and then
    logs in to PostgreSQL with the keys that proof gave it (SCRAM pass-through), which
    PostgreSQL accepts only when its own verifier has the same salt and iterations: so it is
    the very verifier init-databases.sql sets with ALTER ROLE (postgres.scram_verifier).
    A password it cannot compute a verifier for is refused at preview
    (settings/platform.py), so this never falls back to the plain text."""
    verifier = scram_verifier(role, password, stack_salt_hex)
    if not verifier.startswith("SCRAM-SHA-256$"):
        raise ValueError(f"no SCRAM verifier for {role}'s password: it must be printable ASCII")
    return verifier


@dataclass
class PgBouncerArgs:
    context: PlatformContext
    image_id: pulumi.Input[str]
    postgres_host: str
    databases: list[dict]
    # The stack's SCRAM salt (Postgres.password_salt): the userlist's verifiers are
    # PostgreSQL's own, salt and all, or SCRAM pass-through fails.
    password_salt: pulumi.Input[str]
    depends_on: list[pulumi.Resource]
    # Each environment's network: {"name": …, "subnet": …} (Docker's choice unless set).
    environment_networks: dict[str, dict[str, pulumi.Input[str]]]


class PgBouncer(pulumi.ComponentResource):
    def __init__(self, name: str, args: PgBouncerArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:platform:PgBouncer", name, None, opts)
        context = args.context
        settings = context.platform.pgbouncer
        self.container_name = context.container_name("pgbouncer")
        self.port = PORT
        user = context.container_user(PGBOUNCER_UID)
        # RELOAD re-reads both files without dropping client connections.
        reload = f"docker kill --signal HUP {self.container_name} >/dev/null 2>&1 || true"
        # Each environment's role from its own network (review M7): a release of another
        # environment cannot log in as it, whatever it knows.
        networks = args.environment_networks
        client_rules = HostFile(
            f"{name}-client-rules",
            HostFileArgs(
                connection=context.connection,
                path=context.host_path("pgbouncer", "pg_hba.conf"),
                content=pulumi.Output.from_input(networks).apply(lambda resolved: render(
                    "pgbouncer/pg_hba.conf.j2", data_subnet=context.platform.network_subnet,
                    databases=[{**db, "network": resolved[db["environment"]]["name"],
                                "subnet": resolved[db["environment"]]["subnet"]}
                               for db in args.databases])),
                mode="0600", owner=user, on_change=reload,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        ini = HostFile(
            f"{name}-ini",
            HostFileArgs(
                connection=context.connection,
                path=context.host_path("pgbouncer", "pgbouncer.ini"),
                content=render(
                    "pgbouncer/pgbouncer.ini.j2",
                    databases=args.databases,
                    environments=context.platform.environments,
                    postgres_host=args.postgres_host,
                    max_client_conn=settings.max_client_conn,
                    default_pool_size=settings.default_pool_size,
                ),
                mode="0600", owner=user, on_change=reload,
            ),
            # The rules it names are in place before it does (auth_hba_file).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[client_rules]),
        )
        passwords = context.platform.database_passwords
        userlist_content = pulumi.Output.all(
            args.password_salt, *[passwords[db["environment"]] for db in args.databases]
        ).apply(lambda values: render(
            "pgbouncer/userlist.txt.j2",
            databases=[{**db, "secret": userlist_secret(db["role"], value, values[0])}
                       for db, value in zip(args.databases, values[1:], strict=True)],
        ))
        userlist = HostFile(
            f"{name}-userlist",
            HostFileArgs(
                connection=context.connection,
                path=context.host_path("pgbouncer", "userlist.txt"),
                content=pulumi.Output.secret(userlist_content),
                mode="0600", owner=user, on_change=reload,
            ),
            # After PostgreSQL has the roles' new verifiers: SCRAM pass-through needs the
            # same ones on both sides, so a rotation's window is the reload's alone.
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )
        self.container = service_container(
            f"{name}-container",
            context.service_args(
                image=args.image_id,
                service="pgbouncer",
                memory_mb=settings.memory_mb,
                user=user,
                command=["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"],
                healthcheck=healthcheck(["CMD", "pg_isready", "-h", "127.0.0.1", "-p", str(PORT)]),
                volumes=[docker.ContainerVolumeArgs(host_path=context.host_path("pgbouncer"),
                                                    container_path="/etc/pgbouncer",
                                                    read_only=True)],
                # SIGINT: safe shutdown, waits for transactions in flight to finish.
                stop_signal="SIGINT",
                stop_grace_seconds=30,
                read_only=True,
                tmpfs={"/tmp": "size=1m,mode=1777"},
            ),
            context.child(self, depends_on=[ini, client_rules, userlist, *args.depends_on]),
        )
        self.register_outputs({"container_name": self.container_name})
