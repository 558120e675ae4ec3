"""The app image (app/Dockerfile), built offline from wheels FROM the python stand-in, run on
the real Docker engine against the test PostgreSQL and Redis on 127.0.0.1 (host network)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.app.app_harness import (
    APP_DIR,
    OPCODE_TEXT,
    Postgres,
    Redis,
    WebSocket,
    app_environment,
    free_port,
    http_request,
)

pytestmark = pytest.mark.e2e

BASE_IMAGE = os.environ.get("AIIA_APP_BASE_IMAGE", "aiia-standin/python:3.13")
IMAGE = "aiia-app:e2e"
MAX_IMAGE_BYTES = 300 * 1000 * 1000
APP_UID = 10001


def docker(*arguments: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(arguments)}: {result.stderr}{result.stdout}")
    return result.stdout


def skip_without_docker_and_base_image() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker client: the image test needs a Docker engine")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("the Docker engine does not answer (tests/engine/ensure-dockerd.sh starts it)")
    inspected = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True)
    if inspected.returncode != 0:
        pytest.skip(
            f"base image {BASE_IMAGE} is missing: build it with tests/images/build-standins.sh"
        )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Build the image the way an offline machine does: wheels on the host, no index."""
    skip_without_docker_and_base_image()
    context = tmp_path_factory.mktemp("app-context")
    shutil.copytree(
        APP_DIR, context, dirs_exist_ok=True, ignore=shutil.ignore_patterns("wheels", "__pycache__")
    )
    subprocess.run(
        [str(APP_DIR / "build-wheels.sh"), str(context / "wheels")],
        env={**os.environ, "PYTHON": sys.executable},
        check=True,
        timeout=300,
    )
    docker(
        "build", "--force-rm", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg", "PIP_INSTALL_MODE=wheels", "--tag", IMAGE, str(context),
        timeout=600,
    )  # fmt: skip
    return IMAGE


def test_image_is_under_300_mb_and_runs_as_uid_10001(image: str) -> None:
    details = json.loads(docker("image", "inspect", image))[0]

    print(f"\napp image size: {details['Size'] / 1e6:.1f} MB")
    assert details["Size"] < MAX_IMAGE_BYTES
    assert details["Config"]["User"] == str(APP_UID)
    assert docker("run", "--rm", image, "id", "-u").strip() == str(APP_UID)
    assert "8000/tcp" in details["Config"]["ExposedPorts"]


def container_environment(postgres: Postgres, redis: Redis, **extra: str) -> dict[str, str]:
    """The app's environment for a container on the host network (127.0.0.1 is ours)."""
    environment = app_environment(
        database_host="127.0.0.1",
        database_port=postgres.port,
        postgres=postgres,
        redis_url=redis.url,
        **extra,
    )
    for host_only in ("PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"):
        del environment[host_only]
    return environment


def env_options(environment: dict[str, str]) -> list[str]:
    return [option for item in environment.items() for option in ("-e", "=".join(item))]


def test_image_refuses_to_start_without_secret_key(
    image: str, postgres: Postgres, redis: Redis
) -> None:
    environment = container_environment(postgres, redis)
    del environment["SECRET_KEY"]

    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", *env_options(environment), image],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "missing required environment variable(s): SECRET_KEY" in result.stderr


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"aiia-app-e2e-{uuid.uuid4().hex[:8]}"
    yield name
    docker("rm", "--force", name, check=False)


def wait_until_healthy(name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = json.loads(docker("inspect", "--format", "{{json .State}}", name))
        if state["Status"] != "running":
            raise AssertionError(f"container stopped: {state}\n{docker('logs', name)}")
        if state.get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(0.5)
    raise AssertionError(f"not healthy after {timeout}s:\n{docker('logs', name)}")


def memory_usage_mib(name: str) -> float:
    usage = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", name).split("/")[0]
    number, unit = float(usage.strip()[:-3]), usage.strip()[-3:]
    return number * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[unit]


def process_memory_kib(name: str) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of the container's PID 1, the uvicorn process."""
    status = docker("exec", name, "cat", "/proc/1/status")
    return {
        line.split(":")[0]: int(line.split()[1])
        for line in status.splitlines()
        if line.startswith(("VmRSS:", "VmHWM:"))
    }


def concurrent_load(port: int, clients: int, requests_per_client: int) -> list[int]:
    """Clients in parallel, each listing notes and adding one now and then."""

    def client(number: int) -> list[int]:
        statuses = []
        for index in range(requests_per_client):
            if index % 5 == 0:
                body = {"text": f"client {number} note {index}"}
                statuses.append(http_request(port, "POST", "/api/notes/", body=body).status)
            else:
                statuses.append(http_request(port, "GET", "/api/notes/").status)
        return statuses

    with ThreadPoolExecutor(clients) as pool:
        return [status for result in pool.map(client, range(clients)) for status in result]


def test_image_migrates_collects_static_and_serves_within_80_mb(
    image: str, postgres: Postgres, redis: Redis, tmp_path: Path, container_name: str
) -> None:
    # A database of its own, so migrate starts from an empty schema.
    database = f"aiia_e2e_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"CREATE DATABASE {database} OWNER {postgres.user}")
    static_root = tmp_path / "static"
    static_root.mkdir()
    os.chown(static_root, APP_UID, APP_UID)
    port = free_port()
    environment = container_environment(postgres, redis, DATABASE_NAME=database, PORT=str(port))
    options = [
        *env_options(environment),
        "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--volume", f"{static_root}:/app/staticfiles",
    ]  # fmt: skip

    # What the deploy runs with the new image before its container exists.
    docker("run", "--rm", *options, image, "python3", "manage.py", "migrate", "--noinput")
    docker("run", "--rm", *options, image, "python3", "manage.py", "collectstatic", "--noinput")
    assert (static_root / "notes" / "hello.txt").is_file()
    tables = postgres.psql("SELECT to_regclass('notes_note')", database=database)
    assert tables == "notes_note"

    docker(
        "run", "--detach", "--name", container_name, *options,
        "--memory", "80m", "--memory-swap", "80m",
        "--health-cmd", "python3 /app/healthcheck.py", "--health-interval", "1s",
        image,
    )  # fmt: skip
    wait_until_healthy(container_name)
    idle = memory_usage_mib(container_name)

    health = http_request(port, "GET", "/healthz/")
    assert health.status == 200, health.body
    assert health.headers["x-release"] == "2026.11.26-1"
    created = http_request(port, "POST", "/api/notes/", body={"text": "from the image"})
    assert created.status == 201
    websocket = WebSocket(port, "/ws/echo/")
    websocket.send("through the image")
    assert websocket.receive() == (OPCODE_TEXT, b"through the image")
    assert websocket.close() == 1000
    statuses = concurrent_load(port, clients=16, requests_per_client=40)
    assert set(statuses) <= {200, 201}, statuses
    loaded = memory_usage_mib(container_name)
    peak_rss = process_memory_kib(container_name)["VmHWM"] / 1024
    print(
        f"\napp container (cgroup) memory: idle {idle:.1f} MiB, after {len(statuses)} requests "
        f"from 16 clients {loaded:.1f} MiB; uvicorn peak RSS {peak_rss:.1f} MiB"
    )
    assert peak_rss < 75

    # docker stop: SIGTERM, graceful shutdown, exit by the re-raised signal (143).
    docker("stop", "--time", "25", container_name, timeout=60)
    state = json.loads(docker("inspect", "--format", "{{json .State}}", container_name))
    logs = subprocess.run(["docker", "logs", container_name], capture_output=True, text=True)
    assert state["OOMKilled"] is False
    assert state["ExitCode"] in (0, 143), state
    assert "Application shutdown complete" in logs.stdout + logs.stderr
