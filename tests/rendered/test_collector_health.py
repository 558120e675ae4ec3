"""The resident collector's health check (local stack), run for real by dash — the shell
Docker runs a CMD-SHELL check with in the Debian-based dashboard image: healthy while the
last collection is recent, unhealthy with a message saying why otherwise."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from components.platform.dashboard import COLLECT_EVERY_S
from tests.rendered.conftest import local_run_rooted_at
from tests.rendered.test_shellcheck import shellcheck

pytestmark = pytest.mark.rendered
DASH = "/bin/sh"  # Debian's /bin/sh is dash, as in the image


@pytest.fixture(scope="module")
def check(tmp_path_factory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("host")
    collector = local_run_rooted_at(root).named("platform-dashboard-collector")
    tests = collector.plain["healthcheck"]["tests"]
    assert tests[0] == "CMD-SHELL" and len(tests) == 2
    return tests[1], root / "state/dashboard/status.json"


def run_check(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([DASH, "-c", script], capture_output=True, text=True, timeout=10)


def test_the_check_is_clean_posix_shell(check):
    script, _ = check
    assert shellcheck(script, "sh") == ""


def test_a_recent_collection_is_healthy(check):
    script, status = check
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text("{}")
    result = run_check(script)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_stale_collection_is_unhealthy_and_says_how_old(check):
    script, status = check
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text("{}")
    stale_after = 2 * COLLECT_EVERY_S["local"] + 15
    old = time.time() - stale_after - 5
    os.utime(status, (old, old))
    result = run_check(script)
    assert result.returncode == 1
    assert f"stale after {stale_after} s" in result.stdout
    # Just inside the limit it is still healthy: two missed runs are tolerated.
    recent = time.time() - stale_after + 10
    os.utime(status, (recent, recent))
    assert run_check(script).returncode == 0


def test_no_collection_yet_is_unhealthy(check):
    script, status = check
    status.unlink(missing_ok=True)
    result = run_check(script)
    assert result.returncode == 1 and "no collection yet" in result.stdout
