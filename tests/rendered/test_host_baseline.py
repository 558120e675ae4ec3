"""The kernel and account defaults of a CIS-style audit (components/host/baseline.py), as
prod's program renders them, run in the VPS stand-ins of both supported releases.

Not here: what needs a VPS's kernel or a booted host (modprobe, which the stand-in image
lacks until the packages step installs kmod; sshd's PAM session limits): the e2e test on the
stand-in, tests/e2e/test_vps.py.
"""

from __future__ import annotations

import pytest

from components.host.baseline import LOGIN_DEFAULTS
from tests.rendered.test_host import IMAGES, host_files, in_vps

pytestmark = pytest.mark.rendered


@pytest.fixture(params=sorted(IMAGES), ids=lambda version: f"debian{version}")
def debian(request) -> str:
    return request.param


def test_login_defs_takes_the_defaults_once_and_the_program_keeps_its_own_umask(
        debian, rendered, tmp_path):
    """New accounts get a private home and (where PAM reads login.defs's UMASK, Debian 13's
    pam_umask) a 027 umask; the deploy user's commands through sudo keep 022, which the
    program's scripts were written for."""
    script = rendered["prod"].script("host-login-defs")
    sudoers = host_files(rendered)["/etc/sudoers.d/aiia-deploy"]
    result = in_vps(debian, {"/opt/login-defs.sh": script, "/etc/sudoers.d/aiia-deploy": sudoers},
                    "bash /opt/login-defs.sh && bash /opt/login-defs.sh && "
                    "useradd -m -s /bin/bash probe && useradd -m -s /bin/bash deploy && "
                    "stat -c %a /home/probe && su - probe -c umask && "
                    "su - deploy -c 'sudo -n bash -c umask' && cat /etc/login.defs",
                    tmp_path, modes={"/etc/sudoers.d/aiia-deploy": 0o440})
    lines = result.stdout.splitlines()
    first, second, home, session_umask, sudo_umask = lines[:5]
    assert first.startswith("login.defs: set UMASK"), result.stdout
    assert second == "login.defs: unchanged"
    assert home == "750"
    # Debian 13: 027, whose group bits pam_umask gives the owner's (USERGROUPS_ENAB: the
    # group is the user's own, no one else's); others get nothing. Debian 12's PAM does not
    # read login.defs's UMASK (no pam_umask in common-session).
    assert session_umask == ("0007" if debian == "13" else "0022"), session_umask
    assert sudo_umask == "0022"
    # Each key once, at its value, as shadow's programs read it (the first match).
    defs = [line.split() for line in lines[5:] if line and not line.startswith("#")]
    for key, value, _ in LOGIN_DEFAULTS:
        assert [entry[1:] for entry in defs if entry[0] == key] == [[value]], key


def test_sudo_s_log_past_its_cap_is_rotated_and_sudo_logs_to_a_new_one(debian, rendered,
                                                                      tmp_path):
    """Review L8: /var/log/sudo.log (the deploy user's every command as root) is capped."""
    files = host_files(rendered)
    config = {"/etc/logrotate.d/aiia": files["/etc/logrotate.d/aiia"],
              "/etc/sudoers.d/aiia-deploy": files["/etc/sudoers.d/aiia-deploy"]}
    script = ("useradd -m deploy && seq 1 7000000 > /var/log/sudo.log && "
              "logrotate -s /tmp/state /etc/logrotate.d/aiia && "
              "su - deploy -c 'sudo -n true' && ls /var/log && "
              "stat -c '%a %U' /var/log/sudo.log && cat /var/log/sudo.log-* | wc -l && "
              "grep -c 'COMMAND=/usr/bin/true' /var/log/sudo.log")
    output = in_vps(debian, config, script, tmp_path,
                    modes={"/etc/sudoers.d/aiia-deploy": 0o440}).stdout.split("\n")
    assert any(name.startswith("sudo.log-") for name in output), output
    assert output[-4:-1] == ["600 root", "7000000", "1"], output
