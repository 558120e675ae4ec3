"""components/release/processes.py under the mocks: a release's processes are containers of its
image beside the web container, gated before the switch, stopped with their own grace, and
named by their generation; their default check run for real against a process of this machine."""

import copy
import subprocess
import sys
import time

import pytest

from components.release.processes import SETTLE_PROBE
from tests.harness.program import (
    prod_outputs_for_staging,
    release_container,
    run_program,
    stack_config,
)

WORKER = "celery -A shop worker -l info --pool solo"
PROCESSES = {"worker": WORKER,
             "beat": {"command": "sh -c 'exec celery -A shop beat'", "memory_mb": 48,
                      "stop_grace_seconds": 10, "check": "test -e /tmp/beat.pid",
                      "check_timeout_seconds": 4}}


def with_processes(processes=PROCESSES, stack="prod", reserved_mb=160):
    config = copy.deepcopy(stack_config(stack))
    config["aiia:releases"][stack]["processes"] = copy.deepcopy(processes)
    if stack == "prod":
        config["aiia:platform"]["environments"]["prod"]["processes_memory_mb"] = reserved_mb
        config["aiia:host"]["memory_mb"] = 512 + 2 * reserved_mb
    return config


@pytest.fixture(scope="module")
def run():
    return run_program("prod", config=with_processes())


def labels(container) -> dict[str, str]:
    return {label["label"]: label["value"] for label in container.plain["labels"]}


def test_each_process_runs_the_release_s_image_with_its_variables_and_its_own_command(run):
    web = release_container(run, "aiia-app-prod-2026-11-26-1-")
    worker = release_container(run, "aiia-worker-prod-2026-11-26-1-")
    beat = release_container(run, "aiia-beat-prod-2026-11-26-1-")
    assert worker.plain["image"] == web.plain["image"]
    assert worker.plain["envs"] == web.plain["envs"]
    # Split like a shell line and run as argv: the process is PID 1 and gets the SIGTERM.
    assert worker.plain["command"] == ["celery", "-A", "shop", "worker", "-l", "info",
                                       "--pool", "solo"]
    assert beat.plain["command"] == ["sh", "-c", "exec celery -A shop beat"]
    assert labels(worker) == {"aiia.service": "process", "aiia.process": "worker",
                              "aiia.environment": "prod", "aiia.stack": "aiia",
                              "aiia.release": "2026.11.26-1"}
    for key in ("user", "read_only", "tmpfs", "volumes", "networks_advanced", "security_opts",
                "capabilities", "log_opts", "restart"):
        assert worker.plain[key] == web.plain[key], key


def test_each_process_has_its_memory_limit_and_its_own_stop_grace(run):
    worker = release_container(run, "aiia-worker-prod-2026-11-26-1-")
    beat = release_container(run, "aiia-beat-prod-2026-11-26-1-")
    assert (worker.plain["memory"], worker.plain["memory_swap"]) == (80, 80)
    assert (beat.plain["memory"], beat.plain["memory_swap"]) == (48, 48)
    assert worker.plain["stop_signal"] == "SIGTERM"
    assert (worker.plain["stop_timeout"], worker.plain["destroy_grace_seconds"]) == (30, 30)
    assert (beat.plain["stop_timeout"], beat.plain["destroy_grace_seconds"]) == (10, 10)


def test_a_process_is_checked_before_the_switch_and_created_beside_the_old_one(run):
    by_urn = {r.urn: r for r in run.resources}
    switch = run.named("app-prod-upstream-install")
    before_switch = {by_urn[d].name for d in switch.dependencies}
    assert {"app-prod-worker-2026-11-26-1", "app-prod-beat-2026-11-26-1"} <= before_switch
    # And the switch itself refuses while one of them is not healthy now (a container kept
    # after a failed gate is updated without one: pulumi/pulumi#21458).
    script = switch.plain["create"]
    for prefix in ("aiia-app-prod-", "aiia-worker-prod-", "aiia-beat-prod-"):
        name = release_container(run, f"{prefix}2026-11-26-1-").plain["name"]
        assert f"candidate={name}" in script
        assert script.index(f"candidate={name}") < script.index('mv -f "$temporary"')
    for name in ("app-prod-worker-2026-11-26-1", "app-prod-beat-2026-11-26-1"):
        process = run.named(name)
        assert "app-prod-migrate-2026-11-26-1" in {by_urn[d].name for d in process.dependencies}
        assert process.plain["wait"] is True
        assert process.delete_before_replace_defined and not process.delete_before_replace


def test_the_check_is_the_process_s_own_command_or_the_settle_probe(run):
    worker = release_container(run, "aiia-worker-prod-2026-11-26-1-").plain["healthcheck"]
    beat = release_container(run, "aiia-beat-prod-2026-11-26-1-").plain["healthcheck"]
    assert worker["tests"][:3] == ["CMD", "python3", "-c"] and "ran >= 5" in worker["tests"][3]
    assert beat["tests"] == ["CMD-SHELL", "test -e /tmp/beat.pid"]
    assert beat["timeout"] == "4s"
    assert release_container(run, "aiia-worker-prod-2026-11-26-1-").plain["wait_timeout"] == 45


def probe(pid: int, settle: int) -> subprocess.CompletedProcess:
    code = SETTLE_PROBE.format(settle=settle).replace("/proc/1/stat", f"/proc/{pid}/stat")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)


def test_the_settle_probe_passes_once_the_process_has_run_its_settle_period():
    process = subprocess.Popen(["sleep", "30"])
    try:
        early = probe(process.pid, 2)
        assert early.returncode == 1 and "has run 0." in early.stderr
        time.sleep(2.2)
        assert probe(process.pid, 2).returncode == 0
    finally:
        process.kill()
        process.wait()


def names(config) -> tuple[str, str]:
    result = run_program("prod", config=config)
    return (release_container(result, "aiia-app-prod-2026-11-26-1-").plain["name"],
            release_container(result, "aiia-worker-prod-2026-11-26-1-").plain["name"])


def test_a_changed_command_is_a_new_process_generation_and_the_web_container_stays():
    web, worker = names(with_processes({"worker": WORKER}))
    changed_web, changed_worker = names(with_processes({"worker": WORKER + " -c 1"}))
    assert changed_web == web and changed_worker != worker
    # Without processes the web container keeps the name it had before they existed.
    plain = run_program("prod")
    assert release_container(plain, "aiia-app-prod-2026-11-26-1-").plain["name"] == web
    assert not [name for name in plain.containers() if name.startswith("aiia-worker-")]


def test_a_release_in_another_stack_is_refused_past_the_platform_s_reservation():
    config = with_processes({"worker": WORKER}, stack="staging")
    outputs = prod_outputs_for_staging()
    with pytest.raises(Exception, match=r"releases.staging.processes need 80 MB together "
                       r"\(worker 80 MB\) but the platform reserves 0 MB"):
        run_program("staging", config=config, stack_outputs={"eduaiia/aiia/prod": outputs})
    outputs["environments"]["staging"]["processes_memory_mb"] = 80.0
    run = run_program("staging", config=config, stack_outputs={"eduaiia/aiia/prod": outputs})
    assert release_container(run, "aiia-worker-staging-")
