"""Review M9: a reboot an update needs (/run/reboot-required) on the host tile, as a warning."""

from __future__ import annotations

import os

from dashboard import alerts
from dashboard.host import reboot_required
from dashboard.timestamps import parse_utc

NOW = parse_utc("2026-12-06T12:00:00Z")


def test_no_marker_no_reboot(tmp_path):
    assert reboot_required(tmp_path / "reboot-required") is None


def test_the_marker_says_since_when_and_for_which_packages(tmp_path):
    marker = tmp_path / "reboot-required"
    marker.touch()
    os.utime(marker, (NOW - 3600, NOW - 3600))
    # As Debian's kernel hook writes it (/etc/kernel/postinst.d/unattended-upgrades).
    (tmp_path / "reboot-required.pkgs").write_text("linux-image-6.12.57+deb13-amd64\n"
                                                    "linux-image-6.12.57+deb13-amd64\n")
    assert reboot_required(marker) == {"since": "2026-12-06T11:00:00Z",
                                       "packages": ["linux-image-6.12.57+deb13-amd64"]}


def test_a_needed_reboot_is_a_warning_on_the_host(tmp_path):
    host = {"memory": {}, "swap": {}, "disk": {}, "load": [0], "cpu": {"count": 1},
            "reboot_required": {"since": "2026-12-06T11:00:00Z",
                                "packages": ["linux-image-6.12.57+deb13-amd64"]}}
    (raised,) = [a for a in alerts.evaluate({"host": host}, NOW) if a["area"] == "host"]
    assert (raised["severity"], raised["subject"]) == ("warning", "reboot")
    assert "linux-image-6.12.57+deb13-amd64" in raised["message"]
    del host["reboot_required"]
    assert not [a for a in alerts.evaluate({"host": host}, NOW) if a["area"] == "host"]
