"""The `prod` stack on the Debian 13 VPS stand-in, over real SSH: the host
(components/host/provision.py), the platform and the prod release, as production reaches
them; the whole suite. How the stand-in is started, provisioned and reached:
tests/harness/vps.py. Debian 12 runs a subset of these on a stack of its own
(tests/e2e/test_vps_debian12.py).
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.host.baseline import RARE_PROTOCOLS
from components.host.provision import HostArgs, ssh_startups
from components.platform.nginx import reload_command
from dashboard import alerts
from tests.harness.client import assert_websocket_echoes
from tests.harness.engine import DockerEngine, gate_checks
from tests.harness.program import ProgramRun, run_program
from tests.harness.replay import DOCKER_PROVIDER, Replay, ReplayError
from tests.harness.vps import (
    ABUSE_MAX_RETRY,
    APP_REPOSITORY,
    BAN_TIME_S,
    RELEASES,
    SSH_MAX_RETRY,
    STATUS_AUTH_MAX_RETRY,
    SWAP_MB,
    Provisioned,
    assert_a_release_drops_no_request,
    check_gaps,
    docker,
    health_gates,
    host_part,
    keypair,
    prod_on_vps,
    ssh,
)

pytestmark = pytest.mark.e2e
VPS_IMAGE = "aiia-standin/vps:13"  # tests/images/build-standins.sh: Debian 13, recommended


@pytest.fixture(scope="module")
def provisioned(engine: DockerEngine, app_images: dict[str, str],
                tmp_path_factory) -> Iterator[Provisioned]:
    with prod_on_vps(engine, VPS_IMAGE, tmp_path_factory.mktemp("keys")) as provisioned:
        yield provisioned


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


def test_every_container_is_held_to_its_task_limit_on_the_vps(provisioned):
    """Review L7 on the VPS's own engine: the platform's running check and the release's
    switch set each container's pids.max."""
    listed = provisioned.vps.sh(
        "docker ps --format '{{.Names}}' | xargs docker inspect -f "
        "'{{.Name}} {{.HostConfig.PidsLimit}}'").stdout.split("\n")
    limits = dict(line.strip().lstrip("/").split() for line in listed if line.strip())
    assert {name: limits[name] for name in ("aiia-nginx", "aiia-pgbouncer", "aiia-redis")} \
        == dict.fromkeys(("aiia-nginx", "aiia-pgbouncer", "aiia-redis"), "128")
    assert limits["aiia-postgres"] == "164"
    apps = {name: limit for name, limit in limits.items() if name.startswith("aiia-app-prod-")}
    assert apps and set(apps.values()) == {"256"}, limits
    # The kernel holds it: the cgroup's own pids.max, read from inside the container
    # (cgroup v2's file, or v1's pids controller where the machine under the stand-in has v1).
    assert provisioned.vps.sh(
        "docker exec aiia-redis cat /sys/fs/cgroup/pids.max 2>/dev/null "
        "|| docker exec aiia-redis cat /sys/fs/cgroup/pids/pids.max").stdout.strip() == "128"


def test_the_app_logs_in_through_pgbouncer_whose_userlist_holds_no_password(provisioned):
    """Review L8: PgBouncer's userlist on the host holds the SCRAM verifier PostgreSQL stores
    for each role, no password; the app still logs in through it, PgBouncer making a new
    server login with the client's keys once PostgreSQL has ended every pooled one."""
    vps = provisioned.vps
    root = provisioned.config["aiia:host"]["root_dir"]
    environments = sorted(provisioned.config["aiia:platform"]["environments"])
    assert environments == ["prod", "staging"]  # the roles the SQL below names

    def as_superuser(sql: str) -> str:
        return vps.sh(f"docker exec aiia-postgres psql -U postgres -Atc {shlex.quote(sql)}").stdout

    userlist = vps.sh(f"cat {root}/pgbouncer/userlist.txt").stdout
    stored = as_superuser("SELECT format('\"%s\" \"%s\"', rolname, rolpassword) FROM pg_authid "
                          "WHERE rolname IN ('aiia_prod', 'aiia_staging')")
    assert sorted(userlist.splitlines()) == sorted(stored.splitlines()), (userlist, stored)
    assert userlist.count("SCRAM-SHA-256$4096:") == len(environments), userlist
    for environment in environments:
        assert provisioned.secrets[f"aiia:{environment}_db_password"] not in userlist
    ended = as_superuser("SELECT pid FROM (SELECT pid FROM pg_stat_activity WHERE usename IN "
                         "('aiia_prod', 'aiia_staging') OFFSET 0) AS app_backends "
                         "WHERE pg_terminate_backend(pid)")
    time.sleep(1.5)  # /healthz/ keeps its answer a second for outside clients
    deadline = time.monotonic() + 15
    while (health := provisioned.get("prod", "/healthz/")).status != 200:
        assert time.monotonic() < deadline, health
        time.sleep(0.5)
    assert json.loads(health.body)["checks"]["database"] == "ok", health.body
    after = as_superuser("SELECT pid FROM pg_stat_activity WHERE usename IN "
                         "('aiia_prod', 'aiia_staging')")
    assert after.split() and not set(after.split()) & set(ended.split()), (ended, after)


def test_sshd_enforces_the_policy_keys_only_no_root_no_password(provisioned):
    vps, identity = provisioned.vps, provisioned.identity
    effective = vps.sh("sshd -T -C user=deploy,host=client,addr=127.0.0.1").stdout
    for line in ("permitrootlogin no", "passwordauthentication no",
                 "kbdinteractiveauthentication no", "allowusers deploy",
                 "authenticationmethods publickey", "allowtcpforwarding no",
                 "compression no", "tcpkeepalive no", "persourcenetblocksize 32:64",
                 f"persourcemaxstartups {HostArgs.ssh_connections_at_once}"):
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
    result = docker("run", "--rm", "--network", provisioned.vps.network, provisioned.vps.image,
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
    docker("run", "-d", "--name", client, "--network", vps.network, vps.image, "sleep", "600")
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
    # journald took the cap: it says so when it (re)opens the system journal ("max 200.0M"
    # from systemd 252, "max 200M" from 257).
    journal_max = provisioned.config["aiia:host"]["provision"].get("journal_max_mb", 200)
    said = vps.sh("journalctl -b -u systemd-journald --no-pager -o cat").stdout
    assert re.search(rf"System Journal .* max {journal_max}(\.0)?M", said), said[-2000:]
    # Every jail bans with its actions (a reload that lost them would log bans it never
    # applies, fail2ban/fail2ban#3860).
    for jail, actions in (("sshd", "iptables-multiport"),
                          ("aiia-nginx-status-auth", "iptables-allports-aiia-status-forward"),
                          ("aiia-nginx-abuse", "iptables-allports-aiia-abuse-forward")):
        assert actions in vps.sh(f"fail2ban-client get {jail} actions").stdout, jail
    vps.sh("systemctl restart aiia-docker-firewall && logrotate /etc/logrotate.d/aiia && "
           "unattended-upgrade --dry-run >/dev/null 2>&1 || unattended-upgrade --dry-run")
    # The Go collectors' settings reach dockerd, containerd and every container's shim (which
    # inherits containerd's environment): templates/host/docker-memory.conf.j2 and
    # containerd-memory.conf.j2.
    environments = vps.sh("for p in $(pgrep -x dockerd; pgrep -x containerd; "
                          "pgrep -f '[c]ontainerd-shim-runc-v2'); do "
                          "tr '\\0' ' ' < /proc/$p/environ; echo; done").stdout.splitlines()
    assert len(environments) >= 3 and all("GOGC=25" in line.split() for line in environments)
    assert "GOMEMLIMIT=24MiB" in environments[0].split()
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
    swap_file = provisioned.vps.swap_file
    assert f"{swap_file} file {SWAP_MB * 2**20 - page}" in " ".join(shown.split()), \
        shown
    assert f"{swap_file} none swap sw 0 0" in provisioned.vps.sh("cat /etc/fstab").stdout


def test_every_cron_entry_runs_by_hand_and_logs_its_run(provisioned):
    """Each job of /etc/cron.d/aiia-* run once as cron would (root, its SHELL and PATH): the
    daily backup, then the monthly restore drill of that backup; PITR's tick, base backup and
    monthly drill (docs/pitr.md); the trail's shipping tick."""
    vps = provisioned.vps
    prefix = provisioned.config["aiia:prefix"]
    entries = vps.sh(f"ls /etc/cron.d/{prefix}-*").stdout.split()
    # No renewal with self-signed certificates (tests/e2e/test_tls.py runs it against a CA).
    assert provisioned.settings().platform.tls.mode == "self_signed"
    assert entries == [f"/etc/cron.d/{prefix}-backup", f"/etc/cron.d/{prefix}-pitr",
                       f"/etc/cron.d/{prefix}-ship-logs"]
    commands = []
    for entry in entries:
        for line in vps.sh(f"cat {entry}").stdout.splitlines():
            fields = line.split(None, 6)
            if not line.strip() or line.startswith("#") or "=" in fields[0]:
                continue
            assert fields[5] == "root", line
            commands.append(fields[6])
    # The backup, then its drill; PITR's tick, base backup, then its drill; the trail's
    # shipping tick, which has nothing to say in its log without an off-host target (its
    # state file says it, below).
    assert len(commands) == 6, commands
    state = f"{provisioned.config['aiia:host']['root_dir']}/state"
    for command in commands:
        if "ship-logs" in command:
            vps.sh(f"cd / && env -i SHELL=/bin/bash PATH=/usr/sbin:/usr/bin:/sbin:/bin "
                   f"bash -c {shlex.quote(command)}")
            shipping = json.loads(vps.sh(f"cat {state}/log-shipping.json").stdout)
            assert shipping["configured"] is False and shipping["pending"] == 0, shipping
            assert "platform.backup.off_host is not set" in shipping["note"], shipping
            continue
        log = command.split(">>")[1].split()[0]
        before = int(vps.sh(f"stat -c %s {log} 2>/dev/null || echo 0").stdout)
        ran = vps.sh(f"cd / && env -i SHELL=/bin/bash PATH=/usr/local/sbin:/usr/local/bin:"
                     f"/usr/sbin:/usr/bin:/sbin:/bin bash -c {shlex.quote(command)}",
                     check=False, timeout=600)
        tail = vps.sh(f"tail -c 1500 {log}").stdout
        assert ran.returncode == 0, f"{command}\n{tail}"
        assert int(vps.sh(f"stat -c %s {log}").stdout) > before, f"{command} logged nothing"
    records = vps.sh(f"cat {state}/restore-tests.jsonl").stdout.splitlines()
    assert json.loads(records[-1])["outcome"] == "succeeded", records[-1]
    drills = vps.sh(f"cat {state}/pitr-drills.jsonl").stdout.splitlines()
    assert json.loads(drills[-1])["outcome"] == "succeeded", drills[-1]


def test_sysctls_a_container_cannot_write_are_reported_not_fatal(provisioned):
    applied = provisioned.replay.state
    (sysctl,) = [a for a in applied.values() if a.name == "host-sysctl-install"]
    assert "read-only here" in sysctl.real["stdout"], sysctl.real["stdout"]


def test_rare_protocols_cannot_load_and_sessions_dump_no_core(provisioned):
    """Issue #25 item 2 (components/host/baseline.py), on the provisioned host: each rare
    protocol's module refuses to load, a login session may not dump core and (Debian 13) gets
    the 027 umask (its group bits the owner's: the group is the user's own), and the
    program's commands through sudo keep 022."""
    vps = provisioned.vps
    for module in RARE_PROTOCOLS:
        assert "install /bin/false" in vps.sh(f"modprobe -n -v {module}").stdout, module
        loaded = vps.sh(f"modprobe {module}", check=False)
        assert loaded.returncode != 0 and "install command '/bin/false'" in loaded.stderr, \
            loaded.stderr
    session = ssh(vps, provisioned.identity, "deploy",
                  "ulimit -Hc; ulimit -Sc; umask; sudo -n bash -c umask")
    # Debian 12's PAM does not read login.defs's UMASK (no pam_umask in common-session).
    umask = "0022" if vps.image.endswith(":12") else "0007"
    assert session.stdout.split() == ["0", "0", umask, "0022"], session.stdout + session.stderr
    # The kernel's side (kernel.core_pattern, fs.suid_dumpable): /proc/sys is read-only in
    # the stand-in, which the sysctl step says.
    (sysctl,) = [a for a in provisioned.replay.state.values() if a.name == "host-sysctl-install"]
    assert "kernel.core_pattern is read-only here" in sysctl.real["stdout"]


def test_the_first_run_leaves_no_security_update_pending(provisioned):
    """Issue #25 item 2: the stand-in image has security updates pending when it boots (it is
    built from the release's point, not its -security suite); provisioning applied them,
    before any container of the platform existed."""
    vps = provisioned.vps
    (step,) = [a for a in provisioned.replay.state.values() if a.name == "host-security-updates"]
    assert "security updates: none pending" in step.real["stdout"], step.real["stdout"][-2000:]
    pending = vps.sh("apt-get -s -o Debug::NoLocking=true upgrade | grep -E '^Inst .*-security' "
                     "|| true").stdout
    assert pending == "", pending
    history = vps.sh("cat /var/log/unattended-upgrades/unattended-upgrades.log").stdout
    assert "Packages that will be upgraded:" in history, history[-2000:]


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
    docker("run", "-d", "--name", name, "--network", provisioned.vps.network,
           provisioned.vps.image, "sleep", "600")
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


def test_each_health_gate_passes_about_a_second_after_its_service_is_ready(provisioned):
    """Debian 13's engine (API 1.45) takes the health checks' start_interval (1 s): while a
    container starts, its check runs each second instead of each `interval` (10 s for the
    platform, 5 s for the app), so its gate passes at the first check after the service is
    ready. Read from the engine's own record: each container's health log at the moment its
    gate passed, every check in it begun a start interval after the previous one (or the
    start), sooner than `interval` would have allowed."""
    gates = health_gates(provisioned)
    names = set(gates)
    assert {"aiia-postgres", "aiia-pgbouncer", "aiia-redis", "aiia-nginx"} <= names, names
    assert any(name.startswith(f"aiia-app-prod-{RELEASES[0]}-") for name in names), names
    for name, details in sorted(gates.items()):
        health = details["Config"]["Healthcheck"]
        assert health.get("StartInterval") == 1_000_000_000, (name, health)
        interval = health["Interval"] / 1e9
        started, checks = gate_checks(details)
        assert checks and checks[-1][2] == 0, (name, checks)
        gaps = check_gaps(details)
        print(f"{name}: healthy {checks[-1][1] - started:.1f} s after its start, after "
              f"{len(checks)} check(s) {[round(gap, 2) for gap in gaps]} s apart "
              f"(interval {interval:.0f} s)")
        assert gaps and all(gap < interval / 2 for gap in gaps), (name, gaps, interval)


def test_a_release_and_a_rollback_of_prod_on_the_vps_drop_no_request(provisioned):
    # A release, then the rollback: the previous value put back.
    assert_a_release_drops_no_request(provisioned, RELEASES[0], RELEASES[1])
    assert_a_release_drops_no_request(provisioned, RELEASES[1], RELEASES[0])


HOLD_PREAUTH = """
import socket, sys, time
held = [socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
        for _ in range(int(sys.argv[3]))]
said = []
for connection in held:
    try:
        said.append(connection.recv(64))
    except OSError:
        said.append(b"")
print(sum(line.startswith(b"SSH-") for line in said), flush=True)
time.sleep(30)
"""


def test_one_address_holding_unauthenticated_connections_locks_nobody_else_out(provisioned):
    """Review M6: an address holds at most PerSourceMaxStartups connections before
    authenticating (sshd drops the rest at once); meanwhile the operator still logs in.
    Late in the module: OpenSSH 10's PerSourcePenalties (on by default) then refuse the
    address for a while, which a later container given the same address would meet."""
    vps = provisioned.vps
    per_source = ssh_startups(HostArgs.ssh_connections_at_once).per_source
    client, client_address = attacker(provisioned, "preauth")
    holding = subprocess.Popen(
        ["docker", "exec", client, "python3", "-c", HOLD_PREAUTH, vps.address, str(vps.port),
         str(per_source + 6)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        greeted = holding.stdout.readline().strip()
        assert greeted == str(per_source), (greeted, holding.stderr.read() if not greeted
                                            else "")
        assert ssh(vps, provisioned.identity, "deploy", "true").returncode == 0
    finally:
        holding.kill()
        holding.wait(timeout=30)
        docker("rm", "-f", client, check=False)
        vps.sh(f"fail2ban-client set sshd unbanip {client_address}", check=False)


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


def test_the_audit_trail_is_installed_and_skipped_not_failed_in_a_container(provisioned):
    """Review H3: auditd and the program's rules are on the host; in the stand-in (a
    container, where the kernel's audit answers no one) its units are skipped by their
    condition instead of failing (tests/rendered/test_audit.py runs them on a real kernel),
    and the journal still records the deploy user's sudo."""
    vps = provisioned.vps
    assert "-k aiia-as-root" in vps.sh("cat /etc/audit/rules.d/50-aiia.rules").stdout
    # What a boot does (both are WantedBy=multi-user.target): skipped, not failed. (Their
    # first start, by the package's install before the guard existed, failed: cleared.)
    vps.sh("systemctl start auditd.service audit-rules.service")
    for unit in ("auditd.service", "audit-rules.service"):
        shown = vps.sh(f"systemctl show -p ConditionResult -p ActiveState {unit}").stdout
        assert sorted(shown.split()) == ["ActiveState=inactive", "ConditionResult=no"], shown
    mark = secrets.token_hex(4)
    ran = ssh(vps, provisioned.identity, "deploy", f"sudo -n true {mark}")
    assert ran.returncode == 0, ran.stderr
    deadline = time.monotonic() + 30
    while mark not in vps.sh("journalctl SYSLOG_IDENTIFIER=sudo -o cat --no-pager").stdout:
        assert time.monotonic() < deadline, "the sudo is not in the journal"
        time.sleep(0.5)


def test_the_nightly_integrity_check_reports_a_planted_file_on_the_dashboard(provisioned):
    """Review H3: AIDE's baseline was made by `pulumi up` once the host was provisioned; the
    nightly unit (started here as its timer would) runs in its sandbox and memory cap on the
    provisioned host, reports a file planted since in the journal and on the dashboard's host
    tile, and the next night starts from there. AIDE's peak is printed for the closing note."""
    vps = provisioned.vps
    assert vps.sh("systemctl is-enabled aiia-integrity.timer").stdout.strip() == "enabled"
    baseline = json.loads(vps.sh("cat /var/lib/aiia-integrity/summary.json").stdout)
    assert baseline["kind"] in ("baseline", "check"), baseline
    # The first night: what the platform installed after the host's baseline (the dashboard's
    # package, the job scripts) is reported once; from then on the nights start from there.
    vps.sh("systemctl start aiia-integrity@check.service")
    mark = secrets.token_hex(4)
    vps.sh(f"printf '#!/bin/sh\\n' > /usr/local/bin/planted-{mark} && "
           f"chmod 0755 /usr/local/bin/planted-{mark}")
    started = vps.sh("systemctl start aiia-integrity@check.service", check=False)
    journal = vps.sh("journalctl -u aiia-integrity@check.service --no-pager -o cat").stdout
    assert started.returncode == 0, journal[-3000:]
    assert f"/usr/local/bin/planted-{mark}" in journal
    check = json.loads(vps.sh("cat /var/lib/aiia-integrity/summary.json").stdout)
    assert f"/usr/local/bin/planted-{mark}" in check["added_paths"], check
    # The dashboard's unprivileged server reads it through its sandbox.
    platform = provisioned.settings().platform
    password = provisioned.secrets["aiia:dashboard_password"]
    url = f"http://{platform.status_gateway}:{platform.dashboard.port}/api/status"
    deadline = time.monotonic() + 30  # the server keeps host numbers a few seconds
    while True:
        status = json.loads(vps.sh(f"docker exec -i aiia-nginx curl -sf -K - {url}",
                                   stdin=f'user = "{platform.dashboard.user}:{password}"\n'
                                   ).stdout)
        shown = (status["host"].get("integrity") or {}).get("at") == check["at"]
        if shown or time.monotonic() > deadline:
            break
        time.sleep(2)
    (raised,) = [a for a in status["alerts"] if a["subject"] == "integrity"]
    assert raised["severity"] == "warning" and f"planted-{mark}" in raised["message"], raised
    # What the nightly run holds at its peak on this host, against the unit's cap.
    peak_kb = int(vps.sh(
        "python3 -c 'import resource, subprocess; subprocess.run([\"aide\", \"--check\", "
        "\"--config=/etc/aiia-integrity.conf\"], stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)'").stdout)
    cap_mb = provisioned.settings().host.provision.integrity_check_memory_mb
    print(f"AIDE on the provisioned stand-in: {peak_kb // 1024} MB peak RSS for "
          f"{check['entries']} entries (unit MemoryMax {cap_mb} MB)")
    assert peak_kb < cap_mb * 1024, (peak_kb, cap_mb)
    # Left as found: the removal reported, then a night with nothing new.
    vps.sh(f"rm /usr/local/bin/planted-{mark} && systemctl start aiia-integrity@check.service "
           "&& systemctl start aiia-integrity@check.service")


def collected_access(provisioned) -> dict:
    """One collector run (what its timer starts every minute), then what it saw."""
    vps = provisioned.vps
    vps.sh("systemctl start aiia-dashboard-collect.service")
    state = f"{provisioned.config['aiia:host']['root_dir']}/state/dashboard"
    document = json.loads(vps.sh(f"cat {state}/status.json").stdout)
    errors = document["collector"]["errors"]
    assert not [error for error in errors if error["step"] == "logins"], errors
    return document


def test_the_dashboard_lists_logins_and_sudo_and_alerts_on_a_key_nobody_configured(
        provisioned):
    """Review H3, until an alerts channel exists: the collector reads sshd's and sudo's lines
    from the journal; the operator's own login and sudo are listed (who, from where, when),
    and a login with a key that is not in host.provision.admin_ssh_keys is critical."""
    vps = provisioned.vps
    mark = secrets.token_hex(4)
    assert ssh(vps, provisioned.identity, "deploy", f"sudo -n true {mark}").returncode == 0
    document = collected_access(provisioned)
    access = document["host_access"]
    login = next(e for e in access["logins"] if e["who"] == "operator")  # the key's comment
    assert login["user"] == "deploy" and login["severity"] == "info", login
    sudo = next(e for e in access["sudo"] if mark in e["command"])
    assert (sudo["user"], sudo["run_as"], sudo["severity"]) == ("deploy", "root", "info")
    assert not [a for a in alerts.evaluate(document, time.time()) if a["area"] == "access"]
    # An authorized_keys line someone added by hand, then used.
    intruder, public = keypair(Path(provisioned.identity.parent), f"intruder-{mark}")
    vps.sh("cat >> /home/deploy/.ssh/authorized_keys", stdin=public + "\n")
    try:
        assert ssh(vps, intruder, "deploy").returncode == 0
        document = collected_access(provisioned)
    finally:
        vps.sh(f"sed -i '/intruder-{mark}/d' /home/deploy/.ssh/authorized_keys")
    raised = [a for a in alerts.evaluate(document, time.time()) if a["area"] == "access"]
    assert len(raised) == 1 and raised[0]["severity"] == "critical", raised
    assert "not in host.provision.admin_ssh_keys" in raised[0]["message"], raised


def test_updates_take_effect_and_a_needed_reboot_shows_on_the_dashboard(provisioned):
    """Review M9: needrestart restarts what holds an old library (its config parses: the
    program's check), unattended-upgrades reboots at host.provision.automatic_reboot, and a
    reboot an update needs (/run/reboot-required) is a warning on the dashboard's host tile,
    read by the unprivileged server through its sandbox."""
    vps = provisioned.vps
    vps.sh("needrestart -r l -b >/dev/null")
    dumped = vps.sh("apt-config dump | grep Automatic-Reboot").stdout
    assert 'Unattended-Upgrade::Automatic-Reboot "true";' in dumped, dumped
    assert 'Unattended-Upgrade::Automatic-Reboot-Time "04:30";' in dumped, dumped
    platform = provisioned.settings().platform
    password = provisioned.secrets["aiia:dashboard_password"]
    url = f"http://{platform.status_gateway}:{platform.dashboard.port}/api/status"
    # As Debian's kernel hook leaves it (/etc/kernel/postinst.d/unattended-upgrades).
    vps.sh("printf 'linux-image-6.12.99+deb13-amd64\\n' > /run/reboot-required.pkgs && "
           "touch /run/reboot-required")
    try:
        deadline = time.monotonic() + 30  # the server keeps host numbers a few seconds
        while True:
            status = json.loads(vps.sh(f"docker exec -i aiia-nginx curl -sf -K - {url}",
                                       stdin=f'user = "{platform.dashboard.user}:{password}"\n'
                                       ).stdout)
            if status["host"]["reboot_required"] or time.monotonic() > deadline:
                break
            time.sleep(2)
    finally:
        vps.sh("rm -f /run/reboot-required /run/reboot-required.pkgs")
    assert status["host"]["reboot_required"]["packages"] == ["linux-image-6.12.99+deb13-amd64"]
    (reboot,) = [a for a in status["alerts"] if a["subject"] == "reboot"]
    assert reboot["severity"] == "warning", reboot
