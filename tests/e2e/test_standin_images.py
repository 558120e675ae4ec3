"""The stand-in images honour tests/images/CONTRACT.md and behave like the upstream images.

Test scaffolding: the stand-ins replace upstream images on machines without a registry.
The module builds them (tests/images/build-standins.sh, about a second when cached), runs
tests/images/check-contract.sh against each one, and exercises in real containers the
behaviour the Pulumi program relies on. Containers are named aiia-test-standin-<random>-*
and removed at the end of each test, failed or not.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

IMAGES_DIR = Path(__file__).resolve().parents[1] / "images"
BUILD_STANDINS = IMAGES_DIR / "build-standins.sh"
CHECK_CONTRACT = IMAGES_DIR / "check-contract.sh"
WAIT_SECONDS = 60

# The commands the Pulumi program runs in these containers (tests/images/CONTRACT.md).
POSTGRES_HEALTH_CHECK = ("pg_isready", "-U", "postgres", "-h", "127.0.0.1")
PSQL_SCRIPT_FROM_STDIN = ("psql", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-f", "-")


@dataclass(frozen=True)
class StandIn:
    kind: str
    tag: str
    upstream: str


STANDINS = {
    standin.kind: standin
    for standin in (
        StandIn("postgres", "aiia-standin/postgres:15", "postgres:15-bookworm"),
        # The default for new stacks; 15 stays for the upgrade from it. One contract for both.
        StandIn("postgres-17", "aiia-standin/postgres:17", "postgres:17-trixie"),
        StandIn("pgbouncer", "aiia-standin/pgbouncer:1", "edoburu/pgbouncer"),
        StandIn("valkey", "aiia-standin/valkey:8", "valkey/valkey:8.1-trixie"),
        StandIn("redis", "aiia-standin/redis:7", "redis:7-bookworm"),
        StandIn("nginx", "aiia-standin/nginx:1", "nginx:1.30"),
        StandIn("certbot", "aiia-standin/certbot:5", "certbot/certbot"),
        StandIn("python", "aiia-standin/python:3.13", "python:3.13-slim-trixie"),
        StandIn("node", "aiia-standin/node:24", "node:24"),
    )
}


def docker(
    *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        input=stdin,
    )


def wait_until(condition: Callable[[], bool], what: str, container: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        state = docker("inspect", "--format", "{{.State.Running}}", container, check=False)
        if state.stdout.strip() != "true" or time.monotonic() > deadline:
            logs = docker("logs", "--tail", "40", container, check=False)
            output = logs.stdout + logs.stderr
            pytest.fail(f"{what} did not happen within {WAIT_SECONDS}s:\n{output}")
        time.sleep(0.5)


def container_ip(container: str) -> str:
    return docker(
        "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container
    ).stdout.strip()


@pytest.fixture(scope="module")
def docker_engine() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker client on PATH (run tests/engine/ensure-dockerd.sh)")
    try:
        info = docker("info", check=False, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.skip("docker info timed out (run tests/engine/ensure-dockerd.sh)")
    if info.returncode != 0:
        reason = info.stderr.strip()[-300:]
        pytest.skip(f"docker info failed (run tests/engine/ensure-dockerd.sh): {reason}")


@pytest.fixture(scope="module")
def standin_images(docker_engine: None) -> dict[str, StandIn]:
    """Build (or reuse) every stand-in; the build skips images whose inputs are unchanged."""
    build = subprocess.run(
        [str(BUILD_STANDINS)], capture_output=True, text=True, timeout=1800, check=False
    )
    assert build.returncode == 0, f"build-standins.sh failed:\n{build.stderr[-4000:]}"
    return STANDINS


@pytest.fixture
def start_container(request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """docker run -d under a unique name; every container started is removed at teardown."""
    prefix = f"aiia-test-standin-{uuid.uuid4().hex[:8]}"
    started: list[str] = []

    def remove_all() -> None:
        for name in started:
            docker("rm", "--force", "--volumes", name, check=False)

    request.addfinalizer(remove_all)

    def start(role: str, *run_args: str) -> str:
        name = f"{prefix}-{role}"
        started.append(name)
        docker("run", "--detach", "--name", name, *run_args)
        return name

    yield start


@pytest.mark.parametrize("kind", list(STANDINS))
def test_standin_honours_contract(standin_images: dict[str, StandIn], kind: str) -> None:
    standin = standin_images[kind]
    result = subprocess.run(
        [str(CHECK_CONTRACT), kind.split("-")[0], standin.tag],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"contract broken:\n{result.stdout}{result.stderr}"

    description = docker(
        "image",
        "inspect",
        "--format",
        '{{ index .Config.Labels "org.opencontainers.image.description" }}',
        standin.tag,
    ).stdout
    assert f"Test stand-in for {standin.upstream}" in description


def test_postgres_initialises_with_password_and_checks_it_over_tcp(
    standin_images: dict[str, StandIn], start_container: Callable[..., str], tmp_path: Path
) -> None:
    image = standin_images["postgres"].tag
    password = secrets.token_urlsafe(16)
    config_dir = tmp_path / "postgres"
    config_dir.mkdir()
    (config_dir / "postgresql.conf").write_text(
        "listen_addresses = '*'\nmax_connections = 50\nshared_buffers = 16MB\n"
    )
    config_dir.chmod(0o755)
    (config_dir / "postgresql.conf").chmod(0o644)

    server = start_container(
        "postgres",
        "--env",
        f"POSTGRES_PASSWORD={password}",
        "--env",
        "PGDATA=/var/lib/postgresql/data/pgdata",
        "--volume",
        f"{config_dir}:/etc/postgresql/aiia:ro",
        image,
        "postgres",
        "-c",
        "config_file=/etc/postgresql/aiia/postgresql.conf",
    )
    health_check = ["exec", server, *POSTGRES_HEALTH_CHECK]
    wait_until(lambda: docker(*health_check, check=False).returncode == 0, "pg_isready", server)
    # What the program does next: SQL through psql on the local socket.
    setup = docker(
        *["exec", "-i", server, *PSQL_SCRIPT_FROM_STDIN],
        stdin="CREATE ROLE aiia_prod LOGIN PASSWORD 'prod-secret';\n"
        "CREATE DATABASE aiia_prod OWNER aiia_prod;\n",
        check=False,
    )
    assert setup.returncode == 0, setup.stderr

    host = container_ip(server)

    def login(user: str, secret: str, database: str) -> subprocess.CompletedProcess[str]:
        # From another container: a TCP client on the network, like PgBouncer.
        client = ["run", "--rm", "--entrypoint", "", "--env", f"PGPASSWORD={secret}", image]
        query = ["psql", "-h", host, "-U", user, "-d", database, "-tAc", "SELECT current_user"]
        return docker(*client, *query, check=False)

    wrong = login("postgres", "not-the-password", "postgres")
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr

    right = login("postgres", password, "postgres")
    assert right.returncode == 0, right.stderr
    assert right.stdout.strip() == "postgres"

    app = login("aiia_prod", "prod-secret", "aiia_prod")
    assert app.returncode == 0, app.stderr
    assert app.stdout.strip() == "aiia_prod"


# The cache's image → the server and client the program runs in it (components/platform/redis.py).
CACHE_PROGRAMS = {"valkey": ("valkey-server", "valkey-cli"), "redis": ("redis-server", "redis-cli")}


@pytest.mark.parametrize("kind", list(CACHE_PROGRAMS))
def test_cache_with_maxmemory_config_answers_and_evicts(
    standin_images: dict[str, StandIn], start_container: Callable[..., str], tmp_path: Path,
    kind: str,
) -> None:
    image = standin_images[kind].tag
    server_program, cli_program = CACHE_PROGRAMS[kind]
    maxmemory_bytes = 50 * 1024 * 1024
    config_dir = tmp_path / "redis"
    config_dir.mkdir()
    config = config_dir / "redis.conf"
    config.write_text(
        "bind 0.0.0.0\n"
        "protected-mode no\n"
        "port 6379\n"
        "maxmemory 50mb\n"
        "maxmemory-policy allkeys-lru\n"
        'save ""\n'
        "appendonly no\n"
        "user default on nopass resetkeys resetchannels -@all +ping\n"
        "user prod on >prod-secret resetkeys ~prod:* resetchannels +@all\n"
    )
    shutil.chown(config_dir, 999, 999)
    shutil.chown(config, 999, 999)
    config.chmod(0o600)

    server = start_container(
        "redis",
        "--user",
        "999:999",
        "--volume",
        f"{config_dir}:/usr/local/etc/redis:ro",
        image,
        server_program,
        "/usr/local/etc/redis/redis.conf",
    )
    wait_until(
        lambda: docker("exec", server, cli_program, "ping", check=False).stdout.strip() == "PONG",
        f"{cli_program} ping",
        server,
    )

    def as_prod(command: str) -> str:
        cli = f"{cli_program} --no-auth-warning --user prod --pass prod-secret {command}"
        return docker("exec", server, "sh", "-c", cli).stdout.strip()

    assert as_prod("config get maxmemory").splitlines()[-1] == str(maxmemory_bytes)

    # Write 70 MB into a 50 MB cache: LRU eviction keeps it under the cap.
    fill = (
        "head -c 1048576 /dev/zero | tr '\\0' x > /tmp/blob && for i in $(seq 1 70); do "
        f"{cli_program} --no-auth-warning --user prod --pass prod-secret -x set prod:blob:$i "
        "< /tmp/blob >/dev/null || exit 1; done"
    )
    docker("exec", server, "sh", "-c", fill)
    stats = dict(
        line.split(":", 1)
        for line in as_prod("info").splitlines()
        if ":" in line and not line.startswith("#")
    )
    assert int(stats["evicted_keys"]) > 0
    assert int(stats["used_memory"]) <= maxmemory_bytes
    assert int(as_prod("dbsize")) < 70

    # The default user is for the health check only.
    denied = docker("exec", server, cli_program, "get", "prod:blob:70").stdout
    assert "NOPERM" in denied


NGINX_CONFIG = """\
user nginx;
worker_processes 1;
pid /var/run/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    limit_req_zone $binary_remote_addr zone=general:1m rate=200r/s;
    gzip on;
    server {{
        listen 8443 ssl;
        http2 on;
        ssl_certificate /etc/aiia-nginx/fullchain.pem;
        ssl_certificate_key /etc/aiia-nginx/privkey.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            limit_req zone={zone} burst=20 nodelay;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            return 200;
        }}
    }}
}}
"""


NGINX_TEST_COMMAND = ("nginx", "-c", "/etc/aiia-nginx/nginx.conf", "-t")
SELF_SIGNED_CERTIFICATE = "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=standin.localhost"


def nginx_test(image: str, config_dir: Path) -> subprocess.CompletedProcess[str]:
    mount = ["--volume", f"{config_dir}:/etc/aiia-nginx:ro"]
    return docker("run", "--rm", *mount, image, *NGINX_TEST_COMMAND, check=False)


def test_nginx_config_test_passes_with_ssl_http2_limit_req_and_map(
    standin_images: dict[str, StandIn], tmp_path: Path
) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed on the host to make the test certificate")
    image = standin_images["nginx"].tag
    config_dir = tmp_path / "nginx"
    config_dir.mkdir()
    key_and_certificate = ["-keyout", "privkey.pem", "-out", "fullchain.pem"]
    subprocess.run(
        ["openssl", *SELF_SIGNED_CERTIFICATE.split(), *key_and_certificate],
        cwd=config_dir,
        capture_output=True,
        check=True,
        timeout=60,
    )
    for path in (config_dir, *config_dir.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)

    (config_dir / "nginx.conf").write_text(NGINX_CONFIG.format(zone="general"))
    valid = nginx_test(image, config_dir)
    assert valid.returncode == 0, valid.stderr
    assert "test is successful" in valid.stderr

    # Control: nginx -t really validates (an undefined limit_req zone is refused).
    (config_dir / "nginx.conf").write_text(NGINX_CONFIG.format(zone="undefined_zone"))
    invalid = nginx_test(image, config_dir)
    assert invalid.returncode != 0
    assert "undefined_zone" in invalid.stderr
