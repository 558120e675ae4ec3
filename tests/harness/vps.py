"""Test scaffolding: the VPS stand-in (tests/images/vps-13, vps-12) as the `prod` stack reaches
it, for the e2e modules that provision one (tests/e2e/test_vps.py on Debian 13,
tests/e2e/test_vps_debian12.py on Debian 12).

The stand-in is a Debian container running systemd as PID 1 with sshd, reached only through
SSH on a 127.0.0.1 port; its HTTPS port is published on another 127.0.0.1 port, as a VPS's
443 is on the internet. It starts as a provider hands a VPS over: root, and the deploy user
made by the README's first bootstrap step. `prod_on_vps` runs the `prod` program (its real
stack file, with the stand-in's address, host key, a test operator key, self-signed TLS since
no CA is reachable, and the reference app's releases) under mocks and replays it
(tests/harness/replay/) in one `pulumi up`:
- its `command:remote:Command`s over SSH as the deploy user through `sudo -n`;
- its Docker resources through the provider's `ssh://deploy@127.0.0.1:<port>`, i.e. the
  system `ssh` with the program's `ssh_opts` running `docker system dial-stdio` on the
  stand-in, against the stand-in's own engine: the release's docker.io, installed there by the
  program's packages step, with its data on a volume. An engine inside the stand-in (not
  this machine's reached through a socket) so that bind mounts name the stand-in's files,
  and its firewall, DOCKER-USER rules and fail2ban bans are the ones its containers'
  traffic meets. The images come from this machine's engine (`docker save | docker load`,
  the registry's stand-in) in the RemoteImage steps.

A swap file cannot be made on the container's own filesystem (overlayfs): the stand-in's
`host.provision.swap_file` is on a directory of this machine's disk bind-mounted into it,
where the program makes and activates it (swap is the kernel's, so this machine swaps to
it until the stand-in is stopped, which switches it off first). sysctls cannot be written
(/proc/sys is read-only in a container) and are reported as such. What else differs from a
VPS: tests/images/CONTRACT.md#vps.
"""

from __future__ import annotations

import contextlib
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

from components.names import database_name
from components.settings import Settings, parse_settings
from components.settings.platform import PlatformSettings
from tests.harness.client import Response, WebSocket, https_request
from tests.harness.engine import DockerEngine, gate_checks
from tests.harness.local_stack import free_port, free_subnet, image_map, tag_image
from tests.harness.program import (
    TEST_BACKUP_KEY,
    ProgramRun,
    made_up_secrets,
    run_program,
    stack_config,
)
from tests.harness.replay import Replay
from tests.harness.traffic import assert_no_client_noticed, strict_clients, under_load

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
    """The stand-in: a container of `image` that boots like a fresh Debian VPS."""

    def __init__(self, name: str, network: str, image: str):
        self.name, self.network, self.image = name, network, image
        self.port = free_port()
        self.https_port = free_port()  # the VPS's 443, as the internet reaches it
        self.swap_dir = Path(f"/var/tmp/{name}-swap")  # a disk filesystem, not tmpfs
        # Named after the stand-in: the kernel's swap list (what `swapon --show` reads, in
        # every container alike) is this machine's, and another stand-in running at the same
        # time would otherwise show a swap file of the same path as active in this one.
        self.swap_file = f"{SWAP_DIR}/{name}.swap"

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
               "-p", f"127.0.0.1:{self.https_port}:443", "--memory", "1g", self.image)
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
        local = self.swap_dir / Path(self.swap_file).name
        if local.exists():  # refused harmlessly when not in use
            subprocess.run(["swapoff", str(local)], capture_output=True,
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


@contextlib.contextmanager
def prod_on_vps(engine: DockerEngine, image: str, keys: Path) -> Iterator[Provisioned]:
    """The `prod` stack provisioned on a new stand-in of `image` (`pulumi up` replayed once),
    with the operator's key pair made in `keys`; the stand-in, its network and its swap are
    removed afterwards (kept when AIIA_KEEP_VPS is set, for a look inside)."""
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
    vps = Vps(f"{prefix}-vps", network, image)
    try:
        vps.start()
        identity, public = keypair(keys, "operator")
        vps.bootstrap("deploy", public)
        config = copy.deepcopy(stack_config("prod", pin_test_identity=False))
        host = config["aiia:host"]
        host["ssh"].update(host="127.0.0.1", port=vps.port, host_key=vps.host_key)
        # The stand-in's release (aiia-standin/vps:13 → debian-13), as its operator says it.
        host["system"] = f"debian-{image.rpartition(':')[2]}"
        host["docker_host"] = f"ssh://deploy@127.0.0.1:{vps.port}"
        # A smaller swap file than prod's (it is this machine's swap while the test runs),
        # still enough for a release's peak (host.memory_mb 512 + 256 MB).
        host["swap_mb"] = SWAP_MB
        # This machine reaches the stand-in through Docker's port forward, from its
        # network's gateway: the operator's address, never banned (another container's is).
        host["provision"] = {"admin_ssh_keys": [public], "swap_file": vps.swap_file,
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



def assert_a_release_drops_no_request(provisioned: Provisioned, previous: str,
                                      release: str) -> None:
    """`pulumi up` from `previous` to `release` under the strict clients' load through nginx:
    no request fails or is retried, no client notices, the release serves, the WebSocket
    opened before the switch is not reset, and the previous release's container is gone."""
    socket = WebSocket(provisioned.https_port, provisioned.domain("prod"), "/ws/echo/")
    assert socket.status == 101
    strict = strict_clients(provisioned, seconds=SECONDS)
    load, error = under_load(
        provisioned, lambda: provisioned.up(provisioned.with_release(release)),
        rate=RATE, total=RATE * SECONDS, strict=strict)
    assert error is None, error
    summary = load.summary()
    print(f"{previous} → {release} on the VPS ({provisioned.vps.image}):", summary.line())
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


def health_gates(provisioned: Provisioned) -> dict[str, dict]:
    """`docker inspect` of each container on the stand-in at the moment its health gate
    (`wait=True`) passed, by container name, over every `up` so far."""
    gates: dict[str, dict] = {}
    for engine in provisioned.replay.engines.values():
        gates.update(engine.gates)
    return gates


def check_gaps(details: dict) -> list[float]:
    """How long after the container's start, or after the previous check ended, each check
    that led to its gate began (seconds, the engine's clock). Docker's health monitor
    waits its interval from the start and after each check (moby `daemon/health.go`
    `monitor`), the start interval instead while the container is starting."""
    started, checks = gate_checks(details)
    if len(checks) >= 5:  # the oldest were dropped: the first kept one has no known "before"
        pairs = zip(checks[1:], checks[:-1], strict=True)
        return [start - before for (start, _, _), (_, before, _) in pairs]
    befores = [started] + [end for _, end, _ in checks[:-1]]
    return [start - before for (start, _, _), before in zip(checks, befores, strict=True)]
