"""templates/docker/check-running.sh.j2 on a real engine: the platform's precondition that
fails an `up` whose container was made but never started (issue #28 item 1; why it can
happen: the script's header and tests/unit/harness/test_replay.py), and passes a running,
healthy one, held to its task limit (review L7)."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest

from components.host.templates import render

pytestmark = pytest.mark.e2e
IMAGE = "aiia-standin/debian:bookworm"  # tests/images/build-standins.sh


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120,
                          check=check).stdout.strip()


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    suffix = secrets.token_hex(3)
    made = {kind: f"aiia-e2e-running-{kind}-{suffix}"
            for kind in ("healthy", "created", "unhealthy")}
    health = ["--health-interval", "1s", "--health-start-period", "0s", "--health-retries", "1"]
    docker("run", "-d", "--name", made["healthy"], "--health-cmd", "true", *health,
           IMAGE, "sleep", "300")
    # What a failed `up` leaves: created (its id set), never started.
    docker("create", "--name", made["created"], IMAGE, "sleep", "300")
    docker("run", "-d", "--name", made["unhealthy"], "--health-cmd", "false", *health,
           IMAGE, "sleep", "300")
    try:
        yield made
    finally:
        docker("rm", "-f", *made.values(), check=False)


def check(*containers: str, wait: int = 20, pids_limit: int = 128) -> subprocess.CompletedProcess:
    script = render("docker/check-running.sh.j2",
                    containers={name: pids_limit for name in containers},
                    health_wait_seconds=wait)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          check=False)


def test_a_running_healthy_container_passes(names):
    result = check(names["healthy"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "platform: every container running"


def test_a_container_made_but_never_started_fails_the_up_with_the_fix(names):
    result = check(names["healthy"], names["created"])
    assert result.returncode == 1
    assert f"platform: {names['created']} is created, not running" in result.stderr
    assert "docker start <name>" in result.stderr and "pulumi up --refresh" in result.stderr
    assert names["healthy"] not in result.stderr


def test_an_unhealthy_or_missing_container_fails(names):
    result = check(names["unhealthy"], "aiia-e2e-running-no-such-container")
    assert result.returncode == 1
    assert f"platform: {names['unhealthy']} is running but unhealthy" in result.stderr
    assert "platform: aiia-e2e-running-no-such-container does not exist" in result.stderr


def test_a_checked_container_is_held_to_its_task_limit(names):
    """A fork loop in it stops at the limit instead of taking the host's pids; the limit
    survives a restart."""
    result = check(names["healthy"], pids_limit=40)
    assert result.returncode == 0, result.stderr
    assert docker("inspect", "-f", "{{.HostConfig.PidsLimit}}", names["healthy"]) == "40"
    # 60 sleeps asked for, each counted once forked: dash gives up at the first fork the
    # limit refuses and the shell ends there; the restart below ends the sleeps.
    loop = "for i in $(seq 60); do sleep 30 & echo $i; done"
    forked = subprocess.run(["docker", "exec", names["healthy"], "sh", "-c", loop],
                            capture_output=True, text=True, timeout=120, check=False)
    assert "Cannot fork" in forked.stderr
    assert 30 <= len(forked.stdout.split()) < 40, forked.stdout
    docker("restart", "-t", "1", names["healthy"])
    assert docker("inspect", "-f", "{{.HostConfig.PidsLimit}}", names["healthy"]) == "40"
