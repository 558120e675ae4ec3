"""The dashboard's collector against a real Docker engine (not the stand-in API), on the
socket itself and through its allowlisting proxy (dashboard/docker_proxy.py, review L2), run
as the local stack's proxy container runs it: the proxy must pass all the collector reads.

Containers made for the test carry unique `aiia.service` labels, so whatever else runs on
the engine (another e2e module's platform) does not disturb the assertions.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from dashboard.auth import hash_password
from dashboard.docker_api import DockerClient, DockerError
from tests.harness.dashboard_status import REPO_ROOT

pytestmark = pytest.mark.e2e
IMAGE = "aiia-standin/debian:bookworm"  # tests/images/build-standins.sh
SOCKET = "/var/run/docker.sock"


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=120
    ).stdout.strip()


@pytest.fixture(scope="module")
def engine() -> DockerClient:
    client = DockerClient(SOCKET)
    try:
        client._get("/_ping")
    except DockerError as error:
        pytest.fail(f"no Docker engine ({error}); tests/engine/ensure-dockerd.sh starts one")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode:
        pytest.fail(f"{IMAGE} missing; build it with tests/images/build-standins.sh")
    return client


@pytest.fixture(scope="module")
def containers(engine) -> Iterator[dict[str, str]]:
    """name → aiia.service label of four containers in four different states."""
    tag = secrets.token_hex(3)
    specs = {
        "healthy": (
            ["--health-cmd", "true"],
            "echo hello from stdout; echo ERROR written to stderr >&2; exec sleep 600",
        ),
        "unhealthy": (["--health-cmd", "false", "--health-retries", "1"], "exec sleep 600"),
        "exited": ([], "echo bye; exit 3"),
        "crashing": (["--restart", "on-failure:2"], "echo boom; exit 1"),
    }
    made = {}
    try:
        for kind, (options, script) in specs.items():
            name = f"aiia-dashtest-{tag}-{kind}"
            docker(
                "run",
                "-d",
                "--name",
                name,
                "--label",
                f"aiia.service=dashtest-{tag}-{kind}",
                "--label",
                "aiia.environment=platform",
                "--label",
                "aiia.release=r-test",
                "--memory",
                "64m",
                "--memory-swap",
                "64m",
                "--health-interval",
                "1s",
                *options,
                IMAGE,
                "sh",
                "-c",
                script,
            )
            made[kind] = name
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = {
                kind: json.loads(docker("inspect", name))[0]["State"] for kind, name in made.items()
            }
            if (
                states["healthy"].get("Health", {}).get("Status") == "healthy"
                and states["unhealthy"].get("Health", {}).get("Status") == "unhealthy"
                and states["exited"]["Status"] == "exited"
                and states["crashing"]["Status"] == "exited"
                and json.loads(docker("inspect", made["crashing"]))[0]["RestartCount"] == 2
            ):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"containers did not reach their states: {states}")
        yield {kind: f"dashtest-{tag}-{kind}" for kind in made} | {"tag": tag}
    finally:
        for name in made.values():
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


@pytest.fixture(params=["socket", "proxy"])
def docker_socket(request, tmp_path) -> Iterator[str]:
    """The Docker socket, or the proxy's in front of it (a process, as in its container)."""
    if request.param == "socket":
        yield SOCKET
        return
    listen = str(tmp_path / "docker-proxy.sock")
    proxy = subprocess.Popen(
        [sys.executable, "-m", "dashboard.docker_proxy", "--upstream", SOCKET, "--listen", listen],
        cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "docker-proxy.sock").exists():
            assert time.monotonic() < deadline and proxy.poll() is None, "the proxy did not start"
            time.sleep(0.1)
        yield listen
    finally:
        proxy.terminate()
        _, refused = proxy.communicate(timeout=10)
    assert "refused" not in refused, refused  # the collector asks nothing it refuses


def test_the_collector_reads_states_health_restarts_memory_and_logs(containers, tmp_path,
                                                                    docker_socket):
    tag = containers["tag"]
    services = [
        {"name": kind, "container_label": label, "memory_limit_mb": 64}
        for kind, label in containers.items()
        if kind != "tag"
    ]
    services.append(
        {"name": "missing", "container_label": f"dashtest-{tag}-absent", "memory_limit_mb": 16}
    )
    config = {
        "listen_host": "127.0.0.1",
        "listen_port": 9100,
        "state_dir": str(tmp_path / "state"),
        "root_dir": str(tmp_path),
        "environments": [],
        "services": services,
        "certificates": [],
        "access_log": str(tmp_path / "access.log"),
        "releases_file": str(tmp_path / "r.jsonl"),
        "backups_file": str(tmp_path / "b.jsonl"),
        "restore_tests_file": str(tmp_path / "t.jsonl"),
        "log_sources": {"healthy": {"container_label": containers["healthy"]}},
        "auth_user": "operator",
        "auth_password_hash": hash_password("x", iterations=10),
        "docker_socket": docker_socket,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    subprocess.run(
        [sys.executable, "-m", "dashboard", "collect", "--config", str(path)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["collector"]["errors"] == []
    views = {s["name"]: s for s in status["services"] if s["configured"]}

    healthy = views["healthy"]
    assert (healthy["state"], healthy["health"], healthy["restarts"]) == ("running", "healthy", 0)
    assert healthy["release"] == "r-test"
    assert healthy["memory_limit_bytes"] == 64 * 1024 * 1024
    assert 0 < healthy["memory_used_bytes"] < healthy["memory_limit_bytes"]
    assert views["unhealthy"]["health"] == "unhealthy"
    assert (views["exited"]["state"], views["exited"]["exit_code"]) == ("exited", 3)
    assert (views["crashing"]["restarts"], views["crashing"]["exit_code"]) == (2, 1)
    assert views["missing"]["state"] == "missing"

    logs = json.loads((tmp_path / "state" / "logs" / "healthy.json").read_text())
    assert logs["error"] is None
    # Docker multiplexes stdout and stderr in one framed stream: both come out as lines.
    assert any(line.endswith("hello from stdout") for line in logs["lines"])
    assert any(line.endswith("ERROR written to stderr") for line in logs["lines"])
    assert all(line[:4].isdigit() for line in logs["lines"])  # timestamps=1


def test_only_labelled_containers_are_listed(engine, containers):
    names = {c.name for c in engine.labelled_containers()}
    assert {f"aiia-dashtest-{containers['tag']}-healthy"} <= names
    assert all(c.labels.get("aiia.service") for c in engine.labelled_containers())
