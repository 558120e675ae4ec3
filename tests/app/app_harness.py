"""Test scaffolding for the reference app: its venv, and real PostgreSQL, Redis, PgBouncer
and uvicorn processes on 127.0.0.1, each in a temporary directory of its own.

Nothing here is used by the deployed program; it only lets the tests run the app for real.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_DIR = REPO_ROOT / "app"
REQUIREMENTS = APP_DIR / "requirements.txt"
POSTGRES_BIN = Path(os.environ.get("AIIA_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
# The same host name nginx passes on for the prod server block.
APP_HOST = "prod.aiia.test"
REDIS_USER = "prod"
CACHE_KEY_PREFIX = "prod"

# Must match the Dockerfile's CMD (the e2e test runs that one for real).
UVICORN_FLAGS = [
    "--workers", "1",
    "--ws", "wsproto",
    "--ws-max-size", "1048576",
    "--lifespan", "on",
    "--proxy-headers",
    "--forwarded-allow-ips", "*",
    "--timeout-graceful-shutdown", "20",
    "--timeout-keep-alive", "75",
    "--no-access-log",
    "--no-server-header",
]  # fmt: skip


class HarnessError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise HarnessError(f"process exited with {process.returncode} before port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise HarnessError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def running_as_root() -> bool:
    return os.geteuid() == 0


def as_service_user(command: list[str]) -> list[str]:
    """PostgreSQL and PgBouncer refuse to run as root: run them as `postgres` then."""
    if running_as_root():
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def service_directory(prefix: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if running_as_root():
        shutil.chown(directory, "postgres", "postgres")
    return directory


# --- the app's virtual environment --------------------------------------------------------


def venv_cache_root() -> Path:
    configured = os.environ.get("AIIA_APP_VENV_CACHE")
    if configured:
        return Path(configured)
    if running_as_root():
        return Path("/var/cache/aiia-ci")
    return Path.home() / ".cache" / "aiia-ci"


def ensure_app_venv() -> Path:
    """A venv with app/requirements.txt, cached by the file's and Python's hash; returns
    its python."""
    python_version = ".".join(map(str, sys.version_info[:3])).encode()
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + python_version).hexdigest()[:16]
    root = venv_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"app-venv-{digest}"
    python = venv / "bin" / "python"
    complete = venv / ".complete"
    with open(root / f"app-venv-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(REQUIREMENTS)],
            check=True,
        )  # fmt: skip
        complete.write_text(digest + "\n")
    return python


# --- PostgreSQL ----------------------------------------------------------------------------


@dataclass
class Postgres:
    database: str = "aiia_prod"
    user: str = "aiia_prod"
    password: str = "prod-db-password"  # noqa: S105 - a throwaway test cluster
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: service_directory("aiia-test-pg-"))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            as_service_user(list(command)), check=True, capture_output=True, text=True
        )

    def create(self) -> Postgres:
        self._run(
            str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
        )  # fmt: skip
        self.start()
        self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
        self.psql(f"CREATE DATABASE {self.database} OWNER {self.user}")
        return self

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c shared_buffers=16MB -c max_connections=30"
        )
        self._run(
            str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-w", "-t", "30", "-o", options, "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run(
            str(POSTGRES_BIN / "psql"), "-h", str(self.root), "-p", str(self.port),
            "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql,
        )  # fmt: skip
        return result.stdout.strip()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# --- Redis ---------------------------------------------------------------------------------


@dataclass
class Redis:
    """redis-server with an ACL like production's: one user per environment, keys <env>:*."""

    user: str = REDIS_USER
    password: str = "prod-redis-password"  # noqa: S105 - a throwaway test server
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aiia-test-redis-")))
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.user}:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        config = self.root / "redis.conf"
        config.write_text(
            f'bind 127.0.0.1\nport {self.port}\ndir {self.root}\nsave ""\nappendonly no\n'
            "maxmemory 16mb\nmaxmemory-policy allkeys-lru\n"
            "user default off\n"
            f"user {self.user} on >{self.password} ~{self.user}:* +@all -@dangerous\n"
        )
        log = open(self.root / "log", "a")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(["redis-server", str(config)], stdout=log, stderr=log)
        wait_for_port(self.port, 15, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# --- PgBouncer -----------------------------------------------------------------------------


@dataclass
class PgBouncer:
    """PgBouncer in transaction mode in front of `postgres`, as on the host."""

    postgres: Postgres
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: service_directory("aiia-test-pgbouncer-"))
    process: subprocess.Popen | None = None

    def start(self) -> PgBouncer:
        pg = self.postgres
        config = self.root / "pgbouncer.ini"
        userlist = self.root / "userlist.txt"
        userlist.write_text(f'"{pg.user}" "{pg.password}"\n')
        config.write_text(
            "[databases]\n"
            f"{pg.database} = host=127.0.0.1 port={pg.port} dbname={pg.database}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {userlist}\n"
            "pool_mode = transaction\ndefault_pool_size = 5\nmax_client_conn = 50\n"
            "server_login_retry = 1\nquery_wait_timeout = 10\n"
        )
        if running_as_root():
            for path in (config, userlist):
                shutil.chown(path, "postgres", "postgres")
                path.chmod(0o600)
        log = open(self.root / "log", "a")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            as_service_user(["pgbouncer", str(config)]), stdout=log, stderr=log
        )
        wait_for_port(self.port, 15, self.process)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # runuser forwards SIGTERM to pgbouncer and exits with it.
            self.process.terminate()
            self.process.wait(15)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# --- the app -------------------------------------------------------------------------------


def app_environment(
    *, database_host: str, database_port: int, postgres: Postgres, redis_url: str, **extra: str
) -> dict[str, str]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "SECRET_KEY": base64.b64encode(os.urandom(40)).decode(),
        "ALLOWED_HOSTS": f"{APP_HOST},staging.aiia.test",
        "DATABASE_HOST": database_host,
        "DATABASE_PORT": str(database_port),
        "DATABASE_NAME": postgres.database,
        "DATABASE_USER": postgres.user,
        "DATABASE_PASSWORD": postgres.password,
        "REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": CACHE_KEY_PREFIX,
        "RELEASE": "2026.11.26-1",
        "ENVIRONMENT": "prod",
    }
    environment.update(extra)
    return environment


def manage(
    python: Path, environment: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "manage.py", *arguments],
        cwd=APP_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class AppServer:
    python: Path
    environment: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def start(self) -> AppServer:
        environment = {**self.environment, "PORT": str(self.port)}
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [str(self.python), "-m", "uvicorn", "aiia.asgi:application",
             "--host", "127.0.0.1", "--port", str(self.port), *UVICORN_FLAGS],
            cwd=APP_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for_port(self.port, 30, self.process)
        except HarnessError as error:
            raise HarnessError(f"{error}\n{self.log()}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM, as `docker stop` sends it; returns the exit status.

        After a graceful shutdown uvicorn re-raises the signal, so a clean stop ends with
        -SIGTERM (143 in Docker), not 0.
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def request(
        self, method: str, path: str, body: object = None, host: str = APP_HOST,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return http_request(self.port, method, path, body=body, host=host, headers=headers)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> object:
        return json.loads(self.body)


def http_request(
    port: int, method: str, path: str, body: object = None, host: str = APP_HOST,
    headers: dict[str, str] | None = None,
) -> Response:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    headers = {"Host": host, **(headers or {})}
    payload = None
    if body is not None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    started = time.monotonic()
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        content = response.read()
    finally:
        connection.close()
    return Response(
        status=response.status,
        headers={name.lower(): value for name, value in response.getheaders()},
        body=content,
        seconds=time.monotonic() - started,
    )


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


# --- a minimal WebSocket client (RFC 6455), standard library only --------------------------

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class WebSocketRejected(HarnessError):
    def __init__(self, status: int) -> None:
        super().__init__(f"handshake answered HTTP {status}")
        self.status = status


class WebSocket:
    def __init__(self, port: int, path: str, host: str = APP_HOST) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = self.socket.makefile("rb")
        key = base64.b64encode(os.urandom(16)).decode()
        self.socket.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status_line = self.reader.readline().decode()
        headers = {}
        while (line := self.reader.readline().decode().strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        if status != 101:
            self.socket.close()
            raise WebSocketRejected(status)
        expected = base64.b64encode(
            hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()  # noqa: S324 - RFC 6455
        ).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise HarnessError(f"bad Sec-WebSocket-Accept in {headers}")

    def send(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            self._send_frame(OPCODE_TEXT, payload.encode())
        else:
            self._send_frame(OPCODE_BINARY, payload)

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.socket.sendall(header + mask + masked)

    def receive(self) -> tuple[int, bytes]:
        """The next data or close frame; pings are answered, pongs skipped."""
        while True:
            opcode, payload = self._receive_frame()
            if opcode == OPCODE_PING:
                self._send_frame(OPCODE_PONG, payload)
            elif opcode != OPCODE_PONG:
                return opcode, payload

    def _receive_frame(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        opcode = first & 0x0F
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return opcode, self._read(length)

    def _read(self, count: int) -> bytes:
        data = self.reader.read(count)
        if len(data) != count:
            raise HarnessError("connection closed in the middle of a frame")
        return data

    def close(self, code: int = 1000) -> int:
        """Send a close frame; return the code of the server's close frame."""
        self._send_frame(OPCODE_CLOSE, struct.pack("!H", code))
        opcode, payload = self.receive()
        if opcode != OPCODE_CLOSE:
            raise HarnessError(f"expected a close frame, got opcode {opcode}")
        (answered,) = struct.unpack("!H", payload[:2])
        self.socket.close()
        return answered
