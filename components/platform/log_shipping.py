"""The host's own trail shipped off the host as it is written (review H3): every minute a cron
entry runs {root}/bin/ship-logs.sh, which exports the journal's new entries (from a saved
cursor) and the audit trail's new lines (from a saved offset, through auditd's rotation),
compresses and encrypts each to the backups' keys, and sends it with the backups' copy key to
the off-host receiver's `log FILE` request (templates/backup/receive-backup.sh.j2), which
stores it read-only and never overwrites. A chunk the target has not taken waits on the host,
in order, up to PENDING_CAP_MB; the saved position advances only when the receiver took it.

Nothing is resident: a bash, journalctl, gzip, gpg and ssh for a second or two a minute. The
daily backup still carries the last day of both (backup.sh's host_logs), for a host that
has no off-host target. Without platform.backup.off_host nothing is exported and
{root}/state/log-shipping.json says so; on a developer's machine (a local stack) the journal
and the audit trail are the developer's, not the stack's: nothing is exported either.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.host.connection import HostFile, HostFileArgs
from components.host.templates import render
from components.platform.context import PlatformContext

AUDIT_DIR = "/var/log/audit"
# The receiver's bound on one chunk (MAX_LOG_BYTES there): a minute of this host's journal is
# kilobytes; a chunk past it is not made, and the status says so.
MAX_CHUNK_BYTES = 16 * 1024 * 1024
# What may wait on the host while the target is unreachable: past it nothing new is exported
# (the journal and the audit files keep it, within their own caps) until the target takes some.
PENDING_CAP_MB = 64


def shipping_note(off_host: bool, host_logs: bool) -> str:
    """What the status says about what this host ships, in words."""
    if not off_host:
        return ("platform.backup.off_host is not set: nothing is shipped; the journal and the "
                "audit trail leave the host only with the daily backup")
    if not host_logs:
        return ("a developer's machine: its journal and audit trail are not the stack's; "
                "nothing is exported")
    return "the journal and the audit trail go to the off-host receiver every minute"


def render_ship_logs(root_dir: str, off_host, host_logs: bool) -> str:
    return render("logs/ship-logs.sh.j2", root_dir=root_dir, off_host=off_host,
                  host_logs=host_logs, audit_dir=AUDIT_DIR, max_chunk_bytes=MAX_CHUNK_BYTES,
                  pending_cap_mb=PENDING_CAP_MB,
                  note=shipping_note(off_host is not None, host_logs))


@dataclass
class LogShippingArgs:
    context: PlatformContext
    # The backups' keys and, with an off-host target, its copy key and known_hosts.
    depends_on: list[pulumi.Resource]


class LogShipping(pulumi.ComponentResource):
    def __init__(self, name: str, args: LogShippingArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:platform:LogShipping", name, None, opts)
        context = args.context
        self.script_path = context.host_path("bin", "ship-logs.sh")
        script = HostFile(
            f"{name}-script",
            HostFileArgs(connection=context.connection, path=self.script_path,
                         content=render_ship_logs(
                             context.root_dir, context.platform.backup.off_host,
                             host_logs=context.settings.host.kind == "ssh"),
                         mode="0750"),
            opts=pulumi.ResourceOptions(parent=self))
        self.cron = HostFile(
            f"{name}-cron",
            HostFileArgs(connection=context.connection, path=context.cron_file("ship-logs"),
                         content=render("cron/ship-logs.cron.j2", script=self.script_path,
                                        log=context.host_path("logs", "ship-logs.log")),
                         mode="0644"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[script, *args.depends_on]))
        self.register_outputs({"script_path": self.script_path})
