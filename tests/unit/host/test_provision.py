"""components/host/provision.py: what prod's program declares for the VPS, and that everything
else waits for it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from components.host.provision import engine_requirement
from components.host.templates import render
from tests.harness.program import TEST_HOST_KEY, run_program, stack_config
from tests.harness.settings import parse


def ancestors(run, resource) -> set[str]:
    """Every URN `resource` waits for, directly or through its dependencies and parents."""
    by_urn = {r.urn: r for r in run.resources}
    seen, todo = set(), [resource.urn]
    while todo:
        current = by_urn.get(todo.pop())
        if current is None:
            continue
        for urn in [*current.dependencies, *([current.parent] if current.parent else [])]:
            if urn not in seen:
                seen.add(urn)
                todo.append(urn)
    return seen


def test_every_other_host_command_and_the_docker_provider_wait_for_the_host(prod):
    """Docker resources all go through the provider (the program passes it to each), so
    they wait with it."""
    preflight = prod.named("host-preflight")
    assert preflight.urn in prod.named("docker").dependencies
    host_urns = {r.urn for r in prod.resources if r.name.startswith("host-")}
    # A VPS stack's local commands run where `pulumi up` runs (the dashboard's salt), not on
    # the host.
    commands = [r for r in prod.resources
                if r.type.startswith("command:remote:") and r.urn not in host_urns]
    assert len(commands) > 30
    for command in commands:
        assert preflight.urn in ancestors(prod, command), command.name


def test_docker_over_ssh_accepts_only_the_pinned_key_and_shares_one_connection(prod):
    options = json.loads(prod.named("docker").plain["ssh_opts"])  # provider config: JSON
    pairs = dict(option.split("=", 1) for option in options if option != "-o")
    assert pairs["StrictHostKeyChecking"] == "yes"
    assert pairs["UserKnownHostsFile"] == "/dev/null"
    assert pairs["KnownHostsCommand"] == f"/bin/echo vps.eduaiia.com {TEST_HOST_KEY}"
    assert pairs["BatchMode"] == "yes" and pairs["ControlMaster"] == "auto"


def test_the_local_stack_provisions_nothing():
    run = run_program("local")
    assert not [r for r in run.resources if r.type == "aiia:host:Host"]
    assert "ssh_opts" not in run.named("docker").plain


def test_the_deploy_user_s_sudo_rule_is_checked_before_it_stays(prod):
    from tests.harness.program import host_files
    assert "/etc/sudoers.d/aiia-deploy" in host_files(prod)
    install = prod.named("host-sudoers-install").plain["create"]
    assert "visudo -cq" in install
    sshd = prod.named("host-sshd-install").plain["create"]
    assert "sshd -t && systemctl reload ssh" in sshd


def run_preflight(script: str, engine_api: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """The preflight in bash, on a host whose Docker speaks `engine_api`: docker, sudo, id and
    systemctl stand-ins on PATH answer as a provisioned host's would."""
    fakes = {"docker": f'[ "$*" = "version --format {{{{.Server.APIVersion}}}}" ] && '
                       f'echo {engine_api} || echo 26.1.5',
             "sudo": 'shift 3; exec "$@"', "id": "echo deploy docker", "systemctl": "exit 0"}
    for name, body in fakes.items():
        (tmp_path / name).write_text(f"#!/bin/bash\n{body}\n")
        (tmp_path / name).chmod(0o755)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, check=False)


def test_the_preflight_refuses_an_engine_too_old_for_the_declared_start_interval(tmp_path):
    """Debian 13 (prod's default system): every health check declares start_interval, so
    the preflight refuses an engine older than API 1.44 before any Docker step, naming the
    setting that said otherwise and the fix; on Debian 12 it declares none and asks nothing."""
    trixie = parse("prod").host
    script = render("host/preflight.sh.j2", user="deploy", **engine_requirement(trixie))
    refused = run_preflight(script, "1.41", tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert ("this host's Docker speaks Engine API 1.41, but aiia:host.system is debian-13 "
            "(whose docker.io speaks 1.45), so every health check declares start_interval "
            '(API 1.44): set aiia:host.docker_api_version: "1.41"') in refused.stderr
    for newer in ("1.44", "1.45", "1.100"):
        taken = run_preflight(script, newer, tmp_path)
        assert taken.returncode == 0, taken.stdout + taken.stderr
        assert f"Docker speaks Engine API {newer}" in taken.stdout
    bookworm = parse("prod", lambda raw: raw["host"].update(system="debian-12")).host
    script = render("host/preflight.sh.j2", user="deploy", **engine_requirement(bookworm))
    assert run_preflight(script, "1.41", tmp_path).returncode == 0


def test_a_local_stack_that_declares_start_interval_checks_its_docker_first(local, tmp_path):
    """host.docker_api_version on a local stack: the developer's Docker is checked before any
    container (every platform service waits for the host directories, which wait for it);
    without it nothing is declared and nothing is checked."""
    assert not [r for r in local.resources if r.name == "platform-docker-engine"]
    config = stack_config("local")
    config["aiia:host"]["docker_api_version"] = "1.45"
    newer = run_program("local", config=config)
    check = newer.named("platform-docker-engine")
    assert check.urn in newer.named("platform-directories").dependencies
    refused = run_preflight(check.plain["create"], "1.41", tmp_path)
    assert refused.returncode == 1
    assert ("Engine API 1.41, but aiia:host.docker_api_version is 1.45, so every health check "
            'declares start_interval (API 1.44): set aiia:host.docker_api_version: "1.41"'
            ) in refused.stderr
    assert run_preflight(check.plain["create"], "1.45", tmp_path).returncode == 0
