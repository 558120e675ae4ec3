"""The host files prod's program renders (components/host/provision.py), checked by the real
programs that will read them on the VPS: sshd, visudo, fail2ban, logrotate, iptables, sysctl.
They run in the VPS stand-ins of both supported releases (tests/images/vps-13: Debian 13,
tests/images/vps-12: Debian 12, each with those packages; components/host/systems.py), one
`docker run --rm` per check, the files mounted where the VPS has them: every check that runs
a program runs once per release, the same files in both.

Not here (the VPS stand-in's end-to-end tests, issue #9): the files installed over SSH by
the replay, sshd reloaded and logged into, ufw enabled, bans from real traffic.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from components.host.provision import HostArgs, packages_script, ssh_startups
from components.host.systems import DEBIAN_RELEASES
from tests.harness.program import TEST_ADMIN_KEY
from tests.harness.replay.schedule import dependency_graph

pytestmark = pytest.mark.rendered
# tests/images/build-standins.sh: one stand-in per supported release.
IMAGES = {release.version: f"aiia-standin/vps:{release.version}" for release in DEBIAN_RELEASES}


def host_files(rendered) -> dict[str, str]:
    return {path: content for path, content in rendered["prod"].files.items()
            if path.startswith(("/etc/", "/usr/local/sbin/"))}


@pytest.fixture(params=sorted(IMAGES), ids=lambda version: f"debian{version}")
def debian(request) -> str:
    """The VPS stand-in's release a test runs on: each such test runs on every one."""
    return request.param


def in_vps(debian: str, files: dict[str, str], script: str, tmp_path: Path,
           *docker_options: str, check: bool = True, network: str = "none",
           modes: dict[str, int] | None = None) -> subprocess.CompletedProcess:
    """`script` (bash) in a throwaway VPS stand-in of Debian `debian` with `files` placed at
    their paths (root's, mode 0644 unless `modes` says otherwise)."""
    mounts = []
    for index, (path, content) in enumerate(sorted(files.items())):
        local = tmp_path / f"file-{index}"
        local.write_text(content)
        local.chmod((modes or {}).get(path, 0o644))
        mounts += ["-v", f"{local}:{path}:ro"]
    result = subprocess.run(["docker", "run", "--rm", "--network", network, *docker_options,
                             *mounts, IMAGES[debian], "bash", "-euo", "pipefail", "-c", script],
                            capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def files(rendered) -> dict[str, str]:
    files = host_files(rendered)
    assert {"/etc/ssh/sshd_config.d/10-aiia.conf", "/etc/sudoers.d/aiia-deploy",
            "/etc/fail2ban/jail.d/aiia.conf", "/etc/logrotate.d/aiia",
            "/etc/docker/daemon.json", "/etc/sysctl.d/90-aiia.conf",
            "/usr/local/sbin/aiia-docker-firewall"} <= set(files), sorted(files)
    return files


# /etc/os-release of systems the program does not provision (Debian testing has no
# VERSION_ID).
FOREIGN_SYSTEMS = {
    "ubuntu-24.04": 'ID=ubuntu\nVERSION_ID="24.04"\nPRETTY_NAME="Ubuntu 24.04.3 LTS"\n',
    "debian-11": 'ID=debian\nVERSION_ID="11"\nPRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\n',
    "debian-testing": 'ID=debian\nPRETTY_NAME="Debian GNU/Linux forky/sid"\n',
}


def test_the_packages_step_takes_each_supported_release_and_refuses_any_other_system(
        debian, rendered, tmp_path):
    """On its own release the step gets past the check and asks for that release's packages
    (no network here, so apt stops there); with another system's /etc/os-release it stops
    before any change and names the systems it supports."""
    release = next(release for release in DEBIAN_RELEASES if release.version == debian)
    # The step of a stack whose host.system is this release (prod's is Debian 13's).
    script = packages_script("docker.io", release.system)
    if release.system == rendered["prod"].settings.host.system:
        assert script == rendered["prod"].script("host-packages")
    files = {"/opt/packages.sh": script,
             **{f"/opt/os-release-{name}": text for name, text in FOREIGN_SYSTEMS.items()}}
    # Each run's exit status printed after its output (the script runs under `set -e`).
    run = 'status=0; timeout 60 bash /opt/packages.sh 2>&1 || status=$?; echo "@@exit $status@@"'
    foreign_runs = "; ".join(f"cat /opt/os-release-{name} > /etc/os-release; {run}"
                             for name in FOREIGN_SYSTEMS)
    result = in_vps(debian, files, f"{run}; echo @@foreign@@; {foreign_runs}", tmp_path)
    own, foreign = result.stdout.split("@@foreign@@")
    assert f"host: {release.name}, {release.support}" in own, own
    installing = next(line for line in own.splitlines() if line.startswith("host: installing"))
    # The stand-in has all but Docker (and, on a fresh VPS, time sync); Debian 13's
    # docker.io leaves its CLI to docker-cli.
    assert ("docker-cli" in installing.split()) == (debian == "13"), installing
    assert "docker.io" in installing.split(), installing
    refusals = foreign.split("@@exit ")[:-1]
    assert len(refusals) == len(FOREIGN_SYSTEMS), foreign
    for said in refusals:
        assert "the program provisions Debian 13 (trixie) or Debian 12 (bookworm) only" in said
        assert "host: installing" not in said
    assert [part.split("@@")[0] for part in foreign.split("@@exit ")[1:]] == \
        ["1"] * len(FOREIGN_SYSTEMS), foreign


def test_the_packages_step_refuses_a_host_whose_system_is_not_host_system(debian, tmp_path):
    """A stack that says another supported release than the host runs stops before any
    change, naming host.system and the value that fits: what the program asks of Docker
    (a health check's start_interval) follows host.system."""
    release = next(release for release in DEBIAN_RELEASES if release.version == debian)
    for other in DEBIAN_RELEASES:
        if other is release:
            continue
        result = in_vps(debian, {"/opt/packages.sh": packages_script("docker.io", other.system)},
                        "bash /opt/packages.sh", tmp_path, check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"but aiia:host.system is {other.system}; set host.system: {release.system} " \
               "in this stack's config" in result.stderr, result.stderr
        assert "host: installing" not in result.stdout


def test_sshd_accepts_the_policy_and_applies_it_as_written(debian, files, tmp_path):
    effective = sshd_effective(debian, files, tmp_path)
    assert effective["permitrootlogin"] == "no"
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["authenticationmethods"] == "publickey"
    assert effective["allowusers"] == "deploy"
    assert effective["maxauthtries"] == "3"
    assert effective["allowtcpforwarding"] == "no" and effective["x11forwarding"] == "no"
    assert effective["port"] == "22"
    # Key exchange: curve25519 and the post-quantum hybrids; 4096/8192-bit modp groups only
    # where the release still offers them by default (OpenSSH 9.2); no NIST curve, no SHA-1,
    # no 2048-bit group.
    kex = effective["kexalgorithms"].split(",")
    assert set(kex) <= {
        "mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256", "curve25519-sha256@libssh.org", "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512"}, kex
    assert "curve25519-sha256" in kex  # what golang.org/x/crypto/ssh (pulumi-command) speaks
    if debian == "13":  # OpenSSH 10.0's post-quantum default stays first
        assert kex[0] == "mlkem768x25519-sha256", kex
    assert set(effective["ciphers"].split(",")) <= {
        "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
        "aes256-ctr", "aes192-ctr", "aes128-ctr"}
    assert all("etm@openssh.com" in mac for mac in effective["macs"].split(","))
    assert effective["unusedconnectiontimeout"] == "20"


def sshd_effective(debian: str, files: dict[str, str], tmp_path: Path) -> dict[str, str]:
    sshd = {path: content for path, content in files.items() if path.startswith("/etc/ssh/")}
    result = in_vps(debian, sshd, "ssh-keygen -A >/dev/null && mkdir -p /run/sshd && "
                    "sshd -t && sshd -T -C user=deploy,host=operator.example,addr=203.0.113.7",
                    tmp_path)
    return dict(line.partition(" ")[::2] for line in result.stdout.splitlines())


def test_sshd_applies_what_a_cis_audit_asks_beyond_the_login_policy(debian, files, tmp_path):
    """Review M6 and issue #25 item 2: as sshd itself reads the rendered file."""
    effective = sshd_effective(debian, files, tmp_path)
    startups = ssh_startups(HostArgs.ssh_connections_at_once)
    assert effective["persourcemaxstartups"] == str(startups.per_source) == "44"
    assert effective["persourcenetblocksize"] == "32:64"
    assert effective["maxstartups"] == "52:30:104"
    assert effective["compression"] == "no"
    assert effective["tcpkeepalive"] == "no"
    assert (effective["clientaliveinterval"], effective["clientalivecountmax"]) == ("300", "2")
    assert effective["maxsessions"] == "4" and effective["maxauthtries"] == "3"
    assert effective["banner"] == "none"
    assert effective["disableforwarding"] == "yes"
    # What a client is told before anything else: the protocol and OpenSSH's version, not
    # Debian's package revision (DebianBanner; Debian 12's `sshd -T` does not print it).
    sshd = {path: content for path, content in files.items() if path.startswith("/etc/ssh/")}
    said = in_vps(debian, sshd, "ssh-keygen -A >/dev/null && mkdir -p /run/sshd && "
                  "/usr/sbin/sshd && timeout 20 bash -c 'until (: <>/dev/tcp/127.0.0.1/22); "
                  "do sleep 0.2; done' 2>/dev/null && exec 3<>/dev/tcp/127.0.0.1/22 && "
                  "head -1 <&3",
                  tmp_path).stdout.strip()
    assert said.startswith("SSH-2.0-OpenSSH_") and " " not in said, said


def widest_concurrent_commands(run) -> int:
    """The most remote commands of `run` that can be running at one moment under unbounded
    parallelism: the largest set of commands none of which waits (directly or through
    others) for another, as the engine schedules them (tests/harness/replay/schedule.py).
    Dilworth: the fewest chains covering a partial order = its largest antichain, found as
    commands minus a maximum matching of "waits for" (Kuhn's augmenting paths)."""
    components = [r for r in run.resources if r.type.startswith("aiia:")]
    steps = [r for r in run.resources
             if not r.type.startswith("aiia:") and r.type != "pulumi:pulumi:Stack"]
    graph = dependency_graph(steps, components)
    before: dict[str, set[str]] = {}

    def waits_for(urn: str) -> set[str]:
        if urn not in before:
            before[urn] = set()
            for dependency in graph[urn]:
                before[urn] |= {dependency, *waits_for(dependency)}
        return before[urn]

    commands = [r.urn for r in steps if r.type == "command:remote:Command"]
    matched: dict[str, str] = {}

    def augment(urn: str, seen: set[str]) -> bool:
        for earlier in waits_for(urn) & set(commands):
            if earlier not in seen:
                seen.add(earlier)
                if earlier not in matched or augment(matched[earlier], seen):
                    matched[earlier] = urn
                    return True
        return False

    return len(commands) - sum(augment(urn, set()) for urn in commands)


def test_one_address_may_open_as_many_connections_as_a_first_pulumi_up_does(rendered):
    """sshd's per-source limit admits prod's widest burst of remote commands (each its own
    connection) and the Docker provider's, from the one address `pulumi up` runs on: a
    dropped dial is retried only within a second (components/host/provision.py)."""
    widest = widest_concurrent_commands(rendered["prod"].run)
    assert widest + 1 <= ssh_startups(HostArgs.ssh_connections_at_once).per_source, widest
    # The limit is a limit: not far above what the program needs (41 today).
    assert HostArgs.ssh_connections_at_once <= widest + 4, widest


def test_sshd_refuses_a_broken_drop_in_so_it_is_never_reloaded(debian, tmp_path):
    broken = {"/etc/ssh/sshd_config.d/10-aiia.conf": "PermitRootLogin perhaps\n"}
    result = in_vps(debian, broken, "ssh-keygen -A >/dev/null && mkdir -p /run/sshd && sshd -t",
                    tmp_path, check=False)
    assert result.returncode != 0 and "10-aiia.conf line 1" in result.stderr, result.stderr


def test_the_deploy_user_s_sudo_rule_parses(debian, files, tmp_path):
    sudoers = {"/etc/sudoers.d/aiia-deploy": files["/etc/sudoers.d/aiia-deploy"]}
    result = in_vps(debian, sudoers, "visudo -c && useradd deploy && sudo -l -U deploy", tmp_path,
                    modes={"/etc/sudoers.d/aiia-deploy": 0o440})
    assert "(root) NOPASSWD: ALL" in result.stdout, result.stdout


JSON_LOG = ('{{"time":"2026-12-03T10:{minute:02d}:00+00:00","addr":"{addr}","env":"{env}",'
            '"host":"{host}","method":"GET","uri":"/","status":{status},"bytes":0,'
            '"request_time":0.001,"upstream":"-","upstream_status":"-","release":"-"}}')


def access_log(rendered, lines: list[tuple[str, str, int]]) -> str:
    """nginx's JSON access log (docs/architecture.md): (addr, env, status) per line."""
    platform = rendered["prod"].settings.platform
    hosts = {"status": platform.status_domain,
             **{env.name: env.domain for env in platform.environments}}
    return "\n".join(JSON_LOG.format(minute=i % 60, addr=addr, env=env, host=hosts[env],
                                     status=status)
                     for i, (addr, env, status) in enumerate(lines)) + "\n"


def test_fail2ban_loads_its_jails_and_its_filters_find_the_right_addresses(
        debian, files, rendered, tmp_path):
    fail2ban = {path: content for path, content in files.items() if "/fail2ban/" in path}
    jail = fail2ban["/etc/fail2ban/jail.d/aiia.conf"]
    log_path = next(line.split("=", 1)[1].strip() for line in jail.splitlines()
                    if line.startswith("logpath"))
    log = access_log(rendered, [("198.51.100.1", "status", 401)] * 3
                     + [("198.51.100.2", "prod", 401), ("198.51.100.3", "status", 200),
                        ("198.51.100.4", "prod", 429), ("198.51.100.5", "staging", 400),
                        ("198.51.100.6", "prod", 200)])
    fail2ban[log_path] = log
    script = (
        "fail2ban-client -t >/dev/null && fail2ban-client -d | grep -c \"'add'\" && "
        f"fail2ban-regex --print-all-matched {log_path} "
        "/etc/fail2ban/filter.d/aiia-nginx-status-auth.conf && echo @@abuse@@ && "
        f"fail2ban-regex --print-all-matched {log_path} "
        "/etc/fail2ban/filter.d/aiia-nginx-abuse.conf")
    result = in_vps(debian, fail2ban, script, tmp_path)
    status_part, abuse_part = result.stdout.split("@@abuse@@")
    jails = int(status_part.splitlines()[0])
    assert jails == 3, result.stdout  # sshd and the two nginx jails
    # As fail2ban resolves the files with the release's own (Debian 13's defaults-debian.conf
    # makes nftables the default): every jail bans with iptables, where Docker's rules are.
    dump = in_vps(debian, fail2ban, "fail2ban-client -d", tmp_path).stdout
    actions = [line for line in dump.splitlines() if "'addaction'" in line]
    assert actions == ["['set', 'sshd', 'addaction', 'iptables-multiport']",
                       *[f"['set', '{jail}', 'addaction', 'iptables-allports-aiia-{name}-{chain}']"
                         for jail, name in (("aiia-nginx-status-auth", "status"),
                                            ("aiia-nginx-abuse", "abuse"))
                         for chain in ("forward", "input")]], actions
    assert "['add', 'sshd', 'systemd']" in dump  # the journal: there is no auth.log
    assert "['set', 'sshd', 'addjournalmatch', '_SYSTEMD_UNIT=ssh.service', '+'" in dump
    # 401s on the status domain only; a 401 elsewhere (the app's own) is not a password guess.
    assert "Lines: 8 lines, 0 ignored, 3 matched" in status_part, status_part
    assert matched_addresses(status_part) == {"198.51.100.1"}
    assert "Lines: 8 lines, 0 ignored, 2 matched" in abuse_part, abuse_part
    assert matched_addresses(abuse_part) == {"198.51.100.4", "198.51.100.5"}


def matched_addresses(output: str) -> set[str]:
    """The client addresses of the lines fail2ban-regex lists as matched."""
    matched = output.split("Matched line(s):", 1)[1].split("\n`-", 1)[0]
    return {line.split('"addr":"', 1)[1].split('"', 1)[0]
            for line in matched.splitlines() if '"addr":"' in line}


def test_the_nginx_jails_ban_where_docker_s_forwarded_traffic_passes(files):
    jail = files["/etc/fail2ban/jail.d/aiia.conf"]
    for name in ("aiia-nginx-status-auth", "aiia-nginx-abuse"):
        section = jail.split(f"[{name}]", 1)[1].split("\n[", 1)[0]
        assert 'chain="DOCKER-USER"' in section and 'chain="INPUT"' in section, section
    assert "backend = systemd" in jail  # Debian 12 and 13 have no auth.log
    settings_line = [line for line in jail.splitlines() if line.startswith("bantime")]
    assert settings_line == ["bantime = 3600"]


def test_logrotate_rotates_a_log_past_its_size_with_no_line_lost(debian, files, rendered,
                                                                 tmp_path):
    config = {"/etc/logrotate.d/aiia": files["/etc/logrotate.d/aiia"]}
    root = rendered["prod"].root_dir
    # 51 MB of numbered lines; logrotate at its next (not forced) run moves it aside.
    script = (f"mkdir -p {root}/logs/nginx && "
              f"seq 1 7000000 > {root}/logs/certbot.log && "
              f"logrotate -d /etc/logrotate.d/aiia 2>/dev/null; "
              f"logrotate -s /tmp/state /etc/logrotate.d/aiia && "
              f"ls {root}/logs && cat {root}/logs/certbot.log-* | wc -l && "
              f"test ! -e {root}/logs/certbot.log")
    result = in_vps(debian, config, script, tmp_path)
    names = result.stdout.split()
    assert any(name.startswith("certbot.log-") for name in names), result.stdout
    assert names[-1] == "7000000", result.stdout


def test_only_nginx_s_ports_reach_containers_from_outside_and_a_rerun_changes_nothing(
        debian, files, tmp_path):
    script_path = "/usr/local/sbin/aiia-docker-firewall"
    firewall = {script_path: files[script_path]}
    # A network of its own gives the container a default route (its outside interface).
    # DOCKER-USER as Docker leaves it: ending in its own RETURN.
    script = ("for t in iptables ip6tables; do $t -N DOCKER-USER && "
              "$t -A DOCKER-USER -j RETURN; done && "
              f"bash {script_path} && iptables -S > /tmp/first && bash {script_path} && "
              "iptables -S > /tmp/second && diff /tmp/first /tmp/second && cat /tmp/second && "
              "ip6tables -S | sed 's/^/v6 /'")
    result = subprocess.run(["docker", "network", "create", "aiia-test-firewall"],
                            capture_output=True, text=True, check=False)
    try:
        output = in_vps(debian, firewall, script, tmp_path, "--cap-add", "NET_ADMIN",
                        network="aiia-test-firewall").stdout
    finally:
        subprocess.run(["docker", "network", "rm", "aiia-test-firewall"], capture_output=True,
                       check=False)
    assert result.returncode == 0 or "already exists" in result.stderr, result.stderr
    lines = output.splitlines()
    for rules in ([line for line in lines if line.startswith("-A ")],
                  [line.removeprefix("v6 ") for line in lines if line.startswith("v6 -A ")]):
        docker_user = [r for r in rules if r.startswith("-A DOCKER-USER")]
        assert docker_user == ["-A DOCKER-USER -j AIIA-PUBLISHED", "-A DOCKER-USER -j RETURN"]
        published = [r for r in rules if r.startswith("-A AIIA-PUBLISHED")]
        assert published[0].endswith("--ctstate RELATED,ESTABLISHED -j RETURN")
        # Review L6: Docker's bridges pass; every other interface (not only the default
        # route's: a provider's private network too) reaches 80 and 443 alone.
        assert published[1:3] == ["-A AIIA-PUBLISHED -i docker0 -j RETURN",
                                  "-A AIIA-PUBLISHED -i br-+ -j RETURN"]
        assert [r.split("--ctorigdstport ")[1].split()[0] for r in published[3:-1]] == [
            "80", "443"]
        assert published[-1] == "-A AIIA-PUBLISHED -j DROP"


def test_docker_keeps_containers_across_its_restarts_and_listens_on_no_tcp_port(files):
    daemon = json.loads(files["/etc/docker/daemon.json"])
    assert daemon["live-restore"] is True and daemon["no-new-privileges"] is True
    # Not "hosts": Debian's unit passes -H fd://, and dockerd refuses a directive given twice.
    assert "hosts" not in daemon and "tcp" not in json.dumps(daemon)
    assert daemon["log-driver"] == "json-file" and daemon["log-opts"]["max-size"] == "10m"


def test_every_sysctl_the_host_sets_exists_and_forwarding_is_left_to_docker(files):
    settings = dict(line.split(" = ") for line in files["/etc/sysctl.d/90-aiia.conf"].splitlines()
                    if line and not line.startswith("#"))
    # Yama is in Debian's kernels but not in every one (`sysctl -e` skips it there).
    missing = [key for key in settings if key != "kernel.yama.ptrace_scope"
               and not Path("/proc/sys", *key.split(".")).exists()]
    assert missing == [], missing
    assert "net.ipv4.ip_forward" not in settings
    assert settings["vm.swappiness"] == "10"


def test_the_operators_keys_are_the_deploy_user_s_only_way_in(rendered):
    accounts = rendered["prod"].command_stdin("host-accounts")
    assert accounts.strip().splitlines() == [TEST_ADMIN_KEY]
