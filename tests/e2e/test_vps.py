"""The `prod` stack on the VPS stand-in, over real SSH: the host (components/host/provision.py), the
platform and the prod release, as production reaches them.

The stand-in (tests/images/vps) is a Debian 12 container running systemd as PID 1 with
sshd, reached only through SSH on a 127.0.0.1 port; its HTTPS port is published on another
127.0.0.1 port, as a VPS's 443 is on the internet. It starts as a provider hands a VPS
over: root, and the deploy user made by the README's first bootstrap step. The `prod`
program (its real stack file, with the stand-in's address, host key, a test operator key,
self-signed TLS since no CA is reachable, and the reference app's releases) is run under
mocks and replayed (tests/harness/replay/) in one `pulumi up`:
- its `command:remote:Command`s over SSH as the deploy user through `sudo -n`;
- its Docker resources through the provider's `ssh://deploy@127.0.0.1:<port>`, i.e. the
  system `ssh` with the program's `ssh_opts` running `docker system dial-stdio` on the
  stand-in, against the stand-in's own engine: Debian's docker.io, installed there by the
  program's packages step, with its data on a volume. An engine inside the stand-in (not
  this machine's reached through a socket) so that bind mounts name the stand-in's files,
  and its firewall, DOCKER-USER rules and fail2ban bans are the ones its containers'
  traffic meets. The images come from this machine's engine (`docker save | docker load`,
  the registry's stand-in) in the RemoteImage steps.

A swap file cannot be made on the container's own filesystem (overlayfs): the stand-in's
`host.provision.swap_file` is on a directory of this machine's disk bind-mounted into it,
where the program makes and activates it (swap is the kernel's, so this machine swaps to
it until the stand-in is stopped, which switches it off first). sysctls cannot be written
(/proc/sys is read-only in a container) and are reported as such.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.names import database_name
from components.platform.nginx import reload_command
from components.settings import Settings, parse_settings
from components.settings.platform import PlatformSettings
from tests.harness.client import Response, WebSocket, assert_websocket_echoes, https_request
from tests.harness.engine import DockerEngine
from tests.harness.local_stack import free_port, free_subnet, image_map, tag_image
from tests.harness.program import (
    TEST_BACKUP_KEY,
    ProgramRun,
    made_up_secrets,
    run_program,
    stack_config,
)
from tests.harness.replay import DOCKER_PROVIDER, Replay, ReplayError
from tests.harness.traffic import assert_no_client_noticed, strict_clients, under_load

pytestmark = pytest.mark.e2e
VPS_IMAGE = "aiia-standin/vps:12"  # tests/images/build-standins.sh
REPO = Path(__file__).resolve().parents[2]
BAN_TIME_S = 45
SSH_MAX_RETRY = 3
STATUS_AUTH_MAX_RETRY = 4
ABUSE_MAX_RETRY = 5
APP_REPOSITORY = "aiia-vps-app"  # the reference app's image, tagged once per release
RELEASES = ("release-a", "release-b")
# A smaller load than test_releases.py's: the stand-in shares this machine's two cores.
RATE, SECONDS = 50, 80
SWAP_MB = 256
SWAP_DIR = "/var/lib/aiia-swap"  # in the stand-in, on this machine's disk


def docker(*args: str, check: bool = True, timeout: float = 120,
           stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=check)


class Vps:
    """The stand-in: a container that boots like a fresh Debian 12 VPS."""

    def __init__(self, name: str, network: str):
        self.name, self.network = name, network
        self.port = free_port()
        self.https_port = free_port()  # the VPS's 443, as the internet reaches it
        self.swap_dir = Path(f"/var/tmp/{name}-swap")  # a disk filesystem, not tmpfs

    def start(self) -> Vps:
        docker("volume", "create", f"{self.name}-docker")
        self.swap_dir.mkdir(mode=0o700)
        docker("run", "-d", "--name", self.name, "--hostname", "vps", "--network", self.network,
               "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
               # A VPS's root has every capability; the stand-in's engine needs two beyond
               # Docker's default set: SYS_PTRACE for runc to join the namespaces of a
               # container that runs as another uid (`docker exec`, so every health check of
               # a non-root service: the kernel's ptrace access check on /proc/<pid>/ns), and
               # DAC_READ_SEARCH, which the backup job's container is given to read the data.
               "--cap-add", "SYS_PTRACE", "--cap-add", "DAC_READ_SEARCH",
               "--security-opt", "seccomp=unconfined", "--cgroupns=host",
               "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs",
               "/run/lock", "-v", f"{self.name}-docker:/var/lib/docker",
               "-v", f"{self.swap_dir}:{SWAP_DIR}",
               # The same port inside: the program's sshd policy names the port it reaches.
               "-p", f"127.0.0.1:{self.port}:{self.port}",
               "-p", f"127.0.0.1:{self.https_port}:443", "--memory", "1g", VPS_IMAGE)
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
        # Swap is the kernel's: switched off before its file goes, from inside, or from this
        # machine when the stand-in can no longer run a command.
        self.sh("swapoff -a", check=False)
        docker("rm", "-f", self.name, check=False)
        docker("volume", "rm", f"{self.name}-docker", check=False)
        if (self.swap_dir / "swapfile").exists():  # refused harmlessly when not in use
            subprocess.run(["swapoff", str(self.swap_dir / "swapfile")], capture_output=True,
                           timeout=120, check=False)
        shutil.rmtree(self.swap_dir, ignore_errors=True)


def keypair(directory: Path, name: str) -> tuple[Path, str]:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True)
    return key, (directory / f"{name}.pub").read_text().strip()


def host_part(run: ProgramRun) -> ProgramRun:
    """The host component's resources only."""
    return ProgramRun(resources=[r for r in run.resources
                                 if r.name == "host" or r.name.startswith("host-")],
                      exports={})


def registry(vps: Vps):
    """The registry's stand-in for the Replay's `pull`: an image from this machine's engine
    loaded into the stand-in's, one at a time."""
    lock = threading.Lock()

    def pull(_engine: DockerEngine, image: str) -> None:
        with lock:
            save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
            load = subprocess.run(["docker", "exec", "-i", vps.name, "docker", "load"],
                                  stdin=save.stdout, capture_output=True, text=True,
                                  timeout=600, check=False)
            save.stdout.close()
            assert save.wait(timeout=60) == 0 and load.returncode == 0, load.stderr

    return pull


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
    """The prod stack on the stand-in, with what tests/harness/traffic.py needs of a stack."""

    def __init__(self, vps: Vps, config: dict, secrets_: dict, identity: Path, replay: Replay,
                 run: ProgramRun, log: list[str]):
        self.vps, self.config, self.secrets, self.identity = vps, config, secrets_, identity
        self.replay, self.run, self.log = replay, run, log
        self.https_port = vps.https_port

    def settings(self) -> Settings:
        """The stack's settings as the program reads them (defaults filled in)."""
        raw = {key.removeprefix("aiia:"): value for key, value in self.config.items()}
        return parse_settings("prod", raw, lambda key: self.secrets.get(f"aiia:{key}"))

    def domain(self, environment: str) -> str:
        return self.config["aiia:platform"]["environments"][environment]["domain"]

    def up(self, config: dict | None = None) -> ProgramRun:
        """`pulumi up -s prod` with `config` (default: the current one)."""
        if config is not None:
            self.config = config
        self.run = run_program("prod", config=self.config, secrets=self.secrets)
        self.replay.apply(self.run)
        return self.run

    def with_release(self, release: str) -> dict:
        config = copy.deepcopy(self.config)
        config["aiia:releases"]["prod"]["release"] = release
        return config

    def get(self, environment: str, path: str) -> Response:
        return https_request(self.https_port, self.domain(environment), path)

    def notes_written(self, environment: str, prefix: str) -> dict[str, int]:
        """{text: count} of the environment's notes starting with `prefix` (a StrictPosts
        run's), read with psql in the stand-in's postgres container."""
        query = ("SELECT text, count(*) FROM notes_note WHERE text LIKE :'prefix' || '%' "
                 "GROUP BY text;\n")
        prefix_ = self.config["aiia:prefix"]
        psql = shlex.join(["docker", "exec", "-i", f"{prefix_}-postgres", "psql", "-U",
                           "postgres", "-d", database_name(prefix_, environment), "-tA",
                           "-F", "\t", "-v", "ON_ERROR_STOP=1", "-v", f"prefix={prefix}",
                           "-f", "-"])
        result = self.vps.sh(psql, stdin=query)
        return {text: int(count) for text, _, count in
                (line.partition("\t") for line in result.stdout.splitlines()) if text}


@pytest.fixture(scope="module")
def provisioned(engine: DockerEngine, app_images: dict[str, str],
                tmp_path_factory) -> Iterator[Provisioned]:
    prefix = f"e2ehost{secrets.token_hex(3)}"
    network = f"{prefix}-net"
    # The stand-in's own network must not overlap the platform's inside it (172.30.0.0/24 and
    # 172.30.1.0/27 by default): the stand-in would route its SSH replies into a Docker bridge.
    platform = stack_config("prod")["aiia:platform"]
    platform_subnets = [ipaddress.ip_network(platform.get(key, getattr(PlatformSettings, key)))
                        for key in ("network_subnet", "status_subnet")]
    subnet = free_subnet(engine)
    while any(ipaddress.ip_network(subnet).overlaps(inside) for inside in platform_subnets):
        subnet = free_subnet(engine)
    gateway = str(next(ipaddress.ip_network(subnet).hosts()))
    docker("network", "create", "--subnet", subnet, "--gateway", gateway, network)
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
        # A smaller swap file than prod's (it is this machine's swap while the test runs),
        # still enough for a release's peak (host.memory_mb 512 + 256 MB).
        host["swap_mb"] = SWAP_MB
        # This machine reaches the stand-in through Docker's port forward, from its
        # network's gateway: the operator's address, never banned (another container's is).
        host["provision"] = {"admin_ssh_keys": [public], "swap_file": f"{SWAP_DIR}/swapfile",
                             "fail2ban": {"ban_time_s": BAN_TIME_S, "find_time_s": 60,
                                          "ssh_max_retry": SSH_MAX_RETRY,
                                          "status_auth_max_retry": STATUS_AUTH_MAX_RETRY,
                                          "abuse_max_retry": ABUSE_MAX_RETRY,
                                          "ignore_addresses": [gateway]}}
        platform = config["aiia:platform"]
        platform["backup"]["recipients"] = [TEST_BACKUP_KEY]
        platform["tls"] = {"mode": "self_signed"}  # no ACME CA is reachable from here
        for release in RELEASES:
            tag_image(engine, "aiia-e2e-app:build", f"{APP_REPOSITORY}:{release}")
        config["aiia:releases"]["prod"] = {"image": APP_REPOSITORY, "release": RELEASES[0],
                                           "watch_seconds": 12}
        secrets_ = made_up_secrets(config)
        run = run_program("prod", config=config, secrets=secrets_)
        log: list[str] = []
        replay = Replay(engine, image_map(config), log=log.append, ssh_identity=identity,
                        pull=registry(vps))
        replay.apply(run)
        yield Provisioned(vps, config, secrets_, identity, replay, run, log)
    finally:
        if not os.environ.get("AIIA_KEEP_VPS"):  # kept for a look inside when debugging
            vps.stop()
            docker("network", "rm", network, check=False)
        # The stand-in's own engine may leave a cgroup hierarchy without a mount on this
        # machine (a sandboxed kernel's quirk), which breaks the engine's stats: mended.
        subprocess.run(["bash", str(REPO / "tests" / "engine" / "ensure-dockerd.sh")],
                       capture_output=True, text=True, timeout=120, check=True)


def test_prod_serves_the_reference_app_through_nginx(provisioned):
    health = provisioned.get("prod", "/healthz/")
    assert health.status == 200, health
    assert json.loads(health.body)["status"] == "ok", health.body
    assert provisioned.get("prod", "/").headers["x-release"] == RELEASES[0]
    assert_websocket_echoes(provisioned.https_port, provisioned.domain("prod"), "over the VPS")
    # Every container of the stack runs on the stand-in's engine.
    names = set(provisioned.vps.sh("docker ps --format '{{.Names}}'").stdout.split())
    assert {"aiia-nginx", "aiia-postgres", "aiia-pgbouncer", "aiia-redis"} <= names, names
    assert any(name.startswith(f"aiia-app-prod-{RELEASES[0]}-") for name in names), names


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
    # The Docker provider's system ssh (its ssh_opts' KnownHostsCommand) refuses it too,
    # before any Docker step, once no shared connection is left: a live ControlMaster was
    # authenticated against the pinned key when it was opened, and is reused as it is.
    (docker_provider,) = run.of_type(DOCKER_PROVIDER)
    shared = json.loads(docker_provider.plain["ssh_opts"])
    subprocess.run(["ssh", *shared, "-O", "exit", "-l", "deploy", "-p",
                    str(provisioned.vps.port), "--", "127.0.0.1"], capture_output=True,
                   timeout=30, check=False)
    with pytest.raises(ReplayError, match="(?s)Error pinging Docker server.*Host key verification "
                                          "failed"):
        replay.apply(ProgramRun(resources=[docker_provider], exports={}))


def test_ufw_shows_exactly_the_policy_and_a_port_not_allowed_is_unreachable(provisioned):
    vps = provisioned.vps
    status = vps.sh("ufw status verbose").stdout
    assert "Status: active" in status
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in status
    rules = [(to.strip(), source.split("#")[0].strip()) for to, _, source in
             (line.partition("ALLOW IN") for line in status.splitlines())
             if source and "(v6)" not in to]
    platform = provisioned.settings().platform
    assert rules == [(f"{vps.port}/tcp", "Anywhere"), ("80/tcp", "Anywhere"),
                     ("443/tcp", "Anywhere"),
                     # nginx (a container) alone reaches the dashboard, on the status
                     # network's gateway.
                     (f"{platform.status_gateway} {platform.dashboard.port}/tcp",
                      platform.nginx_status_address)], status
    # A listener the policy does not allow, and one it does (sshd), from another machine.
    vps.sh("nohup python3 -m http.server 8080 >/dev/null 2>&1 & sleep 1 && "
           "exec 3<>/dev/tcp/127.0.0.1/8080")
    assert connects(provisioned, vps.address, vps.port)
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
    # A container published on 0.0.0.0:8081 by mistake (a listener from the app's image,
    # which has python3); nginx's 443 is the program's own.
    vps.sh(f"docker run -d --name published-8081 -p 8081:8000 --entrypoint python3 "
           f"{APP_REPOSITORY}:{RELEASES[0]} -m http.server 8000 >/dev/null")
    deadline = time.monotonic() + 30
    # The container serves (seen from the VPS itself, which DOCKER-USER does not filter).
    while vps.sh("exec 3<>/dev/tcp/127.0.0.1/8081", check=False).returncode != 0:
        assert time.monotonic() < deadline, vps.sh("docker logs published-8081").stdout
        time.sleep(0.5)
    assert connects(provisioned, vps.address, 443)
    assert not connects(provisioned, vps.address, 8081)
    vps.sh("docker rm -f published-8081 >/dev/null")


def test_failed_ssh_logins_get_the_client_banned_and_the_ban_lifts(provisioned):
    vps = provisioned.vps
    address = vps.address
    attacker, _ = keypair(Path(provisioned.identity.parent), f"attacker-{secrets.token_hex(2)}")
    client = f"{vps.name}-attacker"
    docker("run", "-d", "--name", client, "--network", vps.network, VPS_IMAGE, "sleep", "600")
    try:
        docker("cp", str(attacker), f"{client}:/tmp/key")
        # `timeout`: a ban inserted while a connection waits for sshd's banner leaves it
        # hanging (ConnectTimeout covers the TCP connect only).
        attempt = (f"timeout 15 ssh -i /tmp/key -o BatchMode=yes -o StrictHostKeyChecking=no "
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
    # Time sync is installed and enabled (a container is skipped by its own condition,
    # ConditionVirtualization=!container; a VPS runs it).
    assert vps.sh("systemctl is-enabled systemd-timesyncd").stdout.strip() == "enabled"
    # journald took the cap: it says so when it (re)opens the system journal.
    journal_max = provisioned.config["aiia:host"]["provision"].get("journal_max_mb", 200)
    said = vps.sh("journalctl -b -u systemd-journald --no-pager -o cat").stdout
    assert f"max {journal_max:.1f}M" in said, said[-2000:]
    vps.sh("systemctl restart aiia-docker-firewall && logrotate /etc/logrotate.d/aiia && "
           "unattended-upgrade --dry-run >/dev/null 2>&1 || unattended-upgrade --dry-run")
    docker_info = vps.sh("docker info --format '{{json .}}'").stdout
    assert json.loads(docker_info)["LiveRestoreEnabled"] is True
    # daemon.json survives a restart (a directive given twice would stop dockerd), and the
    # engine listens on no TCP port.
    vps.sh("systemctl restart docker && systemctl is-active docker")
    assert "dockerd" not in vps.sh("ss -ltnp").stdout


def test_the_swap_file_is_active_with_the_configured_size(provisioned):
    shown = provisioned.vps.sh("swapon --show=NAME,TYPE,SIZE --bytes --noheadings").stdout
    # The kernel counts the pages after the swap header's one.
    page = int(provisioned.vps.sh("getconf PAGESIZE").stdout)
    assert f"{SWAP_DIR}/swapfile file {SWAP_MB * 2**20 - page}" in " ".join(shown.split()), \
        shown
    assert f"{SWAP_DIR}/swapfile none swap sw 0 0" in provisioned.vps.sh("cat /etc/fstab").stdout


def test_every_cron_entry_runs_by_hand_and_logs_its_run(provisioned):
    """Each job of /etc/cron.d/aiia-* run once as cron would (root, its SHELL and PATH): the
    daily backup, then the monthly restore drill of that backup."""
    vps = provisioned.vps
    prefix = provisioned.config["aiia:prefix"]
    entries = vps.sh(f"ls /etc/cron.d/{prefix}-*").stdout.split()
    # No renewal with self-signed certificates (tests/e2e/test_tls.py runs it against a CA).
    assert provisioned.settings().platform.tls.mode == "self_signed"
    assert entries == [f"/etc/cron.d/{prefix}-backup"]
    commands = []
    for entry in entries:
        for line in vps.sh(f"cat {entry}").stdout.splitlines():
            fields = line.split(None, 6)
            if not line.strip() or line.startswith("#") or "=" in fields[0]:
                continue
            assert fields[5] == "root", line
            commands.append(fields[6])
    assert len(commands) == 2, commands  # the backup, then the drill
    for command in commands:
        log = command.split(">>")[1].split()[0]
        before = int(vps.sh(f"stat -c %s {log} 2>/dev/null || echo 0").stdout)
        ran = vps.sh(f"cd / && env -i SHELL=/bin/bash PATH=/usr/local/sbin:/usr/local/bin:"
                     f"/usr/sbin:/usr/bin:/sbin:/bin bash -c {shlex.quote(command)}",
                     check=False, timeout=600)
        tail = vps.sh(f"tail -c 1500 {log}").stdout
        assert ran.returncode == 0, f"{command}\n{tail}"
        assert int(vps.sh(f"stat -c %s {log}").stdout) > before, f"{command} logged nothing"
    records = vps.sh(f"cat {provisioned.config['aiia:host']['root_dir']}/state/"
                     "restore-tests.jsonl").stdout.splitlines()
    assert json.loads(records[-1])["outcome"] == "succeeded", records[-1]


def test_sysctls_a_container_cannot_write_are_reported_not_fatal(provisioned):
    applied = provisioned.replay.state
    (sysctl,) = [a for a in applied.values() if a.name == "host-sysctl-install"]
    assert "read-only here" in sysctl.real["stdout"], sysctl.real["stdout"]


def test_a_second_run_changes_nothing_and_restarts_nothing(provisioned):
    vps = provisioned.vps
    pids = {unit: vps.sh(f"systemctl show -p MainPID --value {unit}").stdout.strip()
            for unit in ("ssh", "docker", "fail2ban", "aiia-dashboard")}
    containers = vps.sh("docker ps -q --no-trunc | sort").stdout
    before = len(provisioned.log)
    provisioned.up()  # the whole prod stack again, unchanged config
    assert provisioned.log[before:] == []  # no step: every resource unchanged
    assert {unit: vps.sh(f"systemctl show -p MainPID --value {unit}").stdout.strip()
            for unit in pids} == pids
    assert vps.sh("docker ps -q --no-trunc | sort").stdout == containers


def test_the_dashboards_account_has_its_fixed_uid_apart_from_every_data_owner(provisioned):
    """Review M2: on Debian 12 `useradd --system` took 999, PostgreSQL's and Redis's uid."""
    vps = provisioned.vps
    platform = provisioned.settings().platform
    uid = vps.sh("id -u aiia-dashboard").stdout.strip()
    assert uid == vps.sh("id -g aiia-dashboard").stdout.strip() == str(platform.dashboard.uid)
    root = provisioned.config["aiia:host"]["root_dir"]
    owners = set(vps.sh(f"find {root}/postgres {root}/pgbouncer {root}/redis {root}/secrets "
                        "-printf '%U\\n%G\\n'").stdout.split())
    assert owners and uid not in owners, owners
    assert "999" in owners  # PostgreSQL's files are there, and not the dashboard's


def test_the_dashboards_port_answers_nginx_alone(provisioned):
    """Review M7: the server listens on the status network's gateway and admits nginx's
    address there; a release (on its own network) reaches neither it nor PostgreSQL."""
    vps = provisioned.vps
    platform = provisioned.settings().platform
    target = f"{platform.status_gateway} {platform.dashboard.port}"
    nginx = vps.sh(f"docker exec aiia-nginx curl -s -o /dev/null -w '%{{http_code}}' "
                   f"http://{platform.status_gateway}:{platform.dashboard.port}/").stdout
    assert nginx == "401", nginx  # it answers nginx (and asks for credentials)
    (release,) = [name for name in vps.sh("docker ps --format '{{.Names}}'").stdout.split()
                  if name.startswith("aiia-app-prod-")]
    from_release = vps.sh(f"docker exec {release} python3 -c "
                          f"{shlex.quote(REACH_FROM_INSIDE)} {target}").stdout.strip()
    assert from_release == "closed", from_release
    postgres = vps.sh("docker inspect -f '{{range .NetworkSettings.Networks}}"
                      "{{.IPAddress}}{{end}}' aiia-postgres").stdout.strip()
    assert vps.sh(f"docker exec {release} python3 -c {shlex.quote(REACH_FROM_INSIDE)} "
                  f"{postgres} 5432").stdout.strip() == "closed"


REACH_FROM_INSIDE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("open")
except OSError:
    print("closed")
"""


def attacker(provisioned, suffix: str) -> tuple[str, str]:
    """Another machine on the stand-in's network: (container name, its address)."""
    name = f"{provisioned.vps.name}-{suffix}"
    docker("run", "-d", "--name", name, "--network", provisioned.vps.network, VPS_IMAGE,
           "sleep", "600")
    address = json.loads(docker("inspect", name).stdout)[0]["NetworkSettings"]["Networks"][
        provisioned.vps.network]["IPAddress"]
    return name, address


STATUS_ATTEMPT = """
import base64, socket, ssl, sys
context = ssl.create_default_context()
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
for attempt in range(int(sys.argv[3])):
    raw = socket.create_connection((sys.argv[1], 443), timeout=5)
    with context.wrap_socket(raw, server_hostname=sys.argv[2]) as tls:
        wrong = base64.b64encode(b"admin:wrong-%d" % attempt).decode()
        tls.sendall(f"GET / HTTP/1.1\\r\\nHost: {sys.argv[2]}\\r\\nAuthorization: Basic "
                    f"{wrong}\\r\\nConnection: close\\r\\n\\r\\n".encode())
        print(tls.recv(64).split(b"\\r\\n")[0].decode())
"""


def test_failed_dashboard_logins_get_the_client_banned_at_nginxs_published_port(provisioned):
    vps = provisioned.vps
    status_domain = provisioned.config["aiia:platform"]["status_domain"]
    client, client_address = attacker(provisioned, "status-attacker")
    try:
        tried = docker("exec", client, "python3", "-c", STATUS_ATTEMPT, vps.address,
                       status_domain, str(STATUS_AUTH_MAX_RETRY + 1), timeout=60, check=False)
        assert tried.returncode == 0, tried.stdout + tried.stderr
        assert tried.stdout.split("\n")[0].endswith("401 Unauthorized"), tried.stdout
        assert_banned_at_nginxs_ports(provisioned, "aiia-nginx-status-auth", client,
                                      client_address)
    finally:
        docker("rm", "-f", client, check=False)


UNKNOWN_HOST_ATTEMPT = """
import socket, sys
for attempt in range(int(sys.argv[2])):
    with socket.create_connection((sys.argv[1], 80), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\\r\\nHost: scanner.invalid\\r\\nConnection: close\\r\\n\\r\\n")
        print(len(raw.recv(64)))
"""


def test_requests_for_unknown_hosts_get_the_client_banned_at_nginxs_published_port(
        provisioned):
    vps = provisioned.vps
    client, client_address = attacker(provisioned, "scanner")
    try:
        tried = docker("exec", client, "python3", "-c", UNKNOWN_HOST_ATTEMPT, vps.address,
                       str(ABUSE_MAX_RETRY + 1), timeout=60, check=False)
        assert tried.returncode == 0, tried.stdout + tried.stderr
        assert set(tried.stdout.split()) == {"0"}, tried.stdout  # 444: closed, no answer
        assert_banned_at_nginxs_ports(provisioned, "aiia-nginx-abuse", client, client_address)
    finally:
        docker("rm", "-f", client, check=False)


def assert_banned_at_nginxs_ports(provisioned, jail: str, client: str, address: str) -> None:
    """`address` is banned by `jail` where Docker's forwarded traffic passes: nginx's 80 and
    443 no longer answer it, everyone else (this machine, through the published port) is
    still served, and an unban lets it in again."""
    vps = provisioned.vps
    deadline = time.monotonic() + 60  # the polling backend reads the log every second
    while address not in vps.sh(f"fail2ban-client status {jail}").stdout:
        assert time.monotonic() < deadline, vps.sh(f"fail2ban-client status {jail}").stdout
        time.sleep(0.5)
    assert not connects_from(client, vps.address, 443)
    assert not connects_from(client, vps.address, 80)
    assert provisioned.get("prod", "/healthz/").status == 200
    vps.sh(f"fail2ban-client set {jail} unbanip {address}")
    assert connects_from(client, vps.address, 443)


def connects_from(container: str, address: str, port: int) -> bool:
    result = docker("exec", container, "timeout", "5", "bash", "-c",
                    f"exec 3<>/dev/tcp/{address}/{port}", check=False, timeout=30)
    return result.returncode == 0


def test_an_access_log_past_50_mb_is_rotated_at_the_next_run_with_no_line_lost(provisioned):
    vps = provisioned.vps
    logs = f"{provisioned.config['aiia:host']['root_dir']}/logs/nginx"
    cap_mb = 50  # host.provision.log_rotate_mb's default
    # nginx's access log grows past the cap between two hourly runs.
    vps.sh(f"yes '{{\"filler\":\"{'x' * 200}\"}}' | head -c {(cap_mb + 1) * 2**20} "
           f">> {logs}/access.log")
    # Marked requests (the log keeps the path, not the query): the app answers 404.
    mark = secrets.token_hex(4)
    before = [provisioned.get("prod", f"/{mark}-before-{n}").status for n in range(40)]
    # What logrotate.timer starts every hour (the program's drop-in).
    vps.sh("systemctl start logrotate.service")
    after = [provisioned.get("prod", f"/{mark}-after-{n}").status for n in range(40)]
    assert set(before) == set(after) == {404}
    files = vps.sh(f"ls -1 {logs}").stdout.split()
    rotated = [name for name in files if name.startswith("access.log-")]
    assert rotated, files
    size = int(vps.sh(f"stat -c %s {logs}/access.log").stdout)
    assert size < 2**20, f"access.log still {size} bytes after the run"
    # Every request's line is in the new file or the rotated one (delaycompress), once.
    lines = vps.sh(f"cat {logs}/access.log {logs}/access.log-* | grep -o '{mark}-[a-z]*-[0-9]*'"
                   ).stdout.split()
    expected = [f"{mark}-before-{n}" for n in range(40)] + [f"{mark}-after-{n}" for n in range(40)]
    assert sorted(lines) == sorted(expected)
    # And nginx writes to the new file.
    assert f"{mark}-after-39" in vps.sh(f"cat {logs}/access.log").stdout
    # nginx's master (no CAP_DAC_OVERRIDE) can still open the logs its reopen handed to its
    # workers: the next config check and graceful reload, a release's, succeed.
    vps.sh(reload_command(f"{provisioned.config['aiia:prefix']}-nginx"))


def test_a_release_and_a_rollback_of_prod_on_the_vps_drop_no_request(provisioned):
    # A release, then the rollback: the previous value put back.
    for previous, release in ((RELEASES[0], RELEASES[1]), (RELEASES[1], RELEASES[0])):
        socket = WebSocket(provisioned.https_port, provisioned.domain("prod"), "/ws/echo/")
        assert socket.status == 101
        strict = strict_clients(provisioned, seconds=SECONDS)
        load, error = under_load(
            provisioned, lambda release=release: provisioned.up(
                provisioned.with_release(release)),
            rate=RATE, total=RATE * SECONDS, strict=strict)
        assert error is None, error
        summary = load.summary()
        print(f"{previous} → {release} on the VPS:", summary.line())
        assert summary.failures == 0 and summary.retries == 0, summary.line()
        assert_no_client_noticed(provisioned, strict)
        assert [seen.release for seen in summary.releases] == [previous, release]
        assert provisioned.get("prod", "/").headers["x-release"] == release
        # The WebSocket opened before the switch was not reset: it still echoes, or its
        # release closed it with a close frame when it drained.
        try:
            socket.send_text("after the switch")
            opcode, payload = socket.receive()
            assert (opcode, payload) == (1, b"after the switch") or opcode == 8
        finally:
            socket.close()
        containers = provisioned.vps.sh("docker ps --format '{{.Names}}'").stdout.split()
        assert not [name for name in containers if name.startswith(f"aiia-app-prod-{previous}-")]


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
