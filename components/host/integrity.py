"""The host's nightly file-integrity check (review H3): AIDE, Debian's package `aide` (its
binary alone: the packages step installs without recommends, so not aide-common's own
configuration, timer or mail).

What it watches (templates/host/integrity/aide.conf.j2): the system's configuration, its
programs and libraries, the boot files, the operators' homes, cron's spool, the dashboard's
package and the program's root scripts: a file's content (SHA-256), owner, mode, links,
extended attributes, ACLs and capabilities.

When: a baseline once the host is provisioned (`pulumi up`, and again when what is watched
changes), then each night at host.provision.integrity_check_time a check against it, whose
state becomes the next night's baseline: each report lists what changed in one day (the
program's own deploys and the security updates included, on the night after), not
everything since provisioning, which would grow with every update until nobody reads it.
The host's baseline comes before the platform exists, so the first night lists what the
platform then installed (the dashboard's package under /opt, the job scripts).

Where the result goes: AIDE's report to the journal (`journalctl -u aiia-integrity`), a
summary to SUMMARY_PATH, which the dashboard's host tile reads (dashboard/host.py) and warns
on; a check that failed or did not run for a day is a warning too.

What it does not do: survive root. The baseline is on the host, where root can rewrite it
with AIDE itself; a report shows a change once, the night after it happened.

What it costs: nothing resident; the run's peak is measured on the stand-in
(tests/e2e/test_vps.py) and capped by the unit's MemoryMax, counted in the memory budget as
a transient job (host.provision.integrity_check_memory_mb).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi

from components.host.connection import HostConnection, HostFile, HostFileArgs, host_command
from components.host.templates import render

INTEGRITY_PACKAGES = ("aide",)
STATE_DIRECTORY = "aiia-integrity"  # the unit's StateDirectory, under /var/lib
STATE_DIR = f"/var/lib/{STATE_DIRECTORY}"
# dashboard/host.py reads it (the dashboard imports nothing of the program's).
SUMMARY_PATH = f"{STATE_DIR}/summary.json"
CONFIG_PATH = "/etc/aiia-integrity.conf"
SCRIPT_PATH = "/usr/local/sbin/aiia-integrity"
# A template unit, the instance the script's command: aiia-integrity@check (the timer's),
# aiia-integrity@init (the baseline).
UNIT_TEMPLATE = "aiia-integrity@.service"
CHECK_UNIT = "aiia-integrity@check.service"
BASELINE_UNIT = "aiia-integrity@init.service"
TIMER = "aiia-integrity.timer"
# The summary lists the first paths of each kind of change; the journal has them all.
PATHS_LISTED = 20
# A night's check reads every watched file: minutes on a slow disk at the lowest priority.
TIMEOUT_S = 1800
# Rewritten by the system itself (AIDE's regular expressions, anchored at the start).
EXCLUDED = (r"/etc/(hostname|hosts|resolv\.conf|mtab|adjtime|ld\.so\.cache)$",
            r"/root/\.(bash_history|lesshst|viminfo|cache)",
            r"/home/[^/]+/\.(bash_history|lesshst|viminfo|cache)")


def watched_paths(root_dir: str) -> tuple[str, ...]:
    """Where something an intruder leaves would survive a reboot or run as root."""
    return ("/etc", "/usr", "/boot", "/root", "/home", "/var/spool/cron", "/opt",
            f"{root_dir}/bin")


def render_aide_conf(root_dir: str) -> str:
    return render("host/integrity/aide.conf.j2", root_dir=root_dir, state_dir=STATE_DIR,
                  watched=watched_paths(root_dir), excluded=EXCLUDED)


def render_script() -> str:
    return render("host/integrity/aiia-integrity.sh.j2", config_path=CONFIG_PATH,
                  state_dir=STATE_DIR, summary_path=SUMMARY_PATH, paths_listed=PATHS_LISTED)


def render_units(time_of_day: str, memory_mb: int) -> dict[str, str]:
    """{unit file name: content}."""
    return {UNIT_TEMPLATE: render("host/integrity/aiia-integrity@.service.j2",
                                  script=SCRIPT_PATH, state_directory=STATE_DIRECTORY,
                                  timeout_s=TIMEOUT_S, memory_mb=memory_mb),
            TIMER: render("host/integrity/aiia-integrity.timer.j2", time=time_of_day,
                          unit=CHECK_UNIT)}


@dataclass
class IntegrityCheckArgs:
    connection: HostConnection
    root_dir: str
    time_of_day: str  # host.provision.integrity_check_time
    memory_mb: int  # host.provision.integrity_check_memory_mb
    after: list[pulumi.Resource]  # the baseline is taken once these have changed the host


class IntegrityCheck(pulumi.ComponentResource):
    """AIDE's configuration, the script, the nightly unit and timer, and the baseline."""

    def __init__(self, name: str, args: IntegrityCheckArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:host:IntegrityCheck", name, None, opts)

        config = render_aide_conf(args.root_dir)
        units = render_units(args.time_of_day, args.memory_mb)
        # (key, path, content, what checks or applies it, mode)
        steps = [("config", CONFIG_PATH, config, f"aide --config-check --config={CONFIG_PATH}",
                  "0644"),
                 ("script", SCRIPT_PATH, render_script(), "true", "0755"),
                 ("unit", f"/etc/systemd/system/{UNIT_TEMPLATE}", units[UNIT_TEMPLATE],
                  "systemctl daemon-reload", "0644"),
                 ("timer", f"/etc/systemd/system/{TIMER}", units[TIMER],
                  f"systemctl daemon-reload && systemctl enable --quiet {TIMER} && "
                  f"systemctl restart {TIMER}", "0644")]
        # One after the other, once `after` is done: out of the first run's widest burst of
        # SSH connections, which sshd's per-address limit is sized to (provision.py).
        previous = list(args.after)
        for key, path, content, on_change, mode in steps:
            previous = [HostFile(f"{name}-{key}",
                                 HostFileArgs(connection=args.connection, path=path,
                                              content=content, mode=mode, owner="0:0",
                                              on_change=on_change),
                                 opts=pulumi.ResourceOptions(parent=self, depends_on=previous))]
        # Again whenever what is watched changes (else the next check reports every file
        # the new rules add or drop); through the unit, so the baseline is made in the same
        # sandbox and memory cap as the nightly check.
        self.baseline = host_command(
            f"{name}-baseline", args.connection,
            render("host/integrity/baseline.sh.j2", unit=BASELINE_UNIT),
            triggers=[hashlib.sha256(config.encode()).hexdigest()],
            opts=pulumi.ResourceOptions(parent=self, depends_on=previous))
        self.register_outputs({})
