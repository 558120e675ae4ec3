"""The host component (components/host/provision.py) and its settings
(components/settings/provision.py): bad input refused before anything changes, and what
prod's program declares for the VPS."""

from __future__ import annotations

import base64
import copy
import json
import struct

import pytest

from components.settings import ConfigError, parse_settings
from tests.harness.program import (
    TEST_HOST_KEY,
    contains_secret,
    made_up_secrets,
    run_program,
    stack_config,
)

CONTAINER = "docker:index/container:Container"


def problems_of(change, stack: str = "prod", pin: bool = True) -> str:
    config = copy.deepcopy(stack_config(stack, pin_test_identity=pin))
    raw = {key.split(":", 1)[1]: value for key, value in config.items()}
    change(raw)
    secrets = {key.split(":", 1)[1]: value for key, value in made_up_secrets(config).items()}
    with pytest.raises(ConfigError) as error:
        parse_settings(stack, raw, secrets.get)
    return str(error.value)


def provision(raw) -> dict:
    return raw["host"]["provision"]


def rsa_key(bits: int) -> str:
    """An ssh-rsa public key line with a modulus of `bits` (never a usable key)."""
    def string(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data
    blob = string(b"ssh-rsa") + string(b"\x01\x00\x01") + string(b"\x00" + b"\xc3" * (bits // 8))
    return f"ssh-rsa {base64.b64encode(blob).decode()} old@laptop"


def test_the_committed_prod_stack_is_refused_until_the_vps_identity_is_pinned():
    message = problems_of(lambda raw: None, pin=False)
    assert "aiia:host.ssh.host_key is missing" in message
    assert "ssh-keyscan -t ed25519 vps.eduaiia.com" in message
    assert "aiia:host.provision.admin_ssh_keys is empty" in message
    assert "aiia:platform.backup.recipients is empty: the backups of a VPS" in message


@pytest.mark.parametrize(("change", "expected"), [
    (lambda raw: provision(raw).update(admin_ssh_keys=["ssh-ed25519 not-base64!"]),
     "admin_ssh_keys[0]: the key's base64 part is damaged"),
    (lambda raw: provision(raw).update(admin_ssh_keys=["ssh-dss AAAAB3NzaC1kc3M="]),
     "is not an OpenSSH public key of a supported type"),
    (lambda raw: provision(raw).update(admin_ssh_keys=[rsa_key(2048)]),
     "an RSA key of 2048 bits is too short"),
    (lambda raw: provision(raw).update(
        admin_ssh_keys=["ssh-ed25519 " + TEST_HOST_KEY.split()[1][:-8]]),
     "admin_ssh_keys[0]: the key's"),
    (lambda raw: provision(raw).update(admin_ssh_keys="ssh-ed25519 AAAA"),
     "must be a list of public key lines"),
    (lambda raw: raw["host"]["ssh"].update(host_key="AAAAC3NzaC1lZDI1NTE5"),
     "host.ssh.host_key='AAAAC3NzaC1lZDI1NTE5'… is not an OpenSSH public key"),
    (lambda raw: raw["host"]["ssh"].update(port=443),
     "host.ssh.port=443 clashes with nginx"),
    (lambda raw: raw["host"].update(swap_mb=8192),
     "host.swap_mb=8192 would take over a quarter of the 20 GB disk"),
    (lambda raw: provision(raw).update(fail2ban={"ban_time_s": 0}),
     "fail2ban.ban_time_s=0 must be greater than 0 (a ban time of 0 would ban nobody"),
    (lambda raw: provision(raw).update(fail2ban={"bantime": 60}),
     "aiia:host.provision.fail2ban.bantime is not a setting"),
    (lambda raw: provision(raw).update(docker_package="docker.io; rm -rf /"),
     "docker_package='docker.io; rm -rf /' is not a Debian package name"),
    (lambda raw: provision(raw).update(log_rotate_mb=0),
     "log_rotate_mb=0 must be greater than 0"),
    (lambda raw: provision(raw).update(fail2ban={"ignore_addresses": ["office"]}),
     "ignore_addresses[0]='office' is not an IP address or CIDR range"),
    (lambda raw: provision(raw).update(journal_max_mb=0),
     "journal_max_mb=0 must be greater than 0"),
    (lambda raw: provision(raw).update(swap_file="swapfile"),
     "swap_file='swapfile' must be an absolute path"),
    (lambda raw: provision(raw).update(swap_file="/var/../etc/passwd"),
     "swap_file='/var/../etc/passwd' must be an absolute path of plain names"),
    (lambda raw: provision(raw).update(swap_file="/run/swap"),
     "swap_file='/run/swap' must be an absolute path"),
])
def test_bad_host_settings_are_refused_naming_the_key_and_the_fix(change, expected):
    assert expected in problems_of(change)


def test_only_the_platform_stack_provisions_the_host():
    message = problems_of(lambda raw: raw["host"].update(provision={"admin_ssh_keys": []}),
                          stack="staging")
    assert "host.provision is set on a stack that does not provision the host" in message
    message = problems_of(lambda raw: raw["host"].update(provision={}), stack="local")
    assert "host.provision is set on a stack that does not provision the host" in message


@pytest.fixture(scope="module")
def prod():
    return run_program("prod")


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


def test_every_remote_command_pins_the_vps_host_key(prod):
    commands = [r for r in prod.resources if r.type == "command:remote:Command"]
    assert len(commands) > 40
    assert {r.plain["connection"]["host_key"] for r in commands} == {TEST_HOST_KEY}


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


def test_a_private_registry_is_logged_in_by_the_provider_with_a_secret_password():
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:registry"] = {"address": "ghcr.io", "username": "eduaiia-deploy"}
    secrets = {**made_up_secrets(config), "aiia:registry_password": "test-registry-token"}
    run = run_program("prod", config=config, secrets=secrets)
    provider = run.named("docker")
    assert contains_secret(provider.inputs["registryAuth"]), provider.inputs["registryAuth"]
    (auth,) = json.loads(provider.plain["registry_auth"])
    assert auth["address"] == "ghcr.io" and auth["username"] == "eduaiia-deploy"
    assert "test-registry-token" in json.dumps(auth)  # revealed here; a secret in state


@pytest.mark.parametrize(("registry", "expected"), [
    ({"address": "ghcr.io"}, "aiia:registry needs username"),
    ({"address": "ghcr.io", "username": "u", "password": "x"},
     "registry.password must not be in the stack file"),
    ({"address": "ghcr.io", "username": "u"}, "the secret aiia:registry_password is not"),
])
def test_a_registry_without_its_credentials_is_refused(registry, expected):
    assert expected in problems_of(lambda raw: raw.update(registry=registry))
