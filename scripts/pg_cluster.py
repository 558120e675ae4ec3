"""The PostgreSQL side of a major upgrade (scripts/pg_upgrade.py): the serving cluster, a new
one beside it in the same data volume, and the dump and restore between them, all through
the Docker engine of the stack's host (DOCKER_HOST, as scripts/ops.sh reaches it).

Dump and restore, not pg_upgrade: pg_upgrade needs both majors' binaries in one container,
which no official image has (each `postgres:<major>` image carries its own); a dump read by
the new major's pg_restore needs nothing but the two images the stack runs anyway, and it
rebuilds every index on the new major's own code. It costs the time of a full copy (the
downtime grows with the data: bench/pg_upgrade.py), which for the databases a 512 MB host
serves is minutes at most.

The old cluster is only read: its databases are made read-only for the window (a database
setting, undone on any failure), its folder stays as it was, and the switch to the new one is
the last step.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field

from components.settings.postgres import data_directory

VOLUME_PATH = "/var/lib/postgresql/data"
# Every user table's exact row count, in one query (query_to_xml runs a count per table).
ROW_COUNTS_SQL = """
SELECT format('%I.%I', n.nspname, c.relname),
       (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I',
                                                   n.nspname, c.relname), false, true, '')))[1]
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
ORDER BY 1
"""
# The roles as PostgreSQL authenticates them: attributes and the stored SCRAM verifier, so
# equal rows mean the same passwords log in with the same rights.
ROLES_SQL = """
SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin,
       rolreplication, rolbypassrls, rolconnlimit, coalesce(rolpassword, ''),
       coalesce(rolvaliduntil::text, '')
FROM pg_authid WHERE rolname NOT LIKE 'pg\\_%' ORDER BY rolname
"""
DATABASES_SQL = """
SELECT datname FROM pg_database
WHERE NOT datistemplate AND datallowconn AND datname <> 'postgres' ORDER BY datname
"""
READ_ONLY_SQL = ("SELECT format('ALTER DATABASE %I SET default_transaction_read_only = on', "
                 "name) FROM unnest(:'databases'::text[]) AS name \\gexec")
WRITABLE_SQL = ("SELECT format('ALTER DATABASE %I RESET default_transaction_read_only', name) "
                "FROM unnest(:'databases'::text[]) AS name \\gexec")
# Who owns each database and who may connect, as pg_restore --create carries them over.
DATABASE_RIGHTS_SQL = """
SELECT datname, pg_get_userbyid(datdba), coalesce(datacl::text, '')
FROM pg_database WHERE NOT datistemplate AND datallowconn AND datname <> 'postgres'
ORDER BY datname
"""


class UpgradeError(Exception):
    """An upgrade step that failed, said so that the operator can act on it."""


class Docker:
    """The `docker` CLI against the stack's engine."""

    def __init__(self, docker_host: str | None = None):
        self.env = {**os.environ, **({"DOCKER_HOST": docker_host} if docker_host else {})}

    def run(self, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", *args], input=stdin, capture_output=True,
                                text=True, env=self.env, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise UpgradeError(f"docker {' '.join(args[:3])} … failed: "
                               f"{(result.stderr or result.stdout).strip()[-2000:]}")
        return result

    def pipe(self, source: list[str], sink: list[str]) -> None:
        """`docker <source> | docker <sink>`, streamed; both must succeed."""
        producer = subprocess.Popen(["docker", *source], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=self.env)
        consumer = subprocess.run(["docker", *sink], stdin=producer.stdout,
                                  capture_output=True, env=self.env, check=False)
        producer.stdout.close()
        produced_error = producer.stderr.read().decode(errors="replace")
        if producer.wait() != 0 or consumer.returncode != 0:
            raise UpgradeError(f"docker {' '.join(source[:3])} | docker {' '.join(sink[:3])} "
                               f"failed: {produced_error.strip()[-1000:]} "
                               f"{consumer.stderr.decode(errors='replace').strip()[-1000:]}")


@dataclass
class Cluster:
    """A running PostgreSQL container, reached with `docker exec` on its local socket."""

    docker: Docker
    container: str

    def sql(self, query: str, database: str = "postgres", *, env: dict | None = None) -> str:
        options = [arg for key, value in (env or {}).items() for arg in ("-e", f"{key}={value}")]
        return self.docker.run("exec", "-i", *options, self.container, "psql", "-U", "postgres",
                               "-d", database, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-tA",
                               "-F", "\t", "-f", "-", stdin=query).stdout

    def rows(self, query: str, database: str = "postgres") -> list[tuple[str, ...]]:
        return [tuple(line.split("\t")) for line in self.sql(query, database).splitlines()
                if line]

    def major(self) -> int:
        return int(self.sql("SHOW server_version_num").strip()) // 10000

    def data_directory(self) -> str:
        return self.sql("SHOW data_directory").strip()

    def databases(self) -> list[str]:
        return [row[0] for row in self.rows(DATABASES_SQL)]

    def row_counts(self, databases: list[str]) -> dict[str, int]:
        """{"<database>/<schema>.<table>": rows} of every user table."""
        return {f"{database}/{table}": int(count) for database in databases
                for table, count in self.rows(ROW_COUNTS_SQL, database)}

    def ready(self) -> bool:
        return self.docker.run("exec", self.container, "pg_isready", "-U", "postgres", "-h",
                               "127.0.0.1", check=False).returncode == 0

    def set_read_only(self, databases: list[str], read_only: bool) -> None:
        """Writes refused or allowed again: a database setting, which a session takes when it
        connects, so every other open session of the databases is ended too (PgBouncer's
        next server connection gets the new setting, and none opened before keeps writing,
        or keeps refusing). Reads go on being served."""
        statements = [READ_ONLY_SQL if read_only else WRITABLE_SQL,
                      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                      "WHERE datname = ANY(:'databases'::text[]) AND pid <> pg_backend_pid();"]
        listing = "{" + ",".join(databases) + "}"
        self.docker.run("exec", "-i", self.container, "psql", "-U", "postgres", "-X", "-q",
                        "-v", "ON_ERROR_STOP=1", "-v", f"databases={listing}", "-f", "-",
                        stdin="\n".join(statements) + "\n")


def wait_until(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise UpgradeError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


@dataclass
class NewCluster:
    """The new major's cluster, made by a one-off container of the new image on the stack's
    data volume, in the new major's folder, with the serving container's config, secrets file
    and memory limit; no network (nothing but `docker exec` reaches it)."""

    docker: Docker
    prefix: str
    image: str
    major: int
    container: str = field(init=False)

    def __post_init__(self):
        self.container = f"{self.prefix}-postgres-upgrade"

    @property
    def folder(self) -> str:
        return f"{VOLUME_PATH}/{data_directory(self.major)}"

    def start(self, serving: str) -> Cluster:
        self.remove()
        inspected = json.loads(self.docker.run("inspect", serving).stdout)[0]
        config, host = inspected["Config"], inspected["HostConfig"]
        mounts = [arg for mount in inspected["Mounts"] for arg in (
            "--mount", f"type={mount['Type']},"
            f"source={mount.get('Name') or mount['Source']},target={mount['Destination']}"
            + ("" if mount.get("RW", True) else ",readonly"))]
        env = [arg for line in config["Env"] if line.startswith("POSTGRES_PASSWORD_FILE=")
               for arg in ("-e", line)]
        memory = host.get("Memory") or 0
        limits = ["--memory", str(memory), "--memory-swap", str(memory)] if memory else []
        self.docker.run("run", "-d", "--name", self.container, "--network", "none",
                        "--user", config.get("User") or "999:999", *limits, *mounts, *env,
                        "-e", f"PGDATA={self.folder}",
                        "--tmpfs", "/var/run/postgresql:size=1m,mode=1777",
                        "--tmpfs", "/tmp:size=8m,mode=1777", "--stop-signal", "SIGINT",
                        self.image, *config["Cmd"])
        cluster = Cluster(self.docker, self.container)
        wait_until(lambda: self._running() and cluster.ready() and _serving_major(cluster)
                   == self.major, f"the new PostgreSQL {self.major} cluster's start")
        return cluster

    def _running(self) -> bool:
        state = self.docker.run("inspect", "--format", "{{.State.Running}}", self.container,
                                check=False)
        if state.stdout.strip() == "false":
            logs = self.docker.run("logs", "--tail", "30", self.container, check=False)
            raise UpgradeError("the new cluster's container stopped:\n"
                               f"{logs.stdout}{logs.stderr}")
        return state.returncode == 0

    def stop(self) -> None:
        """A clean shutdown (a checkpoint), so the switch starts it without recovery."""
        self.docker.run("stop", "--time", "120", self.container)
        self.docker.run("rm", self.container)

    def remove(self) -> None:
        self.docker.run("rm", "--force", self.container, check=False)

    def discard(self, volume: str) -> None:
        """The container and the new folder: what a failed attempt left (never the old)."""
        self.remove()
        self.docker.run("run", "--rm", "--network", "none", "--user", "999:999",
                        "--entrypoint", "rm", "-v", f"{volume}:{VOLUME_PATH}", self.image,
                        "-rf", "--", self.folder)


def _serving_major(cluster: Cluster) -> int | None:
    try:
        return cluster.major()
    except UpgradeError:  # the entrypoint's first-start server, or not up yet
        return None


def copy_cluster(old: Cluster, new: Cluster, databases: list[str]) -> None:
    """Roles (with their SCRAM verifiers: the same passwords log in) then each database,
    with its owner, rights and settings (pg_dump --create). Dumped by the old major's
    pg_dump on its own socket; the new major's pg_restore reads that archive format."""
    roles = old.docker.run("exec", old.container, "pg_dumpall", "-U", "postgres",
                           "--roles-only", "--quote-all-identifiers").stdout
    # The new cluster's initdb made its superuser; the dump's CREATE of it would fail (its
    # ALTER ROLE, which carries the password, stays).
    roles = "\n".join(line for line in roles.splitlines()
                      if line.strip() != 'CREATE ROLE "postgres";')
    new.sql(roles)
    for database in databases:
        # The read-only setting of the window comes with the database: this session
        # overrides it, and it is reset once restored.
        old.docker.pipe(
            ["exec", old.container, "pg_dump", "-U", "postgres", "-Fc", "--create", database],
            ["exec", "-i", "-e", "PGOPTIONS=-c default_transaction_read_only=off",
             new.container, "pg_restore", "-U", "postgres", "-d", "postgres", "--create",
             "--exit-on-error"])
    new.set_read_only(databases, read_only=False)
    for database in databases:
        new.sql("ANALYZE", database)  # planner statistics are not in a dump
