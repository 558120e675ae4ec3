"""A real PgBouncer runs the rendered pgbouncer.ini and userlist.txt in front of PostgreSQL.

The rendered files are used as they are, except for what only holds inside the Docker
network: the PostgreSQL host and port, the listen address and port, and where the userlist
is mounted.
"""

import os
import signal
import subprocess
import threading
from collections.abc import Iterator

import pytest

from components.names import database_name, database_role
from tests.rendered.conftest import (
    SERVICE_USER,
    as_service_user,
    chown_tree,
    free_port,
    replace_exactly,
    running,
    scratch_dir,
    tcp_psql,
)

pytestmark = pytest.mark.rendered


def role_of(rendered, env: str) -> tuple[str, str, str]:
    """(database, role, password) of an environment in the prod stack."""
    prod = rendered["prod"]
    return (database_name(prod.settings.prefix, env), database_role(prod.settings.prefix, env),
            prod.secrets[f"{env}_db_password"])


@pytest.fixture(scope="module")
def pgbouncer(rendered, postgres_databases) -> Iterator[int]:
    """PgBouncer with the rendered files, in front of the rendered PostgreSQL; yields its port."""
    prod = rendered["prod"]
    postgres_host = f"host={prod.settings.prefix}-postgres port=5432"
    with scratch_dir("pgbouncer", owner=SERVICE_USER, mode=0o700) as directory:
        port = free_port()
        userlist = directory / "userlist.txt"
        userlist.write_text(prod.file("pgbouncer", "userlist.txt"))
        ini = prod.file("pgbouncer", "pgbouncer.ini")
        environments = len(prod.settings.platform.environments)
        ini = replace_exactly(ini, postgres_host,
                              f"host=127.0.0.1 port={postgres_databases.port}", environments)
        ini = replace_exactly(ini, "listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
        ini = replace_exactly(ini, "listen_port = 6432", f"listen_port = {port}")
        ini = replace_exactly(ini, "auth_file = /etc/pgbouncer/userlist.txt",
                              f"auth_file = {userlist}")
        (directory / "pgbouncer.ini").write_text(ini)
        for path in (directory, userlist, directory / "pgbouncer.ini"):
            path.chmod(0o700 if path.is_dir() else 0o600)
        chown_tree(directory, SERVICE_USER)
        with running("pgbouncer", as_service_user(["pgbouncer", str(directory / "pgbouncer.ini")]),
                     port=port, log=directory / "pgbouncer.log", stop_signal=signal.SIGINT):
            yield port


class PsqlSession:
    """One client connection kept open across statements (psql reading from a pipe)."""

    MARK = "--end-of-statement--"

    def __init__(self, port: int, user: str, password: str, database: str):
        self.process = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-w",
             f"host=127.0.0.1 port={port} dbname={database} user={user} connect_timeout=5"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PGPASSWORD": password, "PGSSLMODE": "disable"},
        )

    def run(self, sql: str, timeout: float = 10) -> str:
        """The rows `sql` printed (one statement per call)."""
        self.process.stdin.write(f"{sql}\n\\echo {self.MARK}\n")
        self.process.stdin.flush()
        lines: list[str] = []

        def read() -> None:
            for line in self.process.stdout:
                if line.rstrip("\n") == self.MARK:
                    return
                lines.append(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        assert not reader.is_alive(), f"psql gave no answer to {sql!r}: {lines}"
        assert self.process.poll() is None, self.process.stderr.read()
        return "\n".join(lines)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def sessions() -> Iterator[list[PsqlSession]]:
    opened: list[PsqlSession] = []
    yield opened
    for session in opened:
        session.close()


def test_a_query_passes_through_to_postgres_as_the_environment_role(rendered, pgbouncer):
    database, role, password = role_of(rendered, "prod")
    result = tcp_psql(pgbouncer, role, password, database,
                      "SELECT current_user || '@' || current_database() || ' ' || "
                      "(SELECT setting FROM pg_settings WHERE name = 'server_version_num')")
    who, server_version = result.stdout.split()
    assert who == f"{role}@{database}"
    assert server_version.startswith("15")


def test_transaction_pooling_shares_one_server_connection_between_clients(
        rendered, pgbouncer, sessions):
    database, role, password = role_of(rendered, "prod")
    first = PsqlSession(pgbouncer, role, password, database)
    second = PsqlSession(pgbouncer, role, password, database)
    sessions.extend([first, second])

    # Both clients stay connected. Between transactions neither holds a server connection,
    # so both are served by the same PostgreSQL backend, one transaction after the other ...
    first_backend = first.run("SELECT pg_backend_pid();")
    second_backend = second.run("SELECT pg_backend_pid();")
    assert first_backend == second_backend, "each client got a backend of its own: session mode"

    # ... which is why session state leaks from one client to the next in transaction mode
    # (and why the app must not rely on SET, advisory locks or server-side cursors across
    # transactions): a SET by the first client is what the second one then sees.
    first.run("SET statement_timeout = '4321ms';")
    assert second.run("SHOW statement_timeout;") == "4321ms"
    second.run("RESET statement_timeout;")

    # A transaction holds its server connection until it ends: meanwhile the other client
    # is given another backend; after COMMIT the first backend is free again.
    first.run("BEGIN;")
    in_transaction = first.run("SELECT pg_backend_pid();")
    other = second.run("SELECT pg_backend_pid();")
    assert other != in_transaction
    first.run("COMMIT;")


def test_the_staging_role_cannot_use_the_prod_database(rendered, pgbouncer):
    prod_database, _, _ = role_of(rendered, "prod")
    _, staging_role, staging_password = role_of(rendered, "staging")
    refused = tcp_psql(pgbouncer, staging_role, staging_password, prod_database, "SELECT 1",
                       check=False)
    assert refused.returncode != 0, "staging reached the prod database through PgBouncer"
    # PostgreSQL's pg_hba.conf refuses PgBouncer's login as staging's role to prod's database.
    assert "no pg_hba.conf entry" in refused.stderr, refused.stderr

    staging_database = role_of(rendered, "staging")[0]
    own = tcp_psql(pgbouncer, staging_role, staging_password, staging_database,
                   "SELECT current_database()")
    assert own.stdout.strip() == staging_database

    wrong = tcp_psql(pgbouncer, staging_role, "not-the-password", staging_database, "SELECT 1",
                     check=False)
    assert wrong.returncode != 0
    assert "SASL authentication failed" in wrong.stderr  # PgBouncer's own SCRAM check
