"""templates/host/host-lease.sh.j2 run by bash with the real flock: one stack changes the host at
a time (issue #28 item 5). Two stacks' commands serialize, one stack's commands run side by
side, a wait past its bound fails naming the holder, and what a command leaves running does
not keep the host."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from components.host.lease import HostLease, host_lease_directory, under_lease
from scripts.host_lease import BODY, HELD
from tests.harness.program import prod_outputs_for_staging, run_program
from tests.rendered.test_shellcheck import shellcheck

pytestmark = pytest.mark.rendered


def leased(root: Path, stack: str, name: str, body: str, wait_seconds: int = 60) -> str:
    lease = HostLease(host_lease_directory(str(root)), stack, wait_seconds)
    return under_lease(name, f"#!/usr/bin/env bash\nset -euo pipefail\n{body}\n", lease)


def start(script: str) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} never in {path}"
        time.sleep(0.05)


def events(log: Path) -> list[str]:
    return log.read_text().split()


def test_two_stacks_commands_serialize_and_one_stack_s_run_side_by_side(tmp_path):
    log = tmp_path / "log"

    def step(stack: str, name: str, seconds: float) -> subprocess.Popen:
        return start(leased(tmp_path, stack, name,
                            f"echo start-{name} >> {log}; sleep {seconds}; "
                            f"echo end-{name} >> {log}"))

    prod_reload = step("prod", "prod-reload", 2)
    wait_for(log, "start-prod-reload")
    staging_migrate = step("staging", "staging-migrate", 0.1)
    time.sleep(0.5)
    prod_install = step("prod", "prod-install", 0.1)  # prod holds the host: it goes in
    for process in (prod_reload, staging_migrate, prod_install):
        assert process.wait(timeout=30) == 0, process.stderr.read()
    order = events(log)
    assert order.index("start-prod-install") < order.index("end-prod-reload"), order
    # staging's command began only once no prod command held the host.
    assert order.index("start-staging-migrate") > order.index("end-prod-reload"), order
    assert order.index("start-staging-migrate") > order.index("end-prod-install"), order


def test_a_wait_past_its_bound_fails_naming_the_holder(tmp_path):
    log = tmp_path / "log"
    holder = start(leased(tmp_path, "prod", "app-prod-migrate-r2",
                          f"echo held >> {log}; sleep 5"))
    try:
        wait_for(log, "held")
        result = subprocess.run(["bash", "-c", leased(tmp_path, "staging", "app-staging-upstream",
                                                      f"echo ran >> {log}", wait_seconds=1)],
                                capture_output=True, text=True, timeout=30, check=False)
    finally:
        holder.wait(timeout=30)
    assert result.returncode == 1
    assert "stack prod has held this host for 1 s (app-prod-migrate-r2 since" in result.stderr
    assert "run pulumi up -s staging again" in result.stderr
    assert events(log) == ["held"]


def test_what_a_command_leaves_running_does_not_hold_the_host(tmp_path):
    log = tmp_path / "log"
    # release-begin.sh leaves its gate watcher running in the background (setsid nohup).
    pid_file = tmp_path / "watcher.pid"
    prod = leased(tmp_path, "prod", "app-prod-migrate",
                  f"setsid nohup sleep 30 >/dev/null 2>&1 < /dev/null & echo $! > {pid_file}")
    assert subprocess.run(["bash", "-c", prod], timeout=30, check=False).returncode == 0
    started = time.monotonic()
    staging = leased(tmp_path, "staging", "app-staging-migrate", f"echo ran >> {log}",
                     wait_seconds=10)
    assert subprocess.run(["bash", "-c", staging], timeout=30, check=False).returncode == 0
    assert time.monotonic() - started < 5
    assert events(log) == ["ran"]
    os.kill(int(pid_file.read_text()), signal.SIGTERM)  # the watcher this test started


def test_the_command_s_exit_status_and_standard_input_are_its_own(tmp_path):
    script = leased(tmp_path, "prod", "x", 'read -r line; echo "got $line"; exit 3')
    result = subprocess.run(["bash", "-c", script], input="hello\n", capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 3
    assert result.stdout.strip() == "got hello"


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_every_host_command_of_the_shared_host_s_stacks_takes_the_one_lease(stack):
    run = run_program(stack, stack_outputs={"eduaiia/aiia/prod": prod_outputs_for_staging()})
    # Remote: the host's (a local one runs where `pulumi up` does: the dashboard's salt).
    commands = [r for r in run.resources if r.type == "command:remote:Command"]
    assert commands
    for command in commands:
        script = command.plain["create"]
        assert "lease_dir=/srv/aiia/state/host-lease" in script, command.name
        assert f"{command.name} of stack \"{stack}\"" in script, command.name


def test_the_lease_is_shellcheck_clean(tmp_path):
    assert shellcheck(leased(tmp_path, "prod", "x", "echo hi"), "bash") == ""


def test_the_deploy_job_s_lease_holds_the_host_until_its_connection_closes(tmp_path):
    # scripts/host-lease.sh runs this on the host over ssh, its standard input open until the
    # job ends: the other stack's commands wait for the whole deploy.
    log = tmp_path / "log"
    lease = HostLease(host_lease_directory(str(tmp_path)), "prod")
    script = under_lease("deploy of prod (GitHub run 7)", BODY, lease)
    job = subprocess.Popen(["bash", "-c", script], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout.readline().strip() == HELD
        staging = start(leased(tmp_path, "staging", "app-staging-migrate",
                               f"echo ran >> {log}", wait_seconds=30))
        time.sleep(2)
        assert staging.poll() is None and not log.exists()  # waiting for the deploy
        assert "deploy of prod (GitHub run 7) since" in \
            (tmp_path / "state/host-lease/prod.holder").read_text()
    finally:
        job.stdin.close()  # the job ended: its connection closed
        job.wait(timeout=30)
    assert staging.wait(timeout=30) == 0, staging.stderr.read()
    assert events(log) == ["ran"]
