"""prod's host component (components/host.py) over real SSH, on the VPS stand-in.

The stand-in (tests/images/vps) is a Debian 12 container running systemd as PID 1 with
sshd, reached only through SSH on a 127.0.0.1 port; it runs a Docker engine of its own
(Debian's docker.io, installed by the program's packages step, its data on a volume), so
its firewall and DOCKER-USER rules are the ones its containers' traffic meets. It starts
as a provider hands a VPS over: root, and the deploy user made by the README's first
bootstrap step. The `prod` program (its real stack file, with the stand-in's address, host
key and a test operator key) is run under mocks and its host resources are replayed over
SSH as the deploy user through `sudo -n` (tests/harness/replay.py: `command:remote:Command`).

Not shown here (the rest of issue #9, next): the platform and the apps on the stand-in's
engine through Docker over ssh://, the nginx jails at nginx's published port, a release
there. A swap file cannot be made in a container (its filesystem is overlayfs), so the
stack runs with host.swap_mb 0 (and the stand-in's 1 GB as host.memory_mb); sysctls
cannot be written (/proc/sys is read-only in a container) and are reported as such.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.engine import DockerEngine
from tests.harness.local_stack import free_port
from tests.harness.program import (
    TEST_BACKUP_KEY,
    ProgramRun,
    made_up_secrets,
    run_program,
    stack_config,
)
from tests.harness.replay import Replay, ReplayError

pytestmark = pytest.mark.e2e
VPS_IMAGE = "aiia-standin/vps:12"  # tests/images/build-standins.sh
REPO = Path(__file__).resolve().parents[2]
BAN_TIME_S = 45
SSH_MAX_RETRY = 3


def docker(*args: str, check: bool = True, timeout: float = 120,
           stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=check)


class Vps:
    """The stand-in: a container that boots like a fresh Debian 12 VPS."""

    def __init__(self, name: str, network: str):
        self.name, self.network = name, network
        self.port = free_port()

    def start(self) -> Vps:
        docker("volume", "create", f"{self.name}-docker")
        docker("run", "-d", "--name", self.name, "--hostname", "vps", "--network", self.network,
               "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
               "--security-opt", "seccomp=unconfined", "--cgroupns=host",
               "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs",
               "/run/lock", "-v", f"{self.name}-docker:/var/lib/docker",
               # The same port inside: the program's sshd policy names the port it reaches.
               "-p", f"127.0.0.1:{self.port}:{self.port}", "--memory", "1g", VPS_IMAGE)
        deadline = time.monotonic() + 90
        while self.sh("systemctl is-system-running", check=False).stdout.strip() not in (
                "running", "degraded"):
            assert time.monotonic() < deadline, "systemd did not boot"
            time.sleep(0.5)
        # A provider's image on a port of its choice (here the published one), host keys
        # made at first boot.
        self.sh(f"printf 'Port {self.port}\\n' > /etc/ssh/sshd_config.d/40-provider-port.conf "
                "&& systemctl restart ssh && systemctl is-active ssh")
        return self

    def sh(self, script: str, check: bool = True, stdin: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
        result = docker("exec", "-i", self.name, "bash", "-c", script, check=False,
                        stdin=stdin, timeout=timeout)
        if check:
            assert result.returncode == 0, f"{script}\n{result.stdout[-2000:]}{result.stderr}"
        return result

    @property
    def host_key(self) -> str:
        return " ".join(self.sh("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2])

    @property
    def address(self) -> str:
        inspect = json.loads(docker("inspect", self.name).stdout)[0]
        return inspect["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def bootstrap(self, user: str, public_key: str) -> None:
        """README, "The host", step 1: the deploy user with the key and passwordless sudo."""
        self.sh(f"adduser --disabled-password --gecos '' {user} >/dev/null && "
                f"install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh && "
                f"cat > /home/{user}/.ssh/authorized_keys && "
                f"chown {user}:{user} /home/{user}/.ssh/authorized_keys && "
                f"echo '{user} ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/aiia-{user} && "
                f"chmod 0440 /etc/sudoers.d/aiia-{user}", stdin=public_key + "\n")
        # A provider's image lets root in with the same key and a password; the program
        # must shut both.
        self.sh("install -d -m 0700 /root/.ssh && cat > /root/.ssh/authorized_keys && "
                "echo 'root:provider-set-password' | chpasswd && "
                "printf 'PermitRootLogin yes\\nPasswordAuthentication yes\\n' > "
                "/etc/ssh/sshd_config.d/50-provider.conf && systemctl reload ssh",
                stdin=public_key + "\n")

    def stop(self) -> None:
        docker("rm", "-f", self.name, check=False)
        docker("volume", "rm", f"{self.name}-docker", check=False)


def keypair(directory: Path, name: str) -> tuple[Path, str]:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True)
    return key, (directory / f"{name}.pub").read_text().strip()


def host_part(run: ProgramRun) -> ProgramRun:
    """The host component's resources only (the platform's need Docker over ssh://)."""
    return ProgramRun(resources=[r for r in run.resources
                                 if r.name == "host" or r.name.startswith("host-")],
                      exports={})


def ssh(vps: Vps, identity: Path | None, user: str, command: str = "true",
        *options: str) -> subprocess.CompletedProcess:
    """A client's login on the stand-in's 127.0.0.1 port, checking its pinned host key."""
    known = identity.parent / "known_hosts" if identity else Path("/tmp/aiia-known-hosts")
    known.write_text(f"[127.0.0.1]:{vps.port} {vps.host_key}\n")
    auth = ["-i", str(identity), "-o", "IdentitiesOnly=yes"] if identity else []
    return subprocess.run(
        ["ssh", "-p", str(vps.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known}", "-o", "ConnectTimeout=10", *auth, *options,
         f"{user}@127.0.0.1", command], capture_output=True, text=True, timeout=60,
        check=False)


class Provisioned:
    def __init__(self, vps: Vps, config: dict, secrets_: dict, identity: Path, replay: Replay,
                 run: ProgramRun, log: list[str]):
        self.vps, self.config, self.secrets, self.identity = vps, config, secrets_, identity
        self.replay, self.run, self.log = replay, run, log


@pytest.fixture(scope="module")
def provisioned(engine: DockerEngine, tmp_path_factory) -> Iterator[Provisioned]:
    prefix = f"e2ehost{secrets.token_hex(3)}"
    network = f"{prefix}-net"
    docker("network", "create", network)
    vps = Vps(f"{prefix}-vps", network)
    try:
        vps.start()
        keys = tmp_path_factory.mktemp("keys")
        identity, public = keypair(keys, "operator")
        vps.bootstrap("deploy", public)
        config = copy.deepcopy(stack_config("prod", pin_test_identity=False))
        host = config["aiia:host"]
        host["ssh"].update(host="127.0.0.1", port=vps.port, host_key=vps.host_key)
        host["docker_host"] = f"ssh://deploy@127.0.0.1:{vps.port}"
        # A container cannot swap to a file on overlayfs: the stand-in has 1 GB and no swap
        # (the swap script's path for host.swap_mb 0).
        host.update(swap_mb=0, memory_mb=1024)
        # This machine reaches the stand-in through Docker's port forward, from its
        # network's gateway: the operator's address, never banned (another container's is).
        gateway = json.loads(docker("network", "inspect", network).stdout)[0]["IPAM"][
            "Config"][0]["Gateway"]
        host["provision"] = {"admin_ssh_keys": [public],
                             "fail2ban": {"ban_time_s": BAN_TIME_S, "find_time_s": 60,
                                          "ssh_max_retry": SSH_MAX_RETRY,
                                          "ignore_addresses": [gateway]}}
        config["aiia:platform"]["backup"]["recipients"] = [TEST_BACKUP_KEY]
        secrets_ = made_up_secrets(config)
        run = run_program("prod", config=config, secrets=secrets_)
        log: list[str] = []
        replay = Replay(engine, {}, log=log.append, ssh_identity=identity)
        replay.apply(host_part(run))
        yield Provisioned(vps, config, secrets_, identity, replay, run, log)
    finally:
        if not os.environ.get("AIIA_KEEP_VPS"):  # kept for a look inside when debugging
            vps.stop()
            docker("network", "rm", network, check=False)
        # The stand-in's own engine may leave a cgroup hierarchy without a mount on this
        # machine (a sandboxed kernel's quirk), which breaks the engine's stats: mended.
        subprocess.run(["bash", str(REPO / "tests" / "engine" / "ensure-dockerd.sh")],
                       capture_output=True, text=True, timeout=120, check=True)


def test_sshd_enforces_the_policy_keys_only_no_root_no_password(provisioned):
    vps, identity = provisioned.vps, provisioned.identity
    effective = vps.sh("sshd -T -C user=deploy,host=client,addr=127.0.0.1").stdout
    for line in ("permitrootlogin no", "passwordauthentication no",
                 "kbdinteractiveauthentication no", "allowusers deploy",
                 "authenticationmethods publickey", "allowtcpforwarding no"):
        assert line in effective.splitlines(), line
    assert ssh(vps, identity, "deploy", "id -nG").stdout.split().count("docker") == 1
    refused = ssh(vps, identity, "root")
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
    password = ssh(vps, None, "root", "true", "-o", "BatchMode=no", "-o",
                   "PreferredAuthentications=password,keyboard-interactive")
    assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr
    assert vps.sh("cat /root/.ssh/authorized_keys").stdout == ""


def test_the_program_connects_only_to_the_pinned_host_key(provisioned, engine):
    config = copy.deepcopy(provisioned.config)
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJzU1bEQVo+zNLuRYVMlFJjJRP9p3cSiGgC9bpxoUkDz"
    config["aiia:host"]["ssh"]["host_key"] = other
    config["aiia:host"]["provision"]["log_rotate_keep"] = 6  # a change, so the step runs
    run = run_program("prod", config=config, secrets=provisioned.secrets)
    replay = Replay(engine, {}, log=lambda line: None, ssh_identity=provisioned.identity)
    with pytest.raises(ReplayError, match="Host key verification failed"):
        replay.apply(host_part(run))


def test_ufw_shows_exactly_the_policy_and_a_port_not_allowed_is_unreachable(provisioned):
    vps = provisioned.vps
    status = vps.sh("ufw status verbose").stdout
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in status
    rules = [line.split()[0] for line in status.splitlines() if "ALLOW IN" in line
             and "(v6)" not in line]
    assert rules == [f"{vps.port}/tcp", "80/tcp", "443/tcp"], status
    # A listener the policy does not allow, and one it does, from another machine.
    vps.sh("nohup python3 -m http.server 8080 >/dev/null 2>&1 & "
           "nohup python3 -m http.server 80 >/dev/null 2>&1 & sleep 1")
    assert connects(provisioned, vps.address, 80)
    assert not connects(provisioned, vps.address, 8080)


def connects(provisioned, address: str, port: int) -> bool:
    """A TCP connection from another container on the stand-in's network (a dropped SYN
    times out)."""
    result = docker("run", "--rm", "--network", provisioned.vps.network, VPS_IMAGE,
                    "timeout", "5", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}",
                    check=False, timeout=60)
    return result.returncode == 0


def test_a_port_docker_publishes_is_unreachable_from_outside_unless_it_is_80_or_443(
        provisioned):
    vps = provisioned.vps
    image = "aiia-standin/python:3.11"  # a listener: python3 -m http.server
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True,
                           timeout=300).stdout
    subprocess.run(["docker", "exec", "-i", vps.name, "docker", "load"], input=saved,
                   capture_output=True, check=True, timeout=300)
    for port in (8081, 443):
        vps.sh(f"docker run -d --name published-{port} -p {port}:8000 {image} "
               "python3 -m http.server 8000 >/dev/null")
    time.sleep(2)
    # The container serves (seen from the VPS itself, which DOCKER-USER does not filter).
    vps.sh("exec 3<>/dev/tcp/127.0.0.1/8081")
    assert connects(provisioned, vps.address, 443)
    assert not connects(provisioned, vps.address, 8081)


def test_failed_ssh_logins_get_the_client_banned_and_the_ban_lifts(provisioned):
    vps = provisioned.vps
    address = vps.address
    attacker, _ = keypair(Path(provisioned.identity.parent), f"attacker-{secrets.token_hex(2)}")
    client = f"{vps.name}-attacker"
    docker("run", "-d", "--name", client, "--network", vps.network, VPS_IMAGE, "sleep", "600")
    try:
        docker("cp", str(attacker), f"{client}:/tmp/key")
        attempt = (f"ssh -i /tmp/key -o BatchMode=yes -o StrictHostKeyChecking=no "
                   f"-o ConnectTimeout=5 -p {vps.port} deploy@{address} true")
        for _ in range(SSH_MAX_RETRY + 1):
            docker("exec", client, "bash", "-c", attempt, check=False, timeout=30)
        client_address = json.loads(docker("inspect", client).stdout)[0][
            "NetworkSettings"]["Networks"][vps.network]["IPAddress"]
        deadline = time.monotonic() + 60  # fail2ban reads the journal every second or so
        while client_address not in vps.sh("fail2ban-client status sshd").stdout:
            assert time.monotonic() < deadline, vps.sh("fail2ban-client status sshd").stdout
            time.sleep(0.5)
        banned = docker("exec", client, "bash", "-c", f"timeout 5 bash -c "
                        f"'exec 3<>/dev/tcp/{address}/{vps.port}'", check=False, timeout=30)
        assert banned.returncode != 0, "the banned client still reaches port 22"
        deadline = time.monotonic() + BAN_TIME_S + 30
        while client_address in vps.sh("fail2ban-client status sshd").stdout:
            assert time.monotonic() < deadline, "the ban did not lift"
            time.sleep(2)
        lifted = docker("exec", client, "bash", "-c", f"timeout 5 bash -c "
                        f"'exec 3<>/dev/tcp/{address}/{vps.port}'", check=False, timeout=30)
        assert lifted.returncode == 0, lifted.stderr
    finally:
        docker("rm", "-f", client, check=False)


def test_every_host_service_runs_and_each_job_runs_once_by_hand(provisioned):
    vps = provisioned.vps
    assert vps.sh("systemctl --failed --no-legend --plain").stdout.strip() == ""
    for unit in ("ssh", "docker", "fail2ban", "cron", "aiia-docker-firewall"):
        assert vps.sh(f"systemctl is-active {unit}", check=False).stdout.strip() == "active", unit
    assert "hourly" in vps.sh("systemctl cat logrotate.timer").stdout
    vps.sh("systemctl restart aiia-docker-firewall && logrotate /etc/logrotate.d/aiia && "
           "unattended-upgrade --dry-run >/dev/null 2>&1 || unattended-upgrade --dry-run")
    docker_info = vps.sh("docker info --format '{{json .}}'").stdout
    assert json.loads(docker_info)["LiveRestoreEnabled"] is True
    # daemon.json survives a restart (a directive given twice would stop dockerd), and the
    # engine listens on no TCP port.
    vps.sh("systemctl restart docker && systemctl is-active docker")
    assert "dockerd" not in vps.sh("ss -ltnp").stdout


def test_sysctls_a_container_cannot_write_are_reported_not_fatal(provisioned):
    applied = provisioned.replay.state
    (sysctl,) = [a for a in applied.values() if a.name == "host-sysctl-install"]
    assert "read-only here" in sysctl.real["stdout"], sysctl.real["stdout"]


def test_a_second_run_changes_nothing_and_restarts_nothing(provisioned, engine):
    vps = provisioned.vps
    pids = {unit: vps.sh(f"systemctl show -p MainPID --value {unit}").stdout.strip()
            for unit in ("ssh", "docker", "fail2ban")}
    run = run_program("prod", config=provisioned.config, secrets=provisioned.secrets)
    before = len(provisioned.log)
    provisioned.replay.apply(host_part(run))
    assert provisioned.log[before:] == []  # no step: every command unchanged
    assert {unit: vps.sh(f"systemctl show -p MainPID --value {unit}").stdout.strip()
            for unit in pids} == pids


HOST_SERVICES = ("sshd", "fail2ban-server", "cron", "dockerd", "containerd",
                 "systemd-journald", "systemd-logind", "dbus-daemon", "/sbin/init",
                 "unattended-upgrade")


def test_host_services_memory_after_provisioning(provisioned):
    """What the host's own services hold once provisioned and idle: anonymous memory (what
    the kernel cannot drop; host.os_reserve_mb must cover it) and PSS (with the pages of
    their binaries and libraries, shared ones counted once), printed for the closing note."""
    vps = provisioned.vps
    script = ("for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); "
              "[ -n \"$c\" ] && awk -v c=\"$c\" '/^(Pss|Anonymous):/ {v[$1]=$2} END "
              "{print v[\"Pss:\"], v[\"Anonymous:\"], c}' $p/smaps_rollup 2>/dev/null; done")
    rows = [line.split(None, 2) for line in vps.sh(script).stdout.splitlines()]
    services = [(int(pss), int(anonymous), command) for pss, anonymous, command in rows
                if any(name in command for name in HOST_SERVICES)]
    pss_mb = sum(row[0] for row in services) // 1024
    anonymous_mb = sum(row[1] for row in services) // 1024
    for pss, anonymous, command in sorted(services, reverse=True):
        print(f"{pss // 1024:5d} MB PSS {anonymous // 1024:5d} MB anonymous  {command[:60]}")
    os_reserve = provisioned.config["aiia:host"]["os_reserve_mb"]
    print(f"host services: {anonymous_mb} MB anonymous, {pss_mb} MB PSS "
          f"(host.os_reserve_mb {os_reserve})")
    assert {command.split()[0] for _, _, command in services} >= {
        "/usr/sbin/dockerd", "/usr/bin/containerd"}, services
    assert anonymous_mb <= os_reserve, (anonymous_mb, os_reserve)
