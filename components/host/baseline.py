"""What a CIS-style audit of a Debian server asks for (issue #25 item 2) beside what
components/host/provision.py already sets (sshd, sysctl, firewall):

- the security updates pending on a fresh VPS, applied by the first run;

- rarely used network protocols (DCCP, SCTP, RDS, TIPC) cannot be loaded;
- no core dumps: none from a login session (pam_limits), none kept by systemd-coredump if it
  is ever installed; the kernel's own setting (kernel.core_pattern, fs.suid_dumpable) is in
  templates/host/sysctl.conf.j2 with the other sysctls;
- /etc/login.defs: a umask of 027 for login sessions, private home directories, explicit
  password-hashing costs, and no password ageing (below, why).

None of it runs resident: no memory is added to host.os_reserve_mb. Process accounting
(acct) is left out: it writes a record for every process that ends, and this host starts one
per health check of every container every few seconds (docker exec), a steady disk write on a
20 GB host for a record the audit trail (auditd, journald) and the release history already
keep in the form an operator reads.
"""

from __future__ import annotations

import pulumi

from components.host.connection import HostConnection, HostFile, HostFileArgs, host_command
from components.host.templates import render

RARE_PROTOCOLS = ("dccp", "sctp", "rds", "tipc")
MODPROBE_FILE = "/etc/modprobe.d/aiia-rare-protocols.conf"
# (key, value, why), in /etc/login.defs.
LOGIN_DEFAULTS = (
    ("UMASK", "027", "What a login session creates is not readable by other accounts (pam_umask "
     "reads it on Debian 13). The program's own commands keep 022 through sudo "
     "(templates/host/sudoers.j2), their files' modes are set one by one."),
    ("HOME_MODE", "0750", "A new account's home directory is not open to the others."),
    ("ENCRYPT_METHOD", "YESCRYPT", "Debian's PAM default; chpasswd and newusers hash the same."),
    ("YESCRYPT_COST_FACTOR", "5", "libxcrypt's default, stated for the audit and not raised: "
     "each step doubles the time and memory of one password check on a 512 MB host, and no "
     "account here logs in with a password."),
    ("SHA_CRYPT_MIN_ROUNDS", "65536", "If a tool is told to hash with SHA-512 instead."),
    ("SHA_CRYPT_MAX_ROUNDS", "65536", "The same, as an upper bound."),
    ("PASS_MIN_DAYS", "1", "A password set on purpose is not changed back at once."),
    ("PASS_MAX_DAYS", "99999", "No expiry: every login is by key (sshd's AuthenticationMethods "
     "publickey), and an expired password on a key-only account still locks it out: PAM's "
     "account check asks for a new password, which a non-interactive deploy cannot give."),
    ("PASS_WARN_AGE", "7", "Debian's default, stated."),
)


def security_updates(name: str, connection: HostConnection, parent: pulumi.Resource,
                     enabled: bool, *after: pulumi.Resource) -> pulumi.Resource:
    """The pending security updates applied once, by unattended-upgrade, after `after` (the
    packages, unattended-upgrades' own configuration, Docker's daemon.json) and before the
    platform's containers (the host's preflight waits for it). Re-run only when the script
    changes; from then on the daily unattended-upgrades run keeps the host current."""
    return host_command(f"{name}-security-updates", connection,
                        render("host/security-updates.sh.j2", enabled=enabled),
                        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(after)))


def kernel_and_account_defaults(name: str, connection: HostConnection,
                                parent: pulumi.Resource,
                                *after: pulumi.Resource) -> list[pulumi.Resource]:
    """The files and the login.defs step, each after `after`: the security updates (a
    login.defs changed first would hold back an update of its package, a conffile), and the
    deploy user's sudo rule, which keeps the program's own umask once login.defs's applies."""
    opts = pulumi.ResourceOptions(parent=parent, depends_on=list(after))

    def file(key: str, path: str, content: str, on_change: str) -> HostFile:
        return HostFile(f"{name}-{key}",
                        HostFileArgs(connection=connection, path=path, content=content,
                                     mode="0644", owner="0:0", on_change=on_change), opts=opts)

    # modprobe's dry run resolves each name through the file (no module needs to exist).
    refused = " && ".join(f"modprobe -n -v {module} 2>&1 | grep -q 'install /bin/false'"
                          for module in RARE_PROTOCOLS)
    return [
        file("modprobe-rare-protocols", MODPROBE_FILE,
             render("host/modprobe-rare-protocols.conf.j2", modules=RARE_PROTOCOLS), refused),
        file("core-dumps-limits", "/etc/security/limits.d/aiia-no-core-dumps.conf",
             render("host/core-dumps-limits.conf.j2"), "true"),
        file("core-dumps-coredump", "/etc/systemd/coredump.conf.d/aiia-no-core-dumps.conf",
             render("host/core-dumps-coredump.conf.j2"), "true"),
        host_command(f"{name}-login-defs", connection,
                     render("host/login-defs.sh.j2", settings=LOGIN_DEFAULTS), opts=opts),
    ]
