"""The host's audit trail (review H3): the kernel's audit subsystem through Debian's auditd.

What it records (templates/host/audit/aiia.rules.j2): every command run with another user's
rights by someone who logged in (sudo, su), writes to the accounts, sudoers, sshd's
configuration, the operators' authorized_keys, cron and systemd units, use of the Docker
socket by a logged-in user, and any change to (or a logged-in user's read of) the program's
secrets under host.root_dir. Each record names the login user (auid), which sudo keeps.

Where it is kept: /var/log/audit/, rotated by auditd itself at AUDIT_LOG_MAX_MB per file,
AUDIT_LOG_FILES files (templates/host/audit/auditd.conf.j2).

Where it cannot run: inside a container (a container-based VPS, the tests' stand-in) the
kernel's audit answers no one (templates/host/audit/in-a-container.conf.j2); the units are
skipped there instead of failing, and the journal's sshd and sudo lines are the trail.

What it costs: auditd resident, measured by tests/rendered/test_audit.py with the
smaps_rollup method of the host-services memory test (the number is in Pulumi.prod.yaml's
host.os_reserve_mb comment).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import pulumi

from components.host.connection import HostConnection, HostFile, HostFileArgs
from components.host.templates import render

AUDIT_PACKAGES = ("auditd",)
# 8 MB × 5: Debian's own values, kept explicit (a day of the program's own deploys is a few
# hundred kB; the collector and dockerd, services, add nothing).
AUDIT_LOG_MAX_MB = 8
AUDIT_LOG_FILES = 5
# `ausearch -k aiia-…` finds each kind of record; the dashboard and runbooks name these.
KEY_PREFIX = "aiia"
DOCKER_SOCKET = "/run/docker.sock"
RULES_FILE = "/etc/audit/rules.d/50-aiia.rules"
# Debian 13's audit 4.0 loads the rules in audit-rules.service; Debian 12's 3.0 in
# auditd.service itself (ExecStartPost=augenrules --load).
UNITS = ("auditd.service", "audit-rules.service")


@dataclass(frozen=True)
class AuditPaths:
    """What the rules watch beside /etc: the operators' keys and the program's secrets."""

    ssh_key_directories: tuple[str, ...]
    secret_directories: tuple[str, ...]
    secret_files: tuple[str, ...]

    @property
    def directories(self) -> tuple[str, ...]:
        """Directories that must exist before the rules load (a watch on a file needs its
        parent; a directory rule, the directory)."""
        parents = {path.rsplit("/", 1)[0] for path in self.secret_files}
        return tuple(sorted({*self.secret_directories, *parents}))


def audit_paths(root_dir: str, user: str) -> AuditPaths:
    """The operators' authorized_keys (the deploy user's and root's, which provisioning
    empties) and every secret the platform writes under `root_dir`: the releases' secret
    files, the backup keys, PostgreSQL's superuser password and PgBouncer's userlist."""
    return AuditPaths(
        ssh_key_directories=("/root/.ssh", f"/home/{user}/.ssh"),
        secret_directories=(f"{root_dir}/secrets", f"{root_dir}/backup"),
        secret_files=(f"{root_dir}/postgres/superuser-password",
                      f"{root_dir}/pgbouncer/userlist.txt"),
    )


def key_fingerprint(public_key: str) -> str:
    """An OpenSSH public key line's fingerprint as sshd logs it ("Accepted publickey for …
    ssh2: ED25519 SHA256:…"): unpadded base64 of the key blob's SHA-256 (ssh-keygen -lf)."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def known_keys(admin_ssh_keys: tuple[str, ...]) -> dict[str, str]:
    """{fingerprint: the key's name} of the operators' keys (host.provision.admin_ssh_keys),
    for the dashboard to say who logged in: a key's comment, or its place in the list."""
    return {key_fingerprint(line): (" ".join(line.split()[2:]) or f"admin_ssh_keys[{index}]")
            for index, line in enumerate(admin_ssh_keys)}


def render_audit_rules(root_dir: str, user: str) -> str:
    paths = audit_paths(root_dir, user)
    return render("host/audit/aiia.rules.j2", key_prefix=KEY_PREFIX, root_dir=root_dir,
                  docker_socket=DOCKER_SOCKET, ssh_key_directories=paths.ssh_key_directories,
                  secret_directories=paths.secret_directories, secret_files=paths.secret_files)


def render_auditd_conf() -> str:
    return render("host/audit/auditd.conf.j2", max_log_mb=AUDIT_LOG_MAX_MB,
                  num_logs=AUDIT_LOG_FILES)


def render_load_rules(root_dir: str, user: str) -> str:
    return render("host/audit/load-rules.sh.j2", key_prefix=KEY_PREFIX,
                  directories=audit_paths(root_dir, user).directories)


@dataclass
class AuditTrailArgs:
    connection: HostConnection
    root_dir: str
    user: str  # the deploy user (host.ssh.user), whose authorized_keys are watched


class AuditTrail(pulumi.ComponentResource):
    """auditd's configuration, the units' container guard, and the program's rules, loaded."""

    def __init__(self, name: str, args: AuditTrailArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:host:AuditTrail", name, None, opts)

        def file(key: str, path: str, content: str, on_change: str,
                 *after: pulumi.Resource, mode: str = "0640") -> HostFile:
            return HostFile(f"{name}-{key}",
                            HostFileArgs(connection=args.connection, path=path,
                                         content=content, mode=mode, owner="0:0",
                                         on_change=on_change),
                            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)))

        guards = [file(f"{unit.removesuffix('.service')}-guard",
                       f"/etc/systemd/system/{unit}.d/aiia-container.conf",
                       render("host/audit/in-a-container.conf.j2", unit=unit),
                       # A unit that failed before the guard existed is cleared with it.
                       f"systemctl daemon-reload && {{ systemctl reset-failed {unit} "
                       "2>/dev/null || true; }", mode="0644")
                  for unit in UNITS]
        # auditd re-reads its configuration on SIGHUP (auditd(8), SIGNALS).
        config = file("config", "/etc/audit/auditd.conf", render_auditd_conf(),
                      "if systemctl --quiet is-active auditd.service; then "
                      "systemctl kill --kill-whom=main --signal=HUP auditd.service; fi",
                      *guards)
        self.rules = file("rules", RULES_FILE, render_audit_rules(args.root_dir, args.user),
                          render_load_rules(args.root_dir, args.user), config)
        self.register_outputs({})
