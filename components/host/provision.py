"""The host itself, as code: what a fresh Debian VPS needs before the platform runs on it.

Owned by the platform stack of an ssh host (a `local` stack provisions nothing). Each step
is a remote command re-run only when its script or content changes; every file comes from
templates/host/ and is installed by HostFile, whose follow-up validates it with the real
program and puts the previous file back when that fails (components/host/connection.py):

- packages: Docker (host.provision.docker_package), ufw, fail2ban, cron, logrotate,
  unattended-upgrades; on anything but Debian 13 or 12 (components/host/systems.py) it
  stops and says so;
- the deploy user (host.ssh.user): created, in the docker group, the operators' keys
  (host.provision.admin_ssh_keys), passwordless sudo (checked with `visudo -c`);
- sshd: keys only, no root, AllowUsers, modern algorithms; `sshd -t` before each reload, so
  a bad drop-in never locks the operator out;
- Docker's daemon.json (live-restore, capped logs, no-new-privileges, no TCP listener);
- the firewall: ufw for the host, and DOCKER-USER for what Docker publishes (moby#4737);
- fail2ban: sshd from the journal, nginx's status-domain 401s and 429/400/444s from its
  JSON access log, banned where Docker's forwarded traffic passes as well;
- swap, sysctl, log rotation of the file logs, the journal capped on disk and in RAM, time
  sync (systemd-timesyncd), unattended security updates that take effect (needrestart, and a
  reboot at host.provision.automatic_reboot when a kernel needs one);
- an audit trail: auditd and the program's rules (components/host/audit.py);
- a nightly file-integrity check: AIDE, its baseline once the rest is in place
  (components/host/integrity.py);
- a preflight of what the Docker provider's ssh:// path needs, before any Docker resource.

Not here: the dashboard's systemd units (components/platform/dashboard.py) and cron entries of the
jobs (their components).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi

from components.host.audit import AUDIT_PACKAGES, AuditTrail, AuditTrailArgs
from components.host.baseline import kernel_and_account_defaults, security_updates
from components.host.connection import HostConnection, HostFile, HostFileArgs, host_command
from components.host.integrity import INTEGRITY_PACKAGES, IntegrityCheck, IntegrityCheckArgs
from components.host.systems import DEBIAN_RELEASES, packages_by_release
from components.host.templates import render
from components.settings import Settings
from components.settings.host import START_INTERVAL_API, HostSettings

# On every supported release; what differs is in components/host/systems.py. procps: the
# sysctl step's `sysctl`; kmod: modprobe, which reads components/host/baseline.py's file; gpg:
# the log shipping encrypts each minute's chunk on the host (components/platform/
# log_shipping.py), where a container a minute would cost more than the program.
PACKAGES = ("ufw", "fail2ban", "python3-systemd", "cron", "logrotate", "unattended-upgrades",
            "sudo", "iptables", "openssh-server", "systemd-timesyncd", "procps", "kmod", "gpg")
# Updates that take effect (review M9): needrestart restarts what holds an old library.
UPDATE_PACKAGES = ("needrestart",)
# sshd: UnusedConnectionTimeout (OpenSSH 9.2 and later) closes what pulumi-command leaves open.
UNUSED_CONNECTION_TIMEOUT_S = 20
FIREWALL_SCRIPT = "/usr/local/sbin/aiia-docker-firewall"
SYSCTL_FILE = "/etc/sysctl.d/90-aiia.conf"
# The Go garbage collector's target of dockerd, containerd and containerd's shims, and a soft
# ceiling on dockerd's own Go memory (templates/host/docker-memory.conf.j2,
# containerd-memory.conf.j2).
DOCKER_GOGC = 25
DOCKERD_MEMORY_LIMIT_MB = 24


def docker_ssh_options(host: HostSettings) -> list[str] | None:
    """The system `ssh` options of the Docker provider's ssh:// connection (it runs
    `ssh <options> -- <host> docker system dial-stdio`: docker/cli's connhelper, wrapped by
    terraform-provider-docker and pulumi-docker's `ssh_opts`). The VPS's pinned host key is
    the only one accepted, from no known_hosts file (KnownHostsCommand prints it; OpenSSH
    8.5 or later on the machine running `pulumi up`); the key is the ssh-agent's; one
    connection is shared by the provider's many dial-stdio calls."""
    if host.ssh is None or host.docker_host is None or not host.docker_host.startswith("ssh://"):
        return None
    address = host.ssh.host if host.ssh.port == 22 else f"[{host.ssh.host}]:{host.ssh.port}"
    return ["-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"KnownHostsCommand=/bin/echo {address} {host.ssh.host_key}",
            "-o", "PasswordAuthentication=no", "-o", "BatchMode=yes",
            "-o", "ControlMaster=auto", "-o", "ControlPath=~/.ssh/aiia-docker-%C",
            "-o", "ControlPersist=60s", "-o", "ServerAliveInterval=15"]


def packages_script(docker_package: str, system: str | None) -> str:
    """The packages step: refuses any system but `system` (host.system), then installs."""
    return render("host/packages.sh.j2", releases=DEBIAN_RELEASES, system=system,
                  packages=packages_by_release(docker_package,
                                               PACKAGES + UPDATE_PACKAGES + AUDIT_PACKAGES
                                               + INTEGRITY_PACKAGES))


def engine_requirement(host: HostSettings) -> dict[str, str | None]:
    """What the preflight checks of the host's engine: the API version the health checks'
    start_interval needs, when the program declares one, and which setting made it."""
    if host.health_start_interval is None:
        return {"required_api": None, "assumed_by": None}
    assumed_by = (f"aiia:host.docker_api_version is {host.docker_api_version}"
                  if host.docker_api_version else
                  f"aiia:host.system is {host.system} (whose docker.io speaks "
                  f"{host.engine_api_version})")
    return {"required_api": START_INTERVAL_API, "assumed_by": assumed_by}


@dataclass(frozen=True)
class SshStartups:
    """sshd's limits on unauthenticated connections (sshd_config(5) MaxStartups,
    PerSourceMaxStartups). Each one costs ~2.6 MB anonymous memory (the session's monitor
    and its unprivileged child, measured with smaps_rollup on both releases' sshd), and one
    client may hold it for LoginGraceTime."""

    per_source: int  # what one address (IPv4 /32, IPv6 /64) may hold at once
    start: int  # past this many in all, sshd drops new ones at random (30%, rising)
    full: int  # and at this many, every new one

    @property
    def max_startups(self) -> str:
        return f"{self.start}:30:{self.full}"


def ssh_startups(at_once: int) -> SshStartups:
    """The limits for a deployer that opens `at_once` connections at once, from one address:
    pulumi-command dials one connection per remote command, and every command whose
    dependencies are done runs at once (`pulumi up`'s parallelism is unbounded by default).
    A connection sshd drops is dialled again, but only a few times within a second
    (pulumi-command remote/connection.go `Dial`: retry.Until from 100 ms, x1.5, up to
    dial_error_limit=5 dials; components/host/connection.py), so the burst must fit whole.
    Another address (an operator's, staging's CI) still finds room, and the whole is bounded
    at twice that: what a botnet can make sshd hold is capped, not what it can make sshd
    refuse."""
    start = at_once + 8
    return SshStartups(per_source=at_once, start=start, full=start * 2)


@dataclass
class HostArgs:
    settings: Settings
    connection: HostConnection
    # How many SSH connections one `pulumi up` opens at once at most: prod's first run, whose
    # widest set of remote commands that can run together is 41 since point-in-time
    # recovery's files (a command per connection; tests/rendered/test_host.py computes it
    # from the program), plus the Docker provider's shared connection and headroom for a
    # few more commands. Each pending connection costs sshd ~2.6 MB: ~114 MB for one address,
    # during a first `up` only.
    ssh_connections_at_once: int = 44


class Host(pulumi.ComponentResource):
    def __init__(self, name: str, args: HostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:host:Host", name, None, opts)
        settings = args.settings
        host = settings.host
        provision = host.provision
        platform = settings.platform
        assert host.ssh is not None and provision is not None and platform is not None
        connection = args.connection
        user = host.ssh.user
        fail2ban = provision.fail2ban

        def child(*after: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=list(after))

        packages = host_command(
            f"{name}-packages", connection,
            packages_script(provision.docker_package, host.system),
            opts=child())
        accounts = host_command(
            f"{name}-accounts", connection, render("host/accounts.sh.j2", user=user),
            stdin="\n".join(provision.admin_ssh_keys) + "\n", opts=child(packages))

        # After the deploy user's home exists: its authorized_keys are watched.
        AuditTrail(f"{name}-audit", AuditTrailArgs(connection=connection,
                                                   root_dir=host.root_dir, user=user),
                   opts=child(accounts))

        def file(key: str, path: str, content: str, on_change: str, *after: pulumi.Resource,
                 mode: str = "0644") -> HostFile:
            return HostFile(f"{name}-{key}",
                            HostFileArgs(connection=connection, path=path, content=content,
                                         mode=mode, owner="0:0", on_change=on_change),
                            opts=child(*after))

        startups = ssh_startups(args.ssh_connections_at_once)
        files = [
            file("sudoers", f"/etc/sudoers.d/aiia-{user}", render("host/sudoers.j2", user=user),
                 "visudo -cq", accounts, mode="0440"),
            # After the user exists (AllowUsers names it) and its keys are in place.
            file("sshd", "/etc/ssh/sshd_config.d/10-aiia.conf",
                 render("host/sshd.conf.j2", port=host.ssh.port, users=[user],
                        startups=startups,
                        unused_timeout_s=UNUSED_CONNECTION_TIMEOUT_S),
                 "sshd -t && systemctl reload ssh", accounts),
            file("docker-daemon", "/etc/docker/daemon.json",
                 render("host/daemon.json.j2", log_max_mb=10, log_max_files=3),
                 # live-restore and the log defaults apply on a reload; a restart of a
                 # dockerd without live-restore yet would stop the containers.
                 "python3 -m json.tool /etc/docker/daemon.json >/dev/null && "
                 "systemctl reload docker", packages),
            file("sysctl", SYSCTL_FILE,
                 render("host/sysctl.conf.j2", swappiness=provision.swappiness),
                 render("host/sysctl-apply.sh.j2", path=SYSCTL_FILE), packages),
            file("logrotate", "/etc/logrotate.d/aiia",
                 render("host/logrotate.conf.j2", root_dir=host.root_dir,
                        max_mb=provision.log_rotate_mb, keep=provision.log_rotate_keep,
                        nginx_container=f"{settings.prefix}-nginx",
                        environments=[env.name for env in platform.environments]),
                 "logrotate -d /etc/logrotate.d/aiia", packages),
            file("logrotate-hourly", "/etc/systemd/system/logrotate.timer.d/aiia-hourly.conf",
                 render("host/logrotate-hourly.conf.j2"),
                 "systemctl daemon-reload && systemctl restart logrotate.timer", packages),
            file("journald", "/etc/systemd/journald.conf.d/90-aiia.conf",
                 render("host/journald.conf.j2", max_mb=provision.journal_max_mb),
                 # journald keeps its files open across a restart; nothing is lost.
                 "systemctl restart systemd-journald", packages),
            file("unattended-upgrades", "/etc/apt/apt.conf.d/52aiia-unattended-upgrades",
                 render("host/unattended-upgrades.conf.j2",
                        enabled=provision.unattended_upgrades,
                        reboot_time=(None if provision.automatic_reboot == "off"
                                     else provision.automatic_reboot)),
                 "apt-config dump >/dev/null", packages),
            # needrestart dies on a file it cannot parse ("Error parsing …"): checked by a
            # list-only run (-r l), which restarts nothing.
            file("needrestart", "/etc/needrestart/conf.d/50-aiia.conf",
                 render("host/needrestart.conf.j2"), "needrestart -r l -b >/dev/null", packages),
        ]
        # After daemon.json: live-restore keeps the containers through this restart.
        files.append(file("docker-memory", "/etc/systemd/system/docker.service.d/aiia-memory.conf",
                          render("host/docker-memory.conf.j2", gogc=DOCKER_GOGC,
                                 memory_limit_mb=DOCKERD_MEMORY_LIMIT_MB),
                          "systemctl daemon-reload && systemctl restart docker", files[2]))
        # containerd.service's KillMode=process: its restart leaves every container's shim, and
        # so the container, running.
        files.append(file("containerd-memory",
                          "/etc/systemd/system/containerd.service.d/aiia-memory.conf",
                          render("host/containerd-memory.conf.j2", gogc=DOCKER_GOGC),
                          "systemctl daemon-reload && systemctl restart containerd", packages))
        docker_firewall = [
            file("docker-firewall-script", FIREWALL_SCRIPT,
                 render("host/docker-firewall.sh.j2", allowed_ports=[80, 443]), "true",
                 packages, mode="0755"),
        ]
        docker_firewall.append(file(
            "docker-firewall-unit", "/etc/systemd/system/aiia-docker-firewall.service",
            render("host/docker-firewall.service.j2", script=FIREWALL_SCRIPT),
            "systemctl daemon-reload && systemctl enable --quiet aiia-docker-firewall && "
            "systemctl restart aiia-docker-firewall", *docker_firewall))
        access_log = f"{host.root_dir}/logs/nginx/access.log"
        fail2ban_files = [
            file("fail2ban-status-filter", "/etc/fail2ban/filter.d/aiia-nginx-status-auth.conf",
                 render("host/fail2ban-status-auth.conf.j2", status_domain=platform.status_domain),
                 "true", packages),
            file("fail2ban-abuse-filter", "/etc/fail2ban/filter.d/aiia-nginx-abuse.conf",
                 render("host/fail2ban-abuse.conf.j2"), "true", packages),
        ]
        fail2ban_files.append(file(
            "fail2ban-jail", "/etc/fail2ban/jail.d/aiia.conf",
            render("host/fail2ban-jail.conf.j2", ban_time_s=fail2ban.ban_time_s,
                   find_time_s=fail2ban.find_time_s, ssh_port=host.ssh.port,
                   ssh_max_retry=fail2ban.ssh_max_retry,
                   status_auth_max_retry=fail2ban.status_auth_max_retry,
                   abuse_max_retry=fail2ban.abuse_max_retry, access_log=access_log,
                   ignore_addresses=fail2ban.ignore_addresses),
            # The log it reads exists before nginx's first line (fail2ban refuses a missing one).
            # A restart, not a reload: fail2ban 1.1's reload drops a jail's actions when they
            # change (fail2ban/fail2ban#3860), as sshd's do on Debian 13 (nftables, Debian's
            # default there, to iptables): its bans would be logged and never applied.
            f"install -d -m 0755 {shlex.quote(host.root_dir + '/logs/nginx')} && "
            f"touch {shlex.quote(access_log)} && "
            "fail2ban-client -t >/dev/null && systemctl restart fail2ban",
            *fail2ban_files, docker_firewall[-1]))
        swap = host_command(
            f"{name}-swap", connection, render("host/swap.sh.j2", swap_mb=host.swap_mb,
                                        swap_file=provision.swap_file),
            opts=child(packages))
        # After sshd has its policy: the SSH port is allowed before ufw is enabled.
        firewall = host_command(
            f"{name}-firewall", connection,
            render("host/firewall.sh.j2", ssh_port=host.ssh.port,
                   rules=[f"{host.ssh.port}/tcp", "80/tcp", "443/tcp",
                          # The dashboard listens on the status network's gateway, for
                          # nginx's address there alone (components/platform/networks.py).
                          f"from {platform.nginx_status_address} to {platform.status_gateway} "
                          f"port {platform.dashboard.port} proto tcp"]),
            opts=child(files[1]))
        # After every host file: unattended-upgrades' origins, daemon.json's live-restore.
        updates = security_updates(name, connection, self, provision.unattended_upgrades,
                                   packages, *files)
        baseline = kernel_and_account_defaults(name, connection, self, updates, files[0])
        self.preflight = host_command(
            f"{name}-preflight", connection,
            render("host/preflight.sh.j2", user=user, **engine_requirement(host)),
            opts=child(*files, *docker_firewall, *fail2ban_files, swap, firewall, updates,
                       *baseline))
        # Its baseline once everything above has changed the host.
        IntegrityCheck(f"{name}-integrity", IntegrityCheckArgs(
            connection=connection, root_dir=host.root_dir,
            time_of_day=provision.integrity_check_time,
            memory_mb=provision.integrity_check_memory_mb, after=[self.preflight]),
            opts=child(packages))
        self.register_outputs({})
