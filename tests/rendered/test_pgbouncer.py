"""A real PgBouncer runs the rendered pgbouncer.ini and userlist.txt in front of PostgreSQL.

The rendered files are used as they are, except for what only holds inside the Docker
network: the PostgreSQL host and port, the listen address and port, and where the userlist
is mounted.
"""

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from components.names import database_name, database_role
from tests.rendered.conftest import (
    DATA_NETWORK_HERE,
    SERVICE_USER,
    as_service_user,
    chown_tree,
    free_port,
    replace_exactly,
    running,
    scratch_dir,
    startup,
    tcp_psql,
)

pytestmark = pytest.mark.rendered


def role_of(rendered, env: str) -> tuple[str, str, str]:
    """(database, role, password) of an environment in the prod stack."""
    prod = rendered["prod"]
    return (database_name(prod.settings.prefix, env), database_role(prod.settings.prefix, env),
            prod.secrets[f"{env}_db_password"])


# Where each network stands on this machine: loopback addresses (a client picks its own).
ENVIRONMENT_NETWORKS_HERE = {"prod": "127.0.0.3", "staging": "127.0.0.4"}
ELSEWHERE = "127.0.0.5"


def pgbouncer_hba_here(prod) -> str:
    """The rendered pg_hba.conf of PgBouncer with its networks made loopback addresses: the
    data network 127.0.0.1 (where the other tests connect from), each environment's its own."""
    hba = prod.file("pgbouncer", "pg_hba.conf")
    subnets = {"data": prod.settings.platform.network_subnet}
    for line in hba.splitlines():
        if line.startswith("host") and line.split()[3] != subnets["data"]:
            environment = line.split()[1].removeprefix(f"{prod.settings.prefix}_")
            subnets[environment] = line.split()[3]
    assert set(subnets) == {"data", *ENVIRONMENT_NETWORKS_HERE}, subnets
    for network, subnet in subnets.items():
        here = DATA_NETWORK_HERE if network == "data" else \
            f"{ENVIRONMENT_NETWORKS_HERE[network]}/32"
        hba = replace_exactly(hba, f" {subnet} ", f" {here} ", hba.count(f" {subnet} "))
    return hba


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
        hba = directory / "pg_hba.conf"
        ini = replace_exactly(ini, "auth_hba_file = /etc/pgbouncer/pg_hba.conf",
                              f"auth_hba_file = {hba}")
        hba.write_text(pgbouncer_hba_here(prod))
        (directory / "pgbouncer.ini").write_text(ini)
        for path in (directory, userlist, hba, directory / "pgbouncer.ini"):
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


def test_the_userlist_holds_no_password_and_a_new_server_login_uses_the_clients_keys(
        rendered, pgbouncer, postgres_databases):
    """Review L8: userlist.txt holds each role's SCRAM verifier, never its password, and
    PgBouncer still logs in to PostgreSQL: with the keys the client's SCRAM proof gave it,
    which PostgreSQL takes because its verifier is the same one (same salt and iterations).
    Every backend of the role is ended first, so the query needs a new server login."""
    database, role, password = role_of(rendered, "prod")
    userlist = rendered["prod"].file("pgbouncer", "userlist.txt")
    assert password not in userlist
    assert role == "aiia_prod"  # a plain name in the SQL below
    stored = postgres_databases.psql(
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'aiia_prod'").stdout.strip()
    assert f'"{role}" "{stored}"' in userlist.splitlines()
    pooled = int(tcp_psql(pgbouncer, role, password, database, "SELECT pg_backend_pid()").stdout)
    # OFFSET 0: the role's backends listed first (the filter is not mixed with the call).
    ended = {int(pid) for pid in postgres_databases.psql(
        "SELECT pid FROM (SELECT pid FROM pg_stat_activity WHERE usename = 'aiia_prod' "
        "OFFSET 0) AS role_backends WHERE pg_terminate_backend(pid)").stdout.split()}
    deadline = time.monotonic() + 10
    while True:  # a pooled connection PostgreSQL ended fails the one query that finds it
        answer = tcp_psql(pgbouncer, role, password, database, "SELECT pg_backend_pid()",
                          check=False)
        if answer.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.returncode == 0, answer.stderr
    assert pooled in ended and int(answer.stdout) not in ended
    # A wrong password is refused by PgBouncer's own check against the verifier.
    wrong = tcp_psql(pgbouncer, role, password + "x", database, "SELECT 1", check=False)
    assert "SASL authentication failed" in wrong.stderr, wrong.stderr


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
    # PgBouncer's pg_hba.conf has no line for it (PostgreSQL's would refuse it next:
    # test_postgres.py).
    assert "login rejected" in refused.stderr, refused.stderr

    staging_database = role_of(rendered, "staging")[0]
    own = tcp_psql(pgbouncer, staging_role, staging_password, staging_database,
                   "SELECT current_database()")
    assert own.stdout.strip() == staging_database

    wrong = tcp_psql(pgbouncer, staging_role, "not-the-password", staging_database, "SELECT 1",
                     check=False)
    assert wrong.returncode != 0
    assert "SASL authentication failed" in wrong.stderr  # PgBouncer's own SCRAM check


def test_each_role_logs_in_only_from_its_own_network(rendered, pgbouncer):
    """Review M7: PgBouncer admits an environment's role from that environment's network
    (and the data network), never from another environment's, whatever the client knows."""
    prefix = rendered["prod"].settings.prefix
    answers = {
        (network, environment): startup(pgbouncer, source, database_name(prefix, environment),
                                        database_name(prefix, environment))
        for network, source in {**ENVIRONMENT_NETWORKS_HERE, "elsewhere": ELSEWHERE}.items()
        for environment in ENVIRONMENT_NETWORKS_HERE}
    allowed = {key for key, answer in answers.items() if answer == "password"}
    assert allowed == {("prod", "prod"), ("staging", "staging")}, answers
    # And all the way, with the password, from its own network only.
    database, role, password = role_of(rendered, "staging")
    assert startup(pgbouncer, DATA_NETWORK_HERE.split("/")[0], role, database) == "password"


def test_a_running_pgbouncer_takes_the_rules_by_a_reload(rendered, postgres_databases):
    """An existing stack's PgBouncer ran with auth_type = scram-sha-256 and no rules: the
    program's new files take effect by its reload (SIGHUP, as the install's follow-up sends),
    with no restart and no client cut."""
    prod = rendered["prod"]
    with scratch_dir("pgbouncer-reload", owner=SERVICE_USER, mode=0o700) as directory:
        port = free_port()
        userlist, hba, ini_path = (directory / name for name in
                                   ("userlist.txt", "pg_hba.conf", "pgbouncer.ini"))
        userlist.write_text(prod.file("pgbouncer", "userlist.txt"))
        ini = prod.file("pgbouncer", "pgbouncer.ini")
        ini = replace_exactly(ini, f"host={prod.settings.prefix}-postgres port=5432",
                              f"host=127.0.0.1 port={postgres_databases.port}",
                              len(prod.settings.platform.environments))
        ini = replace_exactly(ini, "listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
        ini = replace_exactly(ini, "listen_port = 6432", f"listen_port = {port}")
        ini = replace_exactly(ini, "auth_file = /etc/pgbouncer/userlist.txt",
                              f"auth_file = {userlist}")
        ini = replace_exactly(ini, "auth_hba_file = /etc/pgbouncer/pg_hba.conf",
                              f"auth_hba_file = {hba}")
        before = replace_exactly(ini, "auth_type = hba", "auth_type = scram-sha-256")
        ini_path.write_text(before)
        hba.write_text(pgbouncer_hba_here(prod))
        for path in (userlist, hba, ini_path):
            path.chmod(0o600)
        chown_tree(directory, SERVICE_USER)
        database, role, password = role_of(rendered, "prod")
        with running("pgbouncer", as_service_user(["pgbouncer", str(ini_path)]), port=port,
                     log=directory / "pgbouncer.log", stop_signal=signal.SIGINT) as server:
            assert startup(port, ELSEWHERE, role, database) == "password"  # no rules yet
            session = PsqlSession(port, role, password, database)
            try:
                assert session.run("SELECT 1;") == "1"
                ini_path.write_text(ini)
                server.process.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 10
                while startup(port, ELSEWHERE, role, database) == "password":
                    assert time.monotonic() < deadline, server.log_tail()
                    time.sleep(0.2)
                assert startup(port, ENVIRONMENT_NETWORKS_HERE["prod"], role, database) \
                    == "password"
                assert session.run("SELECT 2;") == "2"  # the client connected before stays
                assert server.process.poll() is None
            finally:
                session.close()
