"""The dashboard's systemd units for real: a Debian container running systemd as PID 1
(the stand-in for the VPS), the units rendered from templates/dashboard/, Debian's python3
and python3-psutil, the host's Docker socket mounted where the VPS has it.

Shows that the sandboxing does not break the program (seccomp filter, no capabilities,
MemoryDenyWriteExecute, read-only system), that the timer collects every minute, that the
files are shared through the setgid state dir, and that the server refuses to run as root
or with access to the Docker socket even when its unit is changed to allow it. The account
is first made as the program did before review M2 (`useradd --system`, a uid below 1000),
then the program's own prerequisites step runs, as the first `pulumi up` with the fix does.

Review L2: the collector runs as its own account and reaches Docker only through the
socket-activated proxy, which collects a real labelled container (list, inspect, stats,
logs) and refuses, as that account, a POST and an archive read that would change or leak
something. Its state dir is first filled by a root collector, as before the fix.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest

from components.host.templates import render as render_template
from components.platform.dashboard import COLLECT_EVERY_S, COLLECTOR_PRIVATE_DIRS, PRIVATE_DIRS
from components.platform.docker_proxy import DOCKER_PROXY_IDLE_EXIT_S, DOCKER_PROXY_SOCKET
from components.settings.platform import DashboardSettings
from dashboard.auth import hash_password
from tests.harness.dashboard_status import REPO_ROOT
from tests.harness.program import run_program
from tests.rendered.conftest import unwrap_sudo

pytestmark = pytest.mark.e2e
BASE = "aiia-standin/debian:bookworm"  # tests/images/build-standins.sh
IMAGE = "aiia-e2e-dashboard-systemd:test"
DOCKERFILE = f"""FROM {BASE}
RUN apt-get update \\
 && apt-get install -y --no-install-recommends systemd systemd-sysv python3 python3-psutil \\
 && rm -rf /var/lib/apt/lists/*
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""
UNITS = ("aiia-dashboard.service", "aiia-dashboard-collect.service", "aiia-dashboard-collect.timer",
         "aiia-dashboard-docker-proxy.socket", "aiia-dashboard-docker-proxy.service")
VARIABLES = {
    "python": "/usr/bin/python3",
    "install_dir": "/opt/aiia",
    "config_path": "/srv/aiia/dashboard/config.json",
    "state_dir": "/srv/aiia/state/dashboard",
    "root_dir": "/srv/aiia",
    # The program's defaults: the units run under the limits a VPS gets.
    "server_memory_mb": DashboardSettings().memory_mb,
    "collector_memory_mb": DashboardSettings().collector_memory_mb,
    "inaccessible_paths": [f"/srv/aiia/{directory}" for directory in PRIVATE_DIRS],
    "collector_inaccessible_paths": [f"/srv/aiia/{directory}"
                                     for directory in COLLECTOR_PRIVATE_DIRS],
    "docker_proxy_socket": DOCKER_PROXY_SOCKET["vps"],
    "docker_proxy_memory_mb": DashboardSettings().docker_proxy_memory_mb,
    "docker_proxy_idle_exit_s": DOCKER_PROXY_IDLE_EXIT_S,
    # The test's requests come from inside the machine (on a VPS: nginx's address alone).
    "allowed_clients": ["localhost"],
    "notifier_memory_mb": DashboardSettings().notifier_memory_mb,
    "secrets_path": "/srv/aiia/dashboard/notify-secrets.json",
    "notify_dir": "/srv/aiia/state/notify",
    "requests_dir": "/srv/aiia/state/notify-requests",
}
FIXED_UID = DashboardSettings().uid
COLLECTOR_UID = DashboardSettings().collector_uid
# Files of the apps' that their modes would let anyone read: uploads and logs (PII).
READABLE_APP_FILES = ("/srv/aiia/media/prod/upload.txt", "/srv/aiia/logs/prod/django.log")
DOCKER_SOCKET = "/var/run/docker.sock"
# A container on the host's engine for the collector to find through the proxy: its
# service label is this run's own (other work may share the engine).
PROBE_LABEL = f"l2probe-{secrets.token_hex(3)}"
PROBE_LINE = f"probe says {secrets.token_hex(4)}"
# A raw HTTP request over a unix socket, run as whichever account the test says.
RAW_REQUEST = """
import base64, socket, sys
client = socket.socket(socket.AF_UNIX)
client.settimeout(15)
client.connect(sys.argv[1])
client.sendall(base64.b64decode(sys.argv[2]))
answer = b""
while chunk := client.recv(65536):
    answer += chunk
sys.stdout.write(answer.decode("latin-1"))
"""


class Host:
    def __init__(self, name: str) -> None:
        self.name = name
        self.previous_uid = ""  # the uid useradd --system gave the account before the fix
        self.probe_id = ""  # the labelled container the collector finds through the proxy

    def sh(self, script: str, check: bool = True, stdin: str | None = None) -> str:
        result = subprocess.run(
            ["docker", "exec", "-i", self.name, "sh", "-c", script],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode:
            raise AssertionError(f"{script!r} failed: {result.stdout}{result.stderr}")
        return result.stdout.strip()

    def bash(self, script: str, check: bool = True, stdin: str | None = None
             ) -> subprocess.CompletedProcess:
        """A script of the program's (bash, as pulumi-command runs it on a VPS)."""
        result = subprocess.run(["docker", "exec", "-i", self.name, "bash", "-c", script],
                                input=stdin, capture_output=True, text=True, timeout=120)
        if check and result.returncode:
            raise AssertionError(f"failed: {result.stdout}{result.stderr}")
        return result

    def write(self, path: str, content: str) -> None:
        self.sh(f"cat > {path}", stdin=content)

    def get(self, path: str, authorization: str | None) -> tuple[int, str]:
        headers = {"Authorization": authorization} if authorization else {}
        script = (
            "import http.client, sys\n"
            "c = http.client.HTTPConnection('127.0.0.1', 9100, timeout=5)\n"
            f"c.request('GET', {path!r}, headers={headers!r})\n"
            "r = c.getresponse(); print(r.status); sys.stdout.write(r.read().decode())\n"
        )
        deadline = time.monotonic() + 20  # "active" comes before the socket is listening
        while True:
            result = subprocess.run(
                ["docker", "exec", "-i", self.name, "python3", "-"],
                input=script,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert result.returncode == 0, result.stderr
        status, _, body = result.stdout.partition("\n")
        return int(status), body

    def request_as(self, account: str, socket_path: str, raw: bytes
                   ) -> subprocess.CompletedProcess:
        """`raw` sent to `socket_path` by a process of `account` (its own groups only)."""
        encoded = base64.b64encode(raw).decode()
        return subprocess.run(
            ["docker", "exec", self.name, "setpriv", f"--reuid={account}",
             f"--regid={account}", "--init-groups", "python3", "/usr/local/bin/raw-request",
             socket_path, encoded], capture_output=True, text=True, timeout=60)

    def wait_active(self, unit: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.sh(f"systemctl is-active {unit}", check=False) != "active":
            if time.monotonic() > deadline:
                raise AssertionError(self.sh(f"systemctl status {unit} --no-pager", check=False))
            time.sleep(0.5)


def render(template: str, **variables) -> str:
    """As the program renders it (components/host/templates.py), so the units run here are
    the bytes a VPS gets."""
    return render_template(template, **variables)


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    if os.geteuid() != 0:
        pytest.skip("runs a systemd container (needs root)")
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True).returncode:
        pytest.fail(f"{BASE} missing; build it with tests/images/build-standins.sh")
    subprocess.run(
        ["docker", "build", "-q", "-t", IMAGE, "-"],
        input=DOCKERFILE,
        text=True,
        check=True,
        capture_output=True,
        timeout=600,
    )
    name = f"aiia-dashtest-systemd-{secrets.token_hex(3)}"
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--cap-add",
            "SYS_ADMIN",
            "--cap-add",
            "NET_ADMIN",
            # A VPS's systemd has it (Docker's default set has not): the collector's one
            # capability, reading files of others (review L2: it is no longer root).
            "--cap-add",
            "DAC_READ_SEARCH",
            "--security-opt",
            "seccomp=unconfined",
            "--cgroupns=host",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-v",
            f"{DOCKER_SOCKET}:/run/docker.sock",
            IMAGE,
        ],
        check=True,
        capture_output=True,
    )
    machine = Host(name)
    probe = f"aiia-dashtest-{PROBE_LABEL}"
    subprocess.run(["docker", "run", "-d", "--name", probe, "--label",
                    f"aiia.service={PROBE_LABEL}", "--memory", "32m", BASE, "sh", "-c",
                    f"echo '{PROBE_LINE}'; exec sleep 3600"], check=True, capture_output=True)
    machine.probe_id = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", probe],
                                      capture_output=True, text=True, check=True).stdout.strip()
    try:
        deadline = time.monotonic() + 60
        while machine.sh("systemctl is-system-running", check=False) not in ("running", "degraded"):
            assert time.monotonic() < deadline, "systemd did not boot"
            time.sleep(0.5)
        install(machine)
        yield machine
    finally:
        subprocess.run(["docker", "rm", "-f", name, probe], capture_output=True, timeout=60)


def program_script(resource: str) -> str:
    """A host script of the prod program (its root is /srv/aiia, as here), as root runs it."""
    return unwrap_sudo(run_program("prod").named(resource).plain["create"])


def install(machine: Host) -> None:
    """What components/platform/dashboard.py does on an SSH host, done by hand but for the
    account, which the program's own step moves from where the previous program left it."""
    machine.sh(
        "groupadd --system aiia-dashboard && useradd --system -g aiia-dashboard -M "
        "-s /usr/sbin/nologin aiia-dashboard && mkdir -p /opt/aiia /srv/aiia/dashboard"
    )
    machine.previous_uid = machine.sh("id -u aiia-dashboard")
    for path in READABLE_APP_FILES:
        machine.sh(f"install -D -m 0644 -o 10001 -g 10001 /dev/null {path} && "
                   f"echo private > {path}")
    archive = subprocess.run(
        ["tar", "--exclude=__pycache__", "-cf", "-", "dashboard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(
        ["docker", "exec", "-i", machine.name, "tar", "-xf", "-", "-C", "/opt/aiia"],
        input=archive,
        check=True,
    )
    for unit in UNITS:
        machine.write(f"/etc/systemd/system/{unit}", render(f"dashboard/{unit}.j2", **VARIABLES))
    machine.write(
        VARIABLES["config_path"],
        render(
            "dashboard/config.json.j2",
            listen_host="127.0.0.1",
            listen_port=9100,
            state_dir=VARIABLES["state_dir"],
            root_dir="/srv/aiia",
            environments=[
                {
                    "name": "prod",
                    "domain": "prod.example.com",
                    "health_url": "http://127.0.0.1:9/healthz/",
                    "host_header": "prod.example.com",
                }
            ],
            services=[
                {"name": "anything", "container_label": "no-such-service", "memory_limit_mb": 32},
                {"name": "probe", "container_label": PROBE_LABEL, "memory_limit_mb": 32},
            ],
            certificates=[],
            access_log="/srv/aiia/logs/nginx/access.log",
            releases_file="/srv/aiia/state/releases.jsonl",
            backups_file="/srv/aiia/state/backups.jsonl",
            restore_tests_file="/srv/aiia/state/restore-tests.jsonl",
            certbot_state_file=None,  # tls.mode self_signed: nothing to issue
            log_sources=[{"service": "probe", "container_label": PROBE_LABEL}],
            docker_socket=DOCKER_PROXY_SOCKET["vps"],
            collect_every_s=COLLECT_EVERY_S["vps"],
            auth_user="operator",
            auth_password_hash=hash_password("pw", iterations=1000),
        ),
    )
    machine.sh(
        f"chown root:aiia-dashboard {VARIABLES['config_path']} && "
        f"chmod 0640 {VARIABLES['config_path']} && systemctl daemon-reload && "
        "systemctl enable --now aiia-dashboard.service"
    )
    machine.wait_active("aiia-dashboard.service")
    # What the collector left before review L2, when it ran as root: its state dir and
    # files, root's (Docker is not reached: no proxy yet).
    machine.sh(f"install -d -m 2750 -o root -g aiia-dashboard {VARIABLES['state_dir']} && "
               "cd /opt/aiia && umask 0027 && PYTHONPATH=/opt/aiia python3 -m dashboard "
               f"collect --config {VARIABLES['config_path']}")
    machine.bash(program_script("platform-dashboard-prerequisites"))
    # On a VPS docker-ce's group owns the socket; here the host's socket carries its gid.
    socket_gid = os.stat(DOCKER_SOCKET).st_gid
    machine.sh(f"if getent group docker >/dev/null; then groupmod -o -g {socket_gid} docker; "
               f"else groupadd -o -g {socket_gid} docker; fi")
    machine.write("/usr/local/bin/raw-request", RAW_REQUEST)
    machine.sh("chmod 0755 /usr/local/bin/raw-request && systemctl enable --now "
               "aiia-dashboard-docker-proxy.socket aiia-dashboard-collect.timer")


AUTH = "Basic " + base64.b64encode(b"operator:pw").decode()


def server_pid(host: Host) -> str:
    """The server's pid once systemd has exec'd it in its sandbox."""
    host.wait_active("aiia-dashboard.service")
    pid = host.sh("systemctl show -p MainPID --value aiia-dashboard.service")
    # A simple service is active from its fork: until systemd's child has applied the
    # sandbox and exec'd the server, that pid is still root's. Wait for the exec.
    deadline = time.monotonic() + 30
    while "dashboard" not in host.sh(f"cat /proc/{pid}/cmdline | tr '\\0' ' '", check=False):
        assert time.monotonic() < deadline, "the server was not exec'd"
        time.sleep(0.2)
        pid = host.sh("systemctl show -p MainPID --value aiia-dashboard.service")
    return pid


def test_the_account_moves_from_the_system_uid_it_had_to_its_fixed_one(host):
    # Review M2: Debian's useradd --system gives the highest free uid below 1000 (999 on a
    # Debian 12 VPS: PostgreSQL's and Redis's). The program's step moved it, and what
    # belonged to the account's group follows.
    assert int(host.previous_uid) < 1000
    assert host.sh("id -u aiia-dashboard") == host.sh("id -g aiia-dashboard") == str(FIXED_UID)
    assert host.sh(f"stat -c '%a %U:%G' {VARIABLES['config_path']}") == \
        "640 root:aiia-dashboard"
    status = dict(line.split(":", 1) for line in
                  host.sh(f"cat /proc/{server_pid(host)}/status").splitlines())
    assert status["Uid"].split() == [str(FIXED_UID)] * 4
    assert host.get("/api/status", AUTH)[0] == 200  # it reads its config with the new gid
    # Run again, it changes nothing.
    assert "moved" not in host.bash(program_script("platform-dashboard-prerequisites")).stdout


def test_a_uid_that_owns_data_is_refused_for_the_account(host):
    owned = f"/srv/aiia/media/staging/{secrets.token_hex(3)}"
    host.sh(f"install -D -m 0600 -o {FIXED_UID} -g {FIXED_UID} /dev/null {owned}")
    try:
        result = host.bash(program_script("platform-dashboard-prerequisites"), check=False)
        assert result.returncode != 0
        assert f"{owned} belongs to uid or gid {FIXED_UID}" in result.stderr, result.stderr
    finally:
        host.sh(f"rm -f {owned}")


def test_the_server_sees_none_of_the_hosts_private_directories(host):
    # Readable by their modes (uploads, logs), yet not from the server's sandbox: a oneshot
    # unit made of the server's own unit file, its command swapped for `cat`.
    unit = host.sh("cat /etc/systemd/system/aiia-dashboard.service")
    assert unit.count("ExecStart=") == 1

    def read_as_the_server(path: str) -> subprocess.CompletedProcess:
        probe = "\n".join(
            f"ExecStart=/bin/cat {path}" if line.startswith("ExecStart=")
            else "Type=oneshot" if line.startswith("Type=")
            else line for line in unit.splitlines()
            if not line.startswith(("Restart", "WantedBy")))
        host.write("/etc/systemd/system/aiia-dashboard-probe.service", probe + "\n")
        host.sh("systemctl daemon-reload")
        return host.bash("systemctl start aiia-dashboard-probe.service && "
                         "journalctl -u aiia-dashboard-probe.service -o cat -n 1 --no-pager",
                         check=False)

    try:
        assert read_as_the_server(VARIABLES["config_path"]).returncode == 0  # what it needs
        for path in READABLE_APP_FILES:
            assert host.sh(f"cat {path}") == "private"
            assert read_as_the_server(path).returncode != 0, f"the server reads {path}"
    finally:
        host.sh("rm -f /etc/systemd/system/aiia-dashboard-probe.service && "
                "systemctl daemon-reload && systemctl reset-failed", check=False)


def test_a_rotated_password_refuses_the_old_one_at_once(host):
    # Review M4: the program's config install (its on_change restarts the server), fed a
    # config whose only change is the password.
    install = program_script("platform-dashboard-config-install")
    current = host.sh(f"cat {VARIABLES['config_path']}")
    rotated = json.loads(current)
    rotated["auth_password_hash"] = hash_password("rotated", iterations=1000)
    assert host.get("/api/status", AUTH)[0] == 200
    try:
        host.bash(install, stdin=json.dumps(rotated, indent=2) + "\n")
        new = "Basic " + base64.b64encode(b"operator:rotated").decode()
        assert host.get("/api/status", new)[0] == 200
        assert host.get("/api/status", AUTH)[0] == 401
    finally:
        host.bash(install, stdin=current + "\n")
    assert host.get("/api/status", AUTH)[0] == 200


def test_the_server_runs_sandboxed_and_unprivileged(host):
    pid = server_pid(host)
    status = dict(line.split(":", 1) for line in host.sh(f"cat /proc/{pid}/status").splitlines())
    uid = host.sh("id -u aiia-dashboard")
    assert status["Uid"].split() == [uid] * 4
    assert status["CapEff"].strip() == status["CapBnd"].strip() == "0000000000000000"
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # a system-call filter is loaded
    assert host.get("/api/status", None)[0] == 401


def collect(host: Host) -> None:
    """One collection run of the unit, as its timer starts it."""
    started = host.bash("systemctl start aiia-dashboard-collect.service", check=False)
    assert started.returncode == 0, host.sh(
        "journalctl -u aiia-dashboard-collect.service -u 'aiia-dashboard-docker-proxy*' "
        "--no-pager -n 30", check=False)


def test_the_collector_runs_from_the_timer_and_hands_over_through_the_state_dir(host):
    collect(host)
    # What the root collector left is its account's now (the SQLite history above all).
    state_dir = VARIABLES["state_dir"]
    assert host.sh(f"stat -c '%a %U:%G' {state_dir}") == "2750 aiia-collector:aiia-dashboard"
    assert host.sh(f"find {state_dir} ! -user aiia-collector") == ""
    assert host.sh(f"stat -c '%a %U:%G' {state_dir}/status.json {state_dir}/dashboard.sqlite3"
                   ).splitlines() == ["640 aiia-collector:aiia-dashboard"] * 2
    code, body = host.get("/api/status", AUTH)
    assert code == 200
    status = json.loads(body)
    assert status["collector"]["errors"] == []  # Docker was reached, the history written
    assert status["snapshot_error"] is None
    assert status["services"][0]["state"] == "missing"
    # The timer fires on the minute: wait for the next run.
    before = host.sh(
        "systemctl show -p ExecMainStartTimestampMonotonic --value aiia-dashboard-collect.service"
    )
    deadline = time.monotonic() + 75
    while (
        host.sh(
            "systemctl show -p ExecMainStartTimestampMonotonic --value "
            "aiia-dashboard-collect.service"
        )
        == before
    ):
        assert time.monotonic() < deadline, host.sh("systemctl list-timers --no-pager")
        time.sleep(1)
    assert host.sh("systemctl show -p Result --value aiia-dashboard-collect.service") == "success"


def proxy_state(host: Host) -> tuple[str, str]:
    return (host.sh("systemctl is-active aiia-dashboard-docker-proxy.service", check=False),
            host.sh("systemctl show -p MainPID --value aiia-dashboard-docker-proxy.service"))


def test_the_collector_collects_containers_through_the_proxy_which_then_exits(host):
    """Review L2: list, inspect, stats and logs of a real container, through the proxy
    systemd starts on the collector's first request; gone again a few seconds later."""
    collect(host)
    state, pid = proxy_state(host)
    assert state == "active", host.sh("journalctl -u 'aiia-dashboard-docker-proxy*' "
                                      "--no-pager -n 20", check=False)
    # Its peak resident memory over the collection (the kernel's high-water mark).
    status = dict(line.split(":", 1) for line in host.sh(f"cat /proc/{pid}/status").splitlines())
    peak_kb = int(status["VmHWM"].split()[0])
    print(f"docker proxy: peak RSS {peak_kb / 1024:.1f} MiB over one collection; uid "
          f"{status['Uid'].split()[0]}, CapEff {status['CapEff'].strip()}")
    assert peak_kb < VARIABLES["docker_proxy_memory_mb"] * 1024
    assert status["Uid"].split()[0] != "0" and status["CapEff"].strip() == "0000000000000000"
    code, body = host.get("/api/status", AUTH)
    assert code == 200
    collected = json.loads(body)
    assert collected["collector"]["errors"] == []
    (probe,) = [s for s in collected["services"] if s["name"] == "probe"]
    assert probe["state"] == "running" and probe["container"] == f"aiia-dashtest-{PROBE_LABEL}"
    assert probe["memory_used_bytes"] and probe["memory_limit_bytes"] == 32 * 1024 * 1024
    logs = json.loads(host.sh(f"cat {VARIABLES['state_dir']}/logs/probe.json"))
    assert logs["error"] is None and PROBE_LINE in logs["lines"][-1]
    # Nothing resident between collections.
    deadline = time.monotonic() + DOCKER_PROXY_IDLE_EXIT_S + 15
    while proxy_state(host)[0] == "active":
        assert time.monotonic() < deadline, "the proxy did not exit when idle"
        time.sleep(0.5)
    assert host.sh("systemctl is-active aiia-dashboard-docker-proxy.socket") == "active"


def test_the_collectors_account_cannot_open_the_docker_socket(host):
    request = b"GET /containers/json HTTP/1.1\r\nHost: docker\r\n\r\n"
    refused = host.request_as("aiia-collector", "/run/docker.sock", request)
    assert refused.returncode != 0 and "PermissionError" in refused.stderr, refused
    # ... nor from its unit: the sandbox hides the socket even from a process of the unit's
    # with the permission (a oneshot made of its unit file, its command swapped).
    unit = host.sh("cat /etc/systemd/system/aiia-dashboard-collect.service")
    check = ("import errno, os, socket; "
             "docker = socket.socket(socket.AF_UNIX).connect_ex('/run/docker.sock'); "
             f"proxy = socket.socket(socket.AF_UNIX).connect_ex('{DOCKER_PROXY_SOCKET['vps']}'); "
             "print('seen:', errno.errorcode.get(docker, docker), proxy, os.getuid(), "
             "open('/proc/self/status').read().split('CapEff:')[1].split()[0])")
    probe = "\n".join(f"ExecStart=/usr/bin/python3 -c \"{check}\""
                       if line.startswith("ExecStart=") else line for line in unit.splitlines())
    host.write("/etc/systemd/system/aiia-dashboard-collect-probe.service", probe + "\n")
    try:
        host.sh("systemctl daemon-reload && systemctl start aiia-dashboard-collect-probe.service")
        seen = host.sh("journalctl -u aiia-dashboard-collect-probe.service -o cat --no-pager "
                       "| grep '^seen: '")
        # Docker's socket refused; the proxy's connects; its uid; CAP_DAC_READ_SEARCH alone.
        assert seen.split() == ["seen:", "EACCES", "0", str(COLLECTOR_UID), "0000000000000004"]
    finally:
        host.sh("rm -f /etc/systemd/system/aiia-dashboard-collect-probe.service && "
                "systemctl daemon-reload && systemctl reset-failed", check=False)
    # The proxy's socket is the collector's alone: the server's account is refused.
    refused = host.request_as("aiia-dashboard", DOCKER_PROXY_SOCKET["vps"], request)
    assert refused.returncode != 0 and "PermissionError" in refused.stderr, refused


def container_state(name: str) -> str | None:
    result = subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", name],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def test_the_proxy_refuses_what_would_change_or_leak_something_and_changes_nothing(host):
    created = f"aiia-dashtest-created-{secrets.token_hex(3)}"
    body = json.dumps({"Image": BASE, "Cmd": ["true"]}).encode()
    attempts = {
        "create": (f"POST /v1.41/containers/create?name={created} HTTP/1.1\r\nHost: docker\r\n"
                   "Content-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body,
        "stop": f"POST /containers/{host.probe_id}/stop HTTP/1.1\r\nHost: docker\r\n"
                "Content-Length: 0\r\n\r\n".encode(),
        "archive": f"GET /containers/{host.probe_id}/archive?path=/etc HTTP/1.1\r\n"
                   "Host: docker\r\n\r\n".encode(),
    }
    since = host.sh("date +'%Y-%m-%d %H:%M:%S'")
    for name, raw in attempts.items():
        answer = host.request_as("aiia-collector", DOCKER_PROXY_SOCKET["vps"], raw)
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.startswith("HTTP/1.1 403 Forbidden"), (name, answer.stdout[:300])
    assert container_state(created) is None  # not created
    assert container_state(f"aiia-dashtest-{PROBE_LABEL}") == "running"  # not stopped
    # The same account, the same socket: a read the collector makes passes.
    allowed = host.request_as("aiia-collector", DOCKER_PROXY_SOCKET["vps"],
                              f"GET /containers/{host.probe_id}/json HTTP/1.1\r\n"
                              "Host: docker\r\n\r\n".encode())
    assert allowed.stdout.startswith("HTTP/1.1 200 OK"), allowed.stdout[:300]
    journal = host.sh(f"journalctl -u aiia-dashboard-docker-proxy.service --since '{since}' "
                      "-o cat --no-pager")
    assert journal.count("refused (403): method POST") == 2, journal
    assert f"path '/containers/{host.probe_id}/archive' is not on the allowlist" in journal


@pytest.mark.parametrize(
    ("override", "refusal"),
    [
        ("User=root\n", "running as root"),
        # Lift the unit's protections: the program itself still refuses the socket.
        ("SupplementaryGroups=dockerhost\nInaccessiblePaths=\n", "can open the Docker socket"),
    ],
)
def test_the_server_refuses_privilege_even_if_its_unit_grants_it(host, override, refusal):
    drop_in = "/etc/systemd/system/aiia-dashboard.service.d"
    socket_gid = os.stat(DOCKER_SOCKET).st_gid
    host.sh(
        f"getent group {socket_gid} >/dev/null || groupadd -g {socket_gid} dockerhost; "
        f"mkdir -p {drop_in}"
    )
    override = override.replace("dockerhost", host.sh(f"getent group {socket_gid} | cut -d: -f1"))
    host.write(f"{drop_in}/privileged.conf", "[Service]\n" + override)
    try:
        host.sh("systemctl daemon-reload && systemctl restart aiia-dashboard.service", check=False)
        deadline = time.monotonic() + 20
        while refusal not in host.sh(
            "journalctl -u aiia-dashboard.service --no-pager -n 20", check=False
        ):
            assert time.monotonic() < deadline, host.sh(
                "journalctl -u aiia-dashboard.service --no-pager -n 20", check=False
            )
            time.sleep(0.5)

        # The refusal is logged just before the process exits: wait for the exit itself.
        def refused():
            return (
                host.sh("systemctl is-active aiia-dashboard.service", check=False) != "active"
                or host.sh("systemctl show -p NRestarts --value aiia-dashboard.service") != "0"
            )

        while not refused():
            assert time.monotonic() < deadline, host.sh(
                "systemctl status aiia-dashboard.service --no-pager", check=False
            )
            time.sleep(0.2)
    finally:
        host.sh(
            f"rm -rf {drop_in} && systemctl daemon-reload && "
            "systemctl restart aiia-dashboard.service"
        )
    host.wait_active("aiia-dashboard.service")


RECEIVER = """
import http.server, json
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open("/root/received.jsonl", "a") as out:
            out.write(json.dumps({"path": self.path, "body": body.decode()}) + "\\n")
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    do_GET = do_POST
http.server.HTTPServer(("127.0.0.1", 8765), Handler).serve_forever()
"""


def test_the_notifier_sends_from_its_own_sandbox_with_its_credential(host):
    """platform.alerts on a VPS: the notifier's unit (a dynamic user, no capability, the
    secrets handed over by systemd) reads the collector's snapshot and posts what started
    to a webhook on this machine's loopback; the page shows that it got through."""
    for unit in ("aiia-dashboard-notify.service", "aiia-dashboard-notify.timer"):
        host.write(f"/etc/systemd/system/{unit}", render(f"dashboard/{unit}.j2", **VARIABLES))
    config = json.loads(host.sh(f"cat {VARIABLES['config_path']}"))
    config["notify"] = {
        "dashboard_url": "https://status.example.com/", "hold_collections": 1,
        "state_file": "/var/lib/aiia-notify/state.json",
        "summary_file": "/srv/aiia/state/notify/summary.json",
        "secrets_file": VARIABLES["secrets_path"],
        "requests_dir": VARIABLES["requests_dir"],
        "channels": [{"name": "hook", "kind": "webhook"}]}
    host.write(VARIABLES["config_path"], json.dumps(config))
    host.write(VARIABLES["secrets_path"], json.dumps(
        {"channels": {"hook": {"url": "http://127.0.0.1:8765/hook", "token": "tok-e2e-secret"}}}))
    host.sh(f"chmod 0600 {VARIABLES['secrets_path']} && systemctl daemon-reload && "
            "systemctl restart aiia-dashboard.service")
    host.write("/root/receiver.py", RECEIVER)
    host.sh("systemd-run --unit=receiver python3 /root/receiver.py")
    host.sh("systemctl start aiia-dashboard-collect.service")  # a snapshot with alerts
    host.sh("systemctl start aiia-dashboard-notify.service", check=False)
    assert host.sh("systemctl show -p Result --value aiia-dashboard-notify.service") == \
        "success", host.sh("journalctl -u aiia-dashboard-notify.service --no-pager | tail -20")
    received = [json.loads(line) for line in host.sh("cat /root/received.jsonl").splitlines()]
    assert [r["path"] for r in received] == ["/hook"]
    events = json.loads(received[0]["body"])["events"]
    assert {(e["kind"], e["area"], e["subject"]) for e in events} >= {
        ("firing", "environment", "prod")}  # its health URL answers nothing
    # The page reads what the notifier wrote; neither it nor the journal has the token.
    host.wait_active("aiia-dashboard.service")
    code, body = host.get("/api/status", AUTH)
    assert code == 200
    (channel,) = json.loads(body)["notifications"]["channels"]
    assert channel["name"] == "hook" and channel["last_ok_at"] and channel["last_error"] is None
    journal = host.sh("journalctl -u aiia-dashboard-notify.service --no-pager")
    assert "tok-e2e-secret" not in journal and "tok-e2e-secret" not in body
    # A second run sends nothing again (its state survived the run's end).
    host.sh("systemctl start aiia-dashboard-notify.service")
    assert len(host.sh("cat /root/received.jsonl").splitlines()) == 1
    # The page's button: the server (its one write) leaves a request, the next run answers it.
    asked = host.sh("python3 -c \"import http.client, base64; c = http.client.HTTPConnection("
                    "'127.0.0.1', 9100, timeout=5); c.request('POST', '/api/notify-test', "
                    f"headers={{'Authorization': '{AUTH}', 'X-Aiia-Request': 'notify-test'}}); "
                    "r = c.getresponse(); print(r.status, r.read().decode())\"")
    assert asked.startswith("202 "), asked
    host.sh("systemctl start aiia-dashboard-notify.service")
    received = [json.loads(line) for line in host.sh("cat /root/received.jsonl").splitlines()]
    assert [json.loads(r["body"])["events"][0]["kind"] for r in received] == ["firing", "test"]
    code, body = host.get("/api/status", AUTH)
    assert json.loads(body)["notifications"]["test"]["results"] == {"hook": None}
    # It ran as a user of its own, not as root nor as the server's account.
    assert host.sh("stat -c '%U' /var/lib/private/aiia-notify/state.json") not in (
        "root", "aiia-dashboard")
