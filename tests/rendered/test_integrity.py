"""The nightly file-integrity check prod's program renders (components/host/integrity.py),
run by the real AIDE and systemd of both supported releases: a throwaway VPS stand-in of each
boots systemd (as tests/harness/vps.py starts one), the rendered files are installed where the
host has them, the baseline and two nightly checks run through the unit, in its sandbox and
memory cap, with intrusions planted between them, and the summary the dashboard reads is
checked. AIDE's peak memory on the release's own system is printed for the closing note.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.host.integrity import (
    BASELINE_UNIT,
    CHECK_UNIT,
    CONFIG_PATH,
    SCRIPT_PATH,
    STATE_DIR,
    SUMMARY_PATH,
    TIMER,
)
from tests.rendered.test_host import IMAGES

pytestmark = pytest.mark.rendered

SCRIPT = r"""
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends aide >/dev/null
for file in /aiia/*; do
  target=$(cat "$file.path" 2>/dev/null) || continue
  install -D -m "$(cat "$file.mode")" "$file" "$target"
done
mkdir -p "$ROOT_DIR/bin"
systemctl daemon-reload
systemctl enable --quiet "$TIMER" && systemctl restart "$TIMER"
echo "TIMER $(systemctl show -p TimersCalendar --value "$TIMER")"
bash /aiia/baseline.sh
echo "BASELINE $(cat "$SUMMARY")"
# An intruder's night: a binary, a cron job, a key, an account.
printf '#!/bin/sh\n' > /usr/local/bin/backdoor && chmod 0755 /usr/local/bin/backdoor
mkdir -p /var/spool/cron/crontabs
echo '* * * * * /usr/local/bin/backdoor' > /var/spool/cron/crontabs/root
mkdir -p /root/.ssh && echo 'ssh-ed25519 AAAA intruder' >> /root/.ssh/authorized_keys
echo 'intruder:x:0:0::/root:/bin/bash' >> /etc/passwd
systemctl start "$CHECK_UNIT" && echo "FIRST $(cat "$SUMMARY")"
systemctl start "$CHECK_UNIT" && echo "SECOND $(cat "$SUMMARY")"
echo "JOURNAL"; journalctl --unit="$CHECK_UNIT" --no-pager --output=cat | grep -c backdoor
# AIDE's peak, as the nightly run makes it (a check, then a new database).
echo "PEAK $(python3 -c 'import resource, subprocess, sys
subprocess.run(["aide", "--update", "--config=" + sys.argv[1]], stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$CONFIG")"
echo "MODES $(stat -c '%a %U' "$STATE_DIR" "$STATE_DIR/aide.db.gz" "$SUMMARY" | tr '\n' ' ')"
# Without a baseline the check fails, and says so.
rm "$STATE_DIR/aide.db.gz"
if systemctl start "$CHECK_UNIT"; then outcome=started; else outcome=failed; fi
echo "NO-BASELINE $outcome"
echo "UNBASED $(cat "$SUMMARY")"
journalctl --unit="$CHECK_UNIT" --no-pager --output=cat | grep -m1 'no baseline' || true
"""


@contextlib.contextmanager
def booted_standin(image: str, mounted: Path) -> Iterator[str]:
    """A throwaway VPS stand-in with systemd booted, as tests/harness/vps.py starts one (no
    network of its own, no SSH), `mounted` at /aiia; yields its container name."""
    name = f"aiia-rendered-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--hostname", "vps",
                    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
                    "--cap-add", "DAC_READ_SEARCH", "--security-opt", "seccomp=unconfined",
                    "--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                    "--tmpfs", "/run", "--tmpfs", "/run/lock", "-v", f"{mounted}:/aiia:ro",
                    "--memory", "1g", image],
                   check=True, capture_output=True, text=True)
    try:
        deadline = time.monotonic() + 90
        while subprocess.run(["docker", "exec", name, "systemctl", "is-system-running"],
                             capture_output=True, text=True).stdout.strip() not in (
                                 "running", "degraded"):
            assert time.monotonic() < deadline, "systemd did not boot"
            time.sleep(0.5)
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def summary(output: str, label: str) -> dict:
    return json.loads(output.split(f"\n{label} ")[1].splitlines()[0])


@pytest.fixture(scope="module", params=sorted(IMAGES), ids=lambda version: f"debian{version}")
def checked(request, rendered, tmp_path_factory) -> str:
    """The output of the baseline, two nightly checks and a check without a baseline, on the
    release's own systemd and AIDE."""
    prod = rendered["prod"]
    directory = tmp_path_factory.mktemp("integrity")
    modes = {CONFIG_PATH: "0644", SCRIPT_PATH: "0755", f"/etc/systemd/system/{TIMER}": "0644",
             "/etc/systemd/system/aiia-integrity@.service": "0644"}
    for index, (path, mode) in enumerate(sorted(modes.items())):
        (directory / f"file-{index}").write_text(prod.files[path])
        (directory / f"file-{index}.path").write_text(path)
        (directory / f"file-{index}.mode").write_text(mode)
    (directory / "baseline.sh").write_text(prod.script("host-integrity-baseline"))
    settings = prod.settings
    environment = {"ROOT_DIR": settings.host.root_dir, "TIMER": TIMER,
                   "CHECK_UNIT": CHECK_UNIT, "SUMMARY": SUMMARY_PATH,
                   "STATE_DIR": STATE_DIR, "CONFIG": CONFIG_PATH}
    with booted_standin(IMAGES[request.param], directory) as name:
        result = subprocess.run(
            ["docker", "exec", *[f"--env={key}={value}" for key, value in environment.items()],
             name, "bash", "-euo", "pipefail", "-c", SCRIPT],
            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    peak_kb = int(result.stdout.split("\nPEAK ")[1].split()[0])
    print(f"debian{request.param}: AIDE's nightly run peaks at {peak_kb // 1024} MB RSS for "
          f"{summary(result.stdout, 'SECOND')['entries']} entries")
    return result.stdout


def test_the_timer_runs_the_check_at_the_configured_time(checked, rendered):
    time_of_day = rendered["prod"].settings.host.provision.integrity_check_time
    assert f"OnCalendar=*-*-* {time_of_day}:00" in checked.split("TIMER ")[1].splitlines()[0]


def test_the_baseline_is_made_through_the_unit(checked):
    baseline = summary(checked, "BASELINE")
    assert (baseline["kind"], baseline["outcome"]) == ("baseline", "unchanged")
    assert baseline["entries"] > 3000


def test_the_nightly_check_reports_what_an_intruder_left_and_then_starts_from_it(checked):
    first = summary(checked, "FIRST")
    assert first["outcome"] == "changed", first
    assert {"/usr/local/bin/backdoor", "/var/spool/cron/crontabs/root",
            "/root/.ssh/authorized_keys"} <= set(first["added_paths"]), first
    assert "/etc/passwd" in first["changed_paths"], first
    # The report is in the journal too, every path of it.
    assert int(checked.split("JOURNAL\n")[1].splitlines()[0]) >= 1
    second = summary(checked, "SECOND")
    assert (second["outcome"], second["added"], second["changed"]) == ("unchanged", 0, 0)


def test_the_database_is_roots_and_the_summary_readable_by_the_dashboard(checked):
    modes = checked.split("MODES ")[1].split("\n")[0].split()
    assert modes == ["755", "root", "600", "root", "644", "root"], modes


def test_without_a_baseline_the_check_fails_and_says_so(checked):
    assert "NO-BASELINE failed" in checked
    assert summary(checked, "UNBASED")["outcome"] == "failed"
    assert "no baseline at /var/lib/aiia-integrity/aide.db.gz" in checked


def test_aides_peak_fits_the_units_memory_cap_with_room(checked, rendered):
    peak_kb = int(checked.split("\nPEAK ")[1].split()[0])
    cap_mb = rendered["prod"].settings.host.provision.integrity_check_memory_mb
    assert peak_kb < cap_mb * 1024 / 2, (peak_kb, cap_mb)


def test_the_baseline_runs_in_the_same_unit_as_the_check():
    assert BASELINE_UNIT.split("@")[0] == CHECK_UNIT.split("@")[0]
