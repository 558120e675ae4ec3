"""The audit trail prod's program renders (components/host/audit.py), run by the real auditd
and augenrules of both supported releases against a real kernel.

Why not on the VPS stand-in: the kernel's audit answers only its initial PID and user
namespaces (kernel/audit.c, audit_netlink_ok), and the stand-in is a container with its own
PID namespace and no CAP_AUDIT_CONTROL; there the units are skipped
(templates/host/audit/in-a-container.conf.j2; tests/e2e/test_vps.py shows it). Here a
throwaway container of each release's stand-in joins this machine's PID namespace and is
given the audit capabilities, so its auditd is the kernel's one audit daemon while it runs:
the rules are loaded as augenrules loads them on the VPS, a logged-in user's sudo and a write
under /etc are made, and the records are read back with ausearch. The watches name the
container's own files (inodes of its filesystem), so nothing of this machine is watched; the
one rule that is not a watch matches only processes with a login uid, which the test gives
itself. Afterwards the kernel's rules are deleted and auditing switched off again, as found;
if another audit daemon already runs here, the test is skipped rather than displacing it.
"""

from __future__ import annotations

import subprocess

import pytest

from components.host.audit import AUDIT_LOG_FILES, AUDIT_LOG_MAX_MB, RULES_FILE, audit_paths
from tests.rendered.test_host import IMAGES

pytestmark = pytest.mark.rendered
LOGIN_UID = 4242  # the operator's, as pam_loginuid sets it at an SSH login
AUDITD_COUNTED_KB = 1024  # 0.4 MB measured on both releases; 1 MB counted

SCRIPT = r"""
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends auditd sudo >/dev/null
state=$(auditctl -s)
if ! grep -qx 'pid 0' <<<"$state"; then echo "another audit daemon runs: $state"; exit 77; fi
enabled=$(awk '$1 == "enabled" {print $2}' <<<"$state")
cleanup() {
  auditctl -D >/dev/null 2>&1 || true
  [ -f /run/auditd.pid ] && kill "$(cat /run/auditd.pid)" 2>/dev/null
  sleep 1
  auditctl -e "$enabled" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cp /aiia/auditd.conf /etc/audit/auditd.conf
cp /aiia/rules /etc/audit/rules.d/50-aiia.rules
for directory in $WATCHED_DIRECTORIES; do mkdir -p "$directory"; done
echo secret > "$ROOT_DIR/secrets/database_password"
useradd -m -u 1000 deploy
useradd -M -u "$LOGIN_UID" ops
echo 'deploy ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/deploy
auditd
augenrules --load >/dev/null
echo "RULES"; auditctl -l
# A login: pam_loginuid gives the session its login uid, which sudo keeps.
(
  echo "$LOGIN_UID" > /proc/self/loginuid
  setpriv --reuid=1000 --regid=1000 --init-groups -- sudo -n bash -c \
    "echo 'intruder:x:0:0::/root:/bin/bash' >> /etc/passwd &&
     cat $ROOT_DIR/secrets/database_password >/dev/null"
)
sleep 2
for key in aiia-as-root aiia-accounts aiia-secrets-read; do
  echo "KEY $key"; ausearch --input-logs -i -k "$key" 2>&1 || true
done
rollup=/proc/$(cat /run/auditd.pid)/smaps_rollup
echo "MEMORY $(awk '/^(Pss|Anonymous):/ {printf "%s ", $2}' "$rollup")"
echo "LOGS $(awk '$1 == "max_log_file" || $1 == "num_logs" {printf "%s=%s ", $1, $3}' \
  /etc/audit/auditd.conf)"
"""


@pytest.fixture(scope="module", params=sorted(IMAGES), ids=lambda version: f"debian{version}")
def audited(request, rendered, tmp_path_factory) -> str:
    """The trail's records, on the release's own auditd, after a sudo and an /etc write."""
    tmp_path = tmp_path_factory.mktemp("audit")
    files = rendered["prod"].files
    settings = rendered["prod"].settings
    (tmp_path / "rules").write_text(files[RULES_FILE])
    (tmp_path / "auditd.conf").write_text(files["/etc/audit/auditd.conf"])
    paths = audit_paths(settings.host.root_dir, settings.host.ssh.user)
    result = subprocess.run(
        ["docker", "run", "--rm", "--pid=host", "--cap-add", "AUDIT_CONTROL",
         "--cap-add", "AUDIT_READ", "--cap-add", "AUDIT_WRITE",
         "--cap-add", "SYS_NICE", "-v", f"{tmp_path}:/aiia:ro",
         "-e", f"WATCHED_DIRECTORIES={' '.join(paths.directories)}",
         "-e", f"ROOT_DIR={settings.host.root_dir}", "-e", f"LOGIN_UID={LOGIN_UID}",
         IMAGES[request.param], "bash", "-euo", "pipefail", "-c", SCRIPT],
        capture_output=True, text=True, timeout=300, check=False)
    if result.returncode == 77:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    print(f"debian{request.param}: auditd {result.stdout.split('MEMORY ')[1].splitlines()[0]}"
          "(kB PSS, anonymous)")
    return result.stdout


def records(output: str, key: str) -> str:
    return output.split(f"KEY {key}\n")[1].split("KEY ")[0]


def test_every_rule_of_the_program_loads(audited, rendered):
    loaded = audited.split("RULES\n")[1].split("KEY ")[0]
    rules = [line for line in rendered["prod"].files[RULES_FILE].splitlines()
             if line.startswith("-")]
    # auditctl -l lists a watch's key as `-k`, a system-call rule's as `-F key=`.
    assert sum(("-k aiia-" in line or "-F key=aiia-" in line)
               for line in loaded.splitlines()) == len(rules), loaded


def test_a_logged_in_users_sudo_is_recorded_with_the_login_user_and_the_command(audited):
    sudo = records(audited, "aiia-as-root")
    assert "exe=/usr/bin/sudo" in sudo, sudo
    assert "auid=ops" in sudo, sudo
    assert "intruder:x:0:0" in sudo, sudo  # the command sudo ran, from its argv


def test_a_write_under_etc_and_a_read_of_a_secret_are_recorded(audited):
    accounts = records(audited, "aiia-accounts")
    assert "name=/etc/passwd" in accounts and "auid=ops" in accounts, accounts
    secret = records(audited, "aiia-secrets-read")
    assert "database_password" in secret, secret


def test_the_trail_is_capped_and_rotated_by_auditd(audited):
    assert f"max_log_file={AUDIT_LOG_MAX_MB} num_logs={AUDIT_LOG_FILES}" in audited


def test_auditd_resident_memory_is_within_what_the_budget_counts(audited):
    pss_kb, anonymous_kb = (int(value) for value in
                            audited.split("MEMORY ")[1].split()[:2])
    # What Pulumi.prod.yaml's host.os_reserve_mb comment counts for it.
    assert anonymous_kb <= AUDITD_COUNTED_KB, (pss_kb, anonymous_kb)
