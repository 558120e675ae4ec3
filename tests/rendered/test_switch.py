"""The release switch's install script, run for real against a stand-in `docker` command:
it installs the upstream only for a container that is healthy now."""

import copy
import os
import subprocess
from pathlib import Path

import pytest

from tests.harness.program import run_program, stack_config
from tests.rendered.conftest import local_run_rooted_at

FAKE_DOCKER = """#!/bin/sh
# inspect answers the health and the address the test sets (the address only for the
# container's own network); ps says nginx is not running (no reload); update is recorded,
# and fails when the test says so.
case "$1 $3" in
  "update "*) echo "$*" >>"$FAKE_UPDATES"; [ "$FAKE_UPDATE" != fail ] ;;
  "inspect "*Health*) [ "$FAKE_HEALTH" = missing ] && exit 1; echo "$FAKE_HEALTH" ;;
  "inspect "*'Networks "aiia-local-prod"'*) echo "$FAKE_ADDRESS" ;;
  "inspect "*) echo ;;
  "ps "*) ;;
  *) echo "unexpected docker $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture(scope="module")
def switch(tmp_path_factory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("host")
    return local_run_rooted_at(root).named("app-prod-upstream-install").plain, root


def run_switch(switch, tmp_path, health, address="172.18.0.7",
               update="ok") -> subprocess.CompletedProcess:
    inputs, _ = switch
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                   "FAKE_HEALTH": health, "FAKE_ADDRESS": address, "FAKE_UPDATE": update,
                   "FAKE_UPDATES": str(bin_dir / "updates")}
    return subprocess.run(["bash", "-c", inputs["create"]], input=inputs["stdin"], text=True,
                          capture_output=True, env=environment, cwd=tmp_path, timeout=30,
                          check=False)


@pytest.mark.parametrize("health", ["unhealthy", "missing", "no health check"])
def test_a_container_that_is_not_healthy_is_refused_and_nothing_installed(
        switch, tmp_path, health):
    inputs, root = switch
    upstream = root / "nginx/upstreams/prod.conf"
    result = run_switch(switch, tmp_path, health)
    assert result.returncode == 1
    assert "refusing to switch prod" in result.stderr
    assert not upstream.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "bin"]  # nothing written elsewhere


def test_a_healthy_container_gets_the_upstream_with_its_address_from_the_engine(
        switch, tmp_path):
    # Pulumi's state may have no address for it (a failed health gate earlier: the provider's
    # update never reads the container back, issue #28 item 2): the engine's is used.
    inputs, root = switch
    assert "server @ADDRESS@:8000 max_fails=0;" in inputs["stdin"]
    result = run_switch(switch, tmp_path, "healthy")
    assert result.returncode == 0, result.stderr
    upstream = root / "nginx/upstreams/prod.conf"
    assert upstream.read_text() == inputs["stdin"].replace("@ADDRESS@", "172.18.0.7")
    assert "installed:" in result.stdout
    assert (root / "state/nginx.lock").exists()
    # Held to its task limit before nginx points at it (review L7; releases.<env>.pids_limit).
    updates = (tmp_path / "bin/updates").read_text().splitlines()
    assert updates == ["update --pids-limit 256 aiia-local-app-prod-local-1-"
                       + updates[0].rsplit("-", 1)[1]]
    # The same again: nothing changed, nothing reloaded.
    assert "unchanged:" in run_switch(switch, tmp_path, "healthy").stdout


def test_a_healthy_container_without_an_address_on_its_network_is_refused(switch, tmp_path):
    inputs, root = switch
    (root / "nginx/upstreams/prod.conf").unlink(missing_ok=True)
    result = run_switch(switch, tmp_path, "healthy", address="")
    assert result.returncode == 1
    assert "it has no address on aiia-local-prod" in result.stderr
    assert not (root / "nginx/upstreams/prod.conf").exists()


def test_a_container_that_cannot_be_held_to_its_task_limit_is_refused(switch, tmp_path):
    inputs, root = switch
    (root / "nginx/upstreams/prod.conf").unlink(missing_ok=True)
    result = run_switch(switch, tmp_path, "healthy", update="fail")
    assert result.returncode == 1
    assert "could not be held to 256 tasks (docker update failed)" in result.stderr
    assert not (root / "nginx/upstreams/prod.conf").exists()


# inspect answers by container: the worker's health is the test's, every other healthy;
# update records what it is given.
FAKE_DOCKER_BY_NAME = """#!/bin/sh
case "$1" in
  update) echo "$*" >>updates ;;
  inspect) case "$*" in
    *NetworkSettings*) echo 172.18.0.7 ;;
    *-worker-*) echo "$FAKE_WORKER_HEALTH" ;;
    *) echo healthy ;;
  esac ;;
  ps) ;;
  *) echo "unexpected docker $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture(scope="module")
def switch_with_a_worker(tmp_path_factory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("host")
    config = copy.deepcopy(stack_config("local"))
    config["aiia:host"]["root_dir"] = str(root)
    config["aiia:host"]["memory_mb"] += 64
    config["aiia:platform"]["environments"]["prod"]["processes_memory_mb"] = 64
    config["aiia:releases"]["prod"]["processes"] = {
        "worker": {"command": "celery -A shop worker", "memory_mb": 64}}
    return run_program("local", config=config).named("app-prod-upstream-install").plain, root


@pytest.mark.parametrize("health,installed", [("unhealthy", False), ("starting", False),
                                              ("healthy", True)])
def test_the_switch_waits_for_every_process_of_the_release(
        switch_with_a_worker, tmp_path, health, installed):
    inputs, root = switch_with_a_worker
    (tmp_path / "docker").write_text(FAKE_DOCKER_BY_NAME)
    (tmp_path / "docker").chmod(0o755)
    # The precondition's own deadline (60 s) shortened for "starting".
    script = inputs["create"].replace("deadline=$((SECONDS + 60))", "deadline=$((SECONDS + 2))")
    result = subprocess.run(
        ["bash", "-c", script], input=inputs["stdin"], text=True, capture_output=True,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
             "FAKE_WORKER_HEALTH": health},
        cwd=tmp_path, timeout=30, check=False)
    upstream = root / "nginx/upstreams/prod.conf"
    if installed:
        assert result.returncode == 0, result.stderr
        assert upstream.read_text() == inputs["stdin"].replace("@ADDRESS@", "172.18.0.7")
        # The worker is held to the same limit as the web container.
        updated = [line.split()[-1] for line in (tmp_path / "updates").read_text().splitlines()]
        assert len(updated) == 2 and "-app-prod-local-1-" in updated[0] \
            and "-worker-prod-local-1-" in updated[1]
    else:
        assert result.returncode == 1
        assert "refusing to switch prod to " in result.stderr
        assert "-worker-prod-local-1-" in result.stderr and f"is {health}, not healthy" \
            in result.stderr
        assert not upstream.exists()
