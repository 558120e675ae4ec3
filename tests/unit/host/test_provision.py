"""components/host/provision.py: what prod's program declares for the VPS, and that everything
else waits for it."""

from __future__ import annotations

import json

from tests.harness.program import TEST_HOST_KEY, run_program


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
    commands = [r for r in prod.resources
                if r.type.startswith("command:") and r.urn not in host_urns]
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
