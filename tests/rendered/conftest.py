"""Shared fixtures for tests/rendered: the files the program renders, run by the real programs.

The program runs under Pulumi's mocks (tests/harness/program.py) and the files it would place
on the host are written into scratch directories under /tmp, never onto /srv or the local
stack's root. Every server is started on 127.0.0.1 on a free port, in a scratch directory of
its own, and is stopped (and its directory removed) when its fixture ends, also when a test
fails. PostgreSQL and PgBouncer refuse to run as root: when the suite runs as root (the CI
case) they run as the `postgres` system user that Debian's postgresql package creates.
"""

from __future__ import annotations

import contextlib
import copy
import os
import pwd
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.settings import Settings, parse_settings
from tests.harness.program import (
    ProgramRun,
    host_files,
    host_scripts,
    made_up_secrets,
    run_program,
    stack_config,
)

STACKS = ("prod", "local")
IS_ROOT = os.geteuid() == 0
# The user the database servers run as: PostgreSQL and PgBouncer refuse root.
SERVICE_USER = "postgres" if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


# --- the program's rendered output -----------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """What one stack's program declares: files (host path → content) and host scripts."""

    stack: str
    run: ProgramRun
    settings: Settings
    files: Mapping[str, str]
    scripts: Mapping[str, str]
    secrets: Mapping[str, str]  # the made-up secrets it ran with, e.g. "prod_db_password"

    @property
    def root_dir(self) -> str:
        return self.settings.host.root_dir

    def file(self, *relative: str) -> str:
        """The content of `{root_dir}/<relative>`."""
        return self.files["/".join([self.root_dir, *relative])]

    def script(self, name: str) -> str:
        """A host script's command as bash runs it (a sudo wrapper for SSH hosts and the
        host's lease taken off)."""
        return without_lease(unwrap_sudo(self.scripts[name]))

    def command_stdin(self, name: str) -> str:
        return self.run.named(name).plain["stdin"]


def local_run_rooted_at(root: Path) -> ProgramRun:
    """The `local` stack's program with its host root at `root` (a scratch directory), so
    scripts it renders can be run for real without touching a real stack's files."""
    config = copy.deepcopy(stack_config("local"))
    config["aiia:host"]["root_dir"] = str(root)
    return run_program("local", config=config)


# Around the command a host script runs once its stack holds the host
# (templates/host/host-lease.sh.j2; the lease itself is tested in test_host_lease.py).
LEASE_OPENING = "# (bash keeps its own copy of them for the group, closed on exec, so the lease " \
    "stays held).\n{\n"
LEASE_CLOSING = "\n} 7>&- 8>&-\n"


def without_lease(script: str) -> str:
    """The command a host script runs under the host's lease, so that a test runs it here
    without taking the lease of the stack's host root (/srv/aiia for prod) on this machine."""
    if LEASE_OPENING not in script:
        return script
    body = script.split(LEASE_OPENING, 1)[1]
    assert body.endswith(LEASE_CLOSING), body[-80:]
    return "#!/usr/bin/env bash\n" + body[:-len(LEASE_CLOSING)] + "\n"


def unwrap_sudo(script: str) -> str:
    """`sudo -n bash -c '<script>'` (how an SSH host runs a script as root) → `<script>`."""
    if script.startswith("sudo -n bash -c "):
        words = shlex.split(script)
        assert len(words) == 5, f"unexpected sudo wrapper: {script[:80]}"
        return words[4]
    return script


def stack_secrets(stack: str) -> dict[str, str]:
    """The made-up secrets the harness runs a stack with, without the `aiia:` namespace."""
    return {key.split(":", 1)[1]: value
            for key, value in made_up_secrets(stack_config(stack)).items()}


def stack_settings(stack: str) -> Settings:
    """The stack's validated settings, as the program itself computes them."""
    raw = {key.split(":", 1)[1]: value for key, value in stack_config(stack).items()}
    return parse_settings(stack, raw, stack_secrets(stack).get)


@pytest.fixture(scope="session")
def rendered() -> dict[str, Rendered]:
    """The program run under mocks once per stack: {stack: Rendered}."""
    result = {}
    for stack in STACKS:
        run = run_program(stack)
        result[stack] = Rendered(stack=stack, run=run, settings=stack_settings(stack),
                                 files=host_files(run), scripts=host_scripts(run),
                                 secrets=stack_secrets(stack))
    return result


# --- scratch directories and rewritten copies ------------------------------------------------


@contextlib.contextmanager
def scratch_dir(purpose: str, owner: str | None = None, mode: int = 0o755) -> Iterator[Path]:
    """A fresh directory under /tmp, owned by `owner` (when root), removed afterwards.

    Not pytest's tmp_path: its parents are private to root, so a server running as another
    user (PostgreSQL, nginx workers) could not reach its files.
    """
    path = Path(tempfile.mkdtemp(prefix=f"aiia-rendered-{purpose}-", dir="/tmp"))
    try:
        path.chmod(mode)
        if owner and IS_ROOT:
            shutil.chown(path, owner, owner)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def chown_tree(path: Path, owner: str) -> None:
    """Give `path` and everything below it to `owner` (only meaningful as root)."""
    if not IS_ROOT:
        return
    shutil.chown(path, owner, owner)
    for item in path.rglob("*"):
        shutil.chown(item, owner, owner)


def replace_exactly(text: str, old: str, new: str, count: int = 1) -> str:
    """`text` with `old` replaced by `new`, failing loudly if the template changed under us."""
    found = text.count(old)
    assert found == count, f"expected {count} × {old!r} in the rendered file, found {found}"
    return text.replace(old, new)


def write_tree(files: Mapping[str, str], source_root: str, destination: Path,
               rewrite: Callable[[str, str], str] | None = None,
               modes: Mapping[str, int] | None = None) -> dict[str, Path]:
    """Write the files under `source_root` to the same relative paths under `destination`.

    `rewrite(relative_path, content)` returns the test copy's content. Returns
    {relative path: written path}.
    """
    written = {}
    prefix = source_root.rstrip("/") + "/"
    for path, content in files.items():
        if not path.startswith(prefix):
            continue
        relative = path[len(prefix):]
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rewrite(relative, content) if rewrite else content)
        target.chmod((modes or {}).get(relative, 0o644))
        written[relative] = target
    return written


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def as_service_user(command: list[str]) -> list[str]:
    """`command` run as SERVICE_USER: setpriv execs in place, so signals reach the server."""
    if not IS_ROOT:
        return command
    return ["setpriv", f"--reuid={SERVICE_USER}", f"--regid={SERVICE_USER}", "--init-groups",
            "--", *command]


def run(command: list[str], *, check: bool = True, input: str | None = None,
        env: Mapping[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command to completion; on an unexpected exit, fail with its output."""
    result = subprocess.run(command, input=input, capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"{shlex.join(command)} exited {result.returncode}\n"
                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _stop(process: subprocess.Popen, stop_signal: int, timeout: float) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(stop_signal)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The whole process group: a server's own children (workers, backends) too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def running(name: str, command: list[str], *, port: int, log: Path,
            ready: Callable[[], bool] | None = None, stop_signal: int = signal.SIGTERM,
            env: Mapping[str, str] | None = None, timeout: float = 20) -> Iterator[Server]:
    """Start a server in the foreground, wait until it is ready, stop it when the block ends.

    Ready means: `ready()` is true, or by default a TCP connection to 127.0.0.1:`port` is
    accepted. A server that exits or is not ready within `timeout` fails the test with its log.
    """
    with log.open("ab") as log_handle:
        process = subprocess.Popen(command, stdout=log_handle, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, **(env or {})})
        server = Server(name=name, process=process, port=port, log=log)
        try:
            deadline = time.monotonic() + timeout
            while not (ready() if ready else port_open(port)):
                if process.poll() is not None:
                    pytest.fail(f"{name} exited {process.returncode} before it was ready:\n"
                                f"{server.log_tail()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} not ready after {timeout}s:\n{server.log_tail()}")
                time.sleep(0.05)
            yield server
        finally:
            _stop(process, stop_signal, timeout=15)


# --- PostgreSQL, shared by the PostgreSQL and the PgBouncer tests ----------------------------


# Only what cannot hold on a test machine is overridden, on the command line (hba_file: the
# rendered pg_hba.conf, copied beside the config with the data network made loopback's).
OVERRIDDEN_ON_COMMAND_LINE = ("port", "listen_addresses", "unix_socket_directories", "hba_file")
# What stands for the data network (where PgBouncer and the backup jobs connect from) in the
# rendered pg_hba.conf: this machine's loopback address, which the other tests connect from.
DATA_NETWORK_HERE = "127.0.0.1/32"


def rendered_hba(rendered: Mapping[str, Rendered]) -> str:
    """prod's pg_hba.conf with its data network replaced by DATA_NETWORK_HERE."""
    prod = rendered["prod"]
    subnet = prod.settings.platform.network_subnet
    hba = prod.file("postgres", "pg_hba.conf")
    return replace_exactly(hba, f" {subnet} ", f" {DATA_NETWORK_HERE} ", hba.count(f" {subnet} "))


@dataclass
class PostgresServer:
    """A real PostgreSQL 15 started with the rendered postgresql.conf (prod stack)."""

    server: Server
    port: int
    socket_dir: Path
    config_file: Path

    def psql(self, sql: str, *, database: str = "postgres", check: bool = True,
             extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """psql as the superuser over the Unix socket (trust: pg_hba.conf's `local` line)."""
        return run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                    "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
                    "-d", database, *extra, "-c", sql], check=check)

    def run_file(self, sql: str) -> subprocess.CompletedProcess:
        """Feed a SQL script on standard input, as the program's init command does."""
        return run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
                    "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-f", "-"],
                   input=sql, check=False)


def tcp_psql(port: int, user: str, password: str, database: str, sql: str,
             check: bool = True) -> subprocess.CompletedProcess:
    """psql as an application role over TCP with its password (no .pgpass, no socket)."""
    return run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-w",
                f"host=127.0.0.1 port={port} dbname={database} user={user} "
                "connect_timeout=5", "-c", sql],
               env={"PGPASSWORD": password, "PGSSLMODE": "disable"}, check=check)


def startup(port: int, source: str, user: str, database: str) -> str:
    """What PostgreSQL (or PgBouncer) on 127.0.0.1:`port` answers a client at `source` (a
    loopback address of this machine) asking for `user`@`database`: "password" when it asks
    for one (its pg_hba.conf let the client through to authentication), else its error
    message. libpq cannot choose its source address, so this speaks the start of protocol 3
    itself."""
    body = b"".join(f"{key}\0{value}\0".encode() for key, value in
                    (("user", user), ("database", database))) + b"\0"
    packet = struct.pack("!ii", len(body) + 8, 196608) + body  # protocol 3.0
    with socket.socket() as client:
        client.settimeout(5)
        client.bind((source, 0))
        client.connect(("127.0.0.1", port))
        client.sendall(packet)
        kind = client.recv(1)
        length = struct.unpack("!i", client.recv(4))[0]
        payload = b""
        while len(payload) < length - 4:
            payload += client.recv(length - 4 - len(payload))
    if kind == b"R":
        return "password"
    fields = dict((part[:1], part[1:].decode()) for part in payload.split(b"\0") if part)
    return fields[b"M"]


@pytest.fixture(scope="session")
def postgres(rendered) -> Iterator[PostgresServer]:
    """initdb in a scratch directory, then `postgres -c config_file=<rendered copy>`."""
    prod = rendered["prod"]
    with scratch_dir("postgres", owner=SERVICE_USER, mode=0o700) as directory:
        data = directory / "data"
        sockets = directory / "sockets"
        sockets.mkdir()
        config_file = directory / "postgresql.conf"
        config_file.write_text(prod.file("postgres", "postgresql.conf"))
        hba_file = directory / "pg_hba.conf"
        hba_file.write_text(rendered_hba(rendered))
        chown_tree(directory, SERVICE_USER)
        # As the official image's initdb does: trust on the socket, SCRAM over TCP.
        run(as_service_user([str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                             "--auth-local=trust", "--auth-host=scram-sha-256",
                             "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]), timeout=60)
        port = free_port()

        def accepting() -> bool:
            return run(["pg_isready", "-q", "-h", str(sockets), "-p", str(port)],
                       check=False).returncode == 0

        overrides = {"port": port, "listen_addresses": "127.0.0.1",
                     "unix_socket_directories": sockets, "hba_file": hba_file}
        assert set(overrides) == set(OVERRIDDEN_ON_COMMAND_LINE)
        command = as_service_user([
            str(POSTGRES_BIN / "postgres"), "-D", str(data), "-c", f"config_file={config_file}",
            *[option for name, value in overrides.items() for option in ("-c", f"{name}={value}")],
        ])
        with running("postgres", command, port=port, log=directory / "postgres.log",
                     ready=accepting, stop_signal=signal.SIGINT) as server:
            yield PostgresServer(server=server, port=port, socket_dir=sockets,
                                 config_file=config_file)


@pytest.fixture(scope="session")
def postgres_databases(rendered, postgres) -> PostgresServer:
    """The same server after the program's init-databases.sql (roles and databases)."""
    result = postgres.run_file(rendered["prod"].command_stdin("platform-postgres-init-databases"))
    assert result.returncode == 0, result.stderr
    return postgres
