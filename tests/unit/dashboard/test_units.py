"""The systemd units of the dashboard: rendered with jinja2, checked by systemd itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from components.host.templates import render as render_template

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
UNITS = ("aiia-dashboard.service", "aiia-dashboard-collect.service", "aiia-dashboard-collect.timer",
         "aiia-dashboard-notify.service", "aiia-dashboard-notify.timer",
         "aiia-dashboard-docker-proxy.socket", "aiia-dashboard-docker-proxy.service")
VARIABLES = {
    # An interpreter that exists here: `systemd-analyze verify` checks ExecStart's binary.
    "python": "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable,
    "install_dir": "/opt/aiia",
    "config_path": "/srv/aiia/dashboard/config.json",
    "state_dir": "/srv/aiia/state/dashboard",
    "root_dir": "/srv/aiia",
    "server_memory_mb": 32,
    "collector_memory_mb": 28,
    "inaccessible_paths": ["/srv/aiia/postgres", "/srv/aiia/secrets"],
    "collector_inaccessible_paths": ["/srv/aiia/postgres", "/srv/aiia/logs/prod"],
    "docker_proxy_socket": "/run/aiia-dashboard-docker-proxy.sock",
    "docker_proxy_memory_mb": 16,
    "docker_proxy_idle_exit_s": 5,
    "allowed_clients": ["172.30.1.2"],
    "notifier_memory_mb": 30,
    "secrets_path": "/srv/aiia/dashboard/notify-secrets.json",
    "notify_dir": "/srv/aiia/state/notify",
    "requests_dir": "/srv/aiia/state/notify-requests",
}
systemd_analyze = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(systemd_analyze is None, reason="systemd-analyze not installed")


def render(unit: str, **variables) -> str:
    """As the program renders it (trim_blocks: a `{% endfor %}` at a line's end eats its
    newline), so what systemd checks here is what lands on the host."""
    return render_template(f"dashboard/{unit}.j2", **variables)


@pytest.fixture(autouse=True)
def _from_repository_root(monkeypatch):
    monkeypatch.chdir(TEMPLATES.parent)


@pytest.fixture
def rendered(tmp_path) -> Path:
    for unit in UNITS:
        (tmp_path / unit).write_text(render(unit, **VARIABLES))
    return tmp_path


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@pytest.mark.parametrize("unit", [u for u in UNITS if u.endswith(".service")])  # timers: none
def test_every_template_variable_is_required(unit):
    with pytest.raises(jinja2.UndefinedError):
        render(unit, **{k: v for k, v in VARIABLES.items() if k != "python"})


def test_the_server_runs_unprivileged_without_the_docker_socket(rendered):
    server = directives((rendered / "aiia-dashboard.service").read_text())
    assert server["User"] == ["aiia-dashboard"]
    assert server["ExecStart"] == [
        "/usr/bin/python3 -m dashboard serve --config /srv/aiia/dashboard/config.json"
        if VARIABLES["python"] == "/usr/bin/python3"
        else f"{VARIABLES['python']} -m dashboard serve --config /srv/aiia/dashboard/config.json"
    ]
    assert server["CapabilityBoundingSet"] == [""]
    assert server["ReadOnlyPaths"] == ["-/srv/aiia/state/dashboard"]
    # Its one write: the test button's requests (platform.alerts); none without alerts.
    assert server["ReadWritePaths"] == ["-/srv/aiia/state/notify-requests"]
    without_alerts = directives(render("aiia-dashboard.service",
                                       **{**VARIABLES, "requests_dir": None}))
    assert "ReadWritePaths" not in without_alerts and "ExecStartPre" not in without_alerts
    assert server["InaccessiblePaths"] == [
        "-/run/docker.sock -/var/run/docker.sock -/srv/aiia/postgres -/srv/aiia/secrets"]
    assert server["IPAddressDeny"] == ["any"]
    assert server["IPAddressAllow"] == ["172.30.1.2"]
    assert server["MemoryMax"] == ["32M"]


def test_the_collector_writes_only_its_state_dir(rendered):
    collector = directives((rendered / "aiia-dashboard-collect.service").read_text())
    assert collector["ReadWritePaths"] == ["-/srv/aiia/state/dashboard"]
    # The state dir exists before the sandbox needs it, the collector's, setgid to the
    # server's group; what a root collector left there is handed over first, once.
    handover, make = collector["ExecStartPre"]
    assert handover.startswith("+/bin/sh -c ") and "chown -h aiia-collector" in handover
    assert make == "+/usr/bin/install -d -m 2750 -o aiia-collector -g aiia-dashboard " \
                   "/srv/aiia/state/dashboard"
    assert collector["ProtectSystem"] == ["strict"]


def test_the_collector_is_not_root_and_reaches_docker_only_through_the_proxy(rendered):
    # Review L2: its own account, one capability (reading files), no Docker socket.
    collector = directives((rendered / "aiia-dashboard-collect.service").read_text())
    assert collector["User"] == collector["Group"] == ["aiia-collector"]
    assert collector["SupplementaryGroups"] == ["aiia-dashboard"]  # its config; not docker
    assert collector["CapabilityBoundingSet"] == collector["AmbientCapabilities"] == [
        "CAP_DAC_READ_SEARCH"]
    assert collector["InaccessiblePaths"] == [
        "-/run/docker.sock -/var/run/docker.sock -/srv/aiia/postgres -/srv/aiia/logs/prod"]
    assert collector["Wants"] == ["aiia-dashboard-docker-proxy.socket"]
    assert "aiia-dashboard-docker-proxy.socket" in collector["After"][0].split()
    # The proxy's socket: the collector's group alone may connect; one proxy per burst.
    socket = directives((rendered / "aiia-dashboard-docker-proxy.socket").read_text())
    assert socket["ListenStream"] == ["/run/aiia-dashboard-docker-proxy.sock"]
    assert (socket["SocketUser"], socket["SocketGroup"], socket["SocketMode"]) == (
        ["root"], ["aiia-collector"], ["0660"])
    assert socket["Accept"] == ["no"]


def test_the_proxy_alone_has_the_docker_socket_and_nothing_else(rendered):
    proxy = directives((rendered / "aiia-dashboard-docker-proxy.service").read_text())
    assert proxy["DynamicUser"] == ["yes"] and proxy["SupplementaryGroups"] == ["docker"]
    assert proxy["ExecStart"][0].endswith(
        "-m dashboard.docker_proxy --upstream /run/docker.sock --idle-exit 5")
    assert proxy["CapabilityBoundingSet"] == [""]
    assert proxy["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert proxy["PrivateNetwork"] == ["yes"] and proxy["IPAddressDeny"] == ["any"]
    assert proxy["InaccessiblePaths"] == ["-/srv/aiia -/etc/letsencrypt"]
    assert proxy["Requires"] == ["aiia-dashboard-docker-proxy.socket"]


def test_memory_limits_are_the_settings_not_numbers_of_their_own(rendered):
    # The host's memory budget counts these settings: the units must enforce the same.
    server = directives((rendered / "aiia-dashboard.service").read_text())
    collector = directives((rendered / "aiia-dashboard-collect.service").read_text())
    assert server["MemoryMax"] == ["32M"] and server["MemorySwapMax"] == ["0"]
    assert collector["MemoryMax"] == ["28M"] and collector["MemorySwapMax"] == ["0"]
    notifier = directives((rendered / "aiia-dashboard-notify.service").read_text())
    assert notifier["MemoryMax"] == ["30M"] and notifier["MemorySwapMax"] == ["0"]
    proxy = directives((rendered / "aiia-dashboard-docker-proxy.service").read_text())
    assert proxy["MemoryMax"] == ["16M"] and proxy["MemorySwapMax"] == ["0"]


def test_the_notifier_has_the_internet_and_its_secrets_but_no_socket_and_no_privilege(rendered):
    notifier = directives((rendered / "aiia-dashboard-notify.service").read_text())
    assert notifier["DynamicUser"] == ["yes"] and "User" not in notifier
    assert notifier["CapabilityBoundingSet"] == [""]
    assert "/srv/aiia/dashboard/notify-secrets.json" in notifier["ExecStartPre"][0]
    assert notifier["ExecStartPre"][0].startswith("+")  # root copies them for the run
    assert notifier["SupplementaryGroups"] == ["aiia-dashboard"]  # reads the snapshot
    assert notifier["InaccessiblePaths"] == [
        "-/run/docker.sock -/var/run/docker.sock -/srv/aiia/postgres -/srv/aiia/secrets"]
    # The Docker bridges (PostgreSQL, Redis, the apps) stay closed; the internet is open.
    assert "172.16.0.0/12" in notifier["IPAddressDeny"][0]
    assert "IPAddressAllow" not in notifier


@needs_systemd
def test_systemd_accepts_the_units_without_a_single_warning(rendered):
    result = subprocess.run(
        [systemd_analyze, "verify", "--man=no", *(str(rendered / unit) for unit in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # systemd only *warns* about an unknown or misspelt setting and carries on: any output
    # at all is a unit that does not do what it says.
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "" and result.stdout.strip() == ""


@needs_systemd
def test_systemd_notices_a_broken_setting(tmp_path):
    """The check above can fail: a misspelt value is reported."""
    broken = render("aiia-dashboard.service", **VARIABLES).replace(
        "ProtectSystem=strict", "ProtectSystem=stric"
    )
    (tmp_path / "aiia-dashboard.service").write_text(broken)
    result = subprocess.run(
        [systemd_analyze, "verify", "--man=no", str(tmp_path / "aiia-dashboard.service")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Failed to parse protect system value, ignoring: stric" in result.stderr


@needs_systemd
@pytest.mark.parametrize(
    ("unit", "limit"), [("aiia-dashboard.service", 2.0), ("aiia-dashboard-collect.service", 2.0),
                        ("aiia-dashboard-notify.service", 2.5),
                        ("aiia-dashboard-docker-proxy.service", 2.0)]
)
def test_systemd_rates_the_sandbox_as_tight(rendered, unit, limit):
    """`systemd-analyze security`: 0 is fully locked down, 10 is no sandbox at all."""
    result = subprocess.run(
        [systemd_analyze, "security", "--offline=yes", "--no-pager", str(rendered / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    if match is None:
        pytest.skip(f"systemd-analyze security --offline unsupported here: {result.stderr[:200]}")
    assert float(match.group(1)) <= limit, result.stdout


@needs_systemd
@pytest.mark.parametrize("name", ["collect", "notify"])
def test_the_timer_fires_every_minute(rendered, name):
    timer = directives((rendered / f"aiia-dashboard-{name}.timer").read_text())
    assert timer["Unit"] == [f"aiia-dashboard-{name}.service"]
    result = subprocess.run(
        [systemd_analyze, "calendar", "--iterations=3", timer["OnCalendar"][0]],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    elapses = re.findall(r"(\d\d):(\d\d):(\d\d) UTC", result.stdout)
    seconds = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s in elapses]
    assert len(seconds) == 3
    assert {(b - a) % 86400 for a, b in zip(seconds, seconds[1:], strict=False)} == {60}
