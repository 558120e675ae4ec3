"""templates/host/install-file.sh.j2 run by bash: a file installed atomically, and the lock
that orders changes to nginx's tree waited on with a bound (issue #28 item 6: pulumi-command
has no timeout, so an unbounded `flock` behind a hung holder would hang `pulumi up`)."""

from __future__ import annotations

import subprocess
import time

from components.host.templates import render


def install(tmp_path, content: str, lock_wait_seconds: int = 120) -> subprocess.CompletedProcess:
    script = render("host/install-file.sh.j2", path=str(tmp_path / "site.conf"), mode="0644",
                    owner=None, on_change="true", only_if_absent=False, precondition=None,
                    lock_file=str(tmp_path / "nginx.lock"), lock_wait_seconds=lock_wait_seconds)
    return subprocess.run(["bash", "-c", script], input=content, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_file_is_installed_under_the_lock(tmp_path):
    result = install(tmp_path, "server {}\n")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site.conf").read_text() == "server {}\n"


def test_a_lock_held_past_the_bound_fails_the_step_with_its_reason(tmp_path):
    (tmp_path / "site.conf").write_text("old\n")
    holder = subprocess.Popen(["flock", str(tmp_path / "nginx.lock"), "sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(tmp_path / "nginx.lock"), "true"]).returncode == 0:
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.05)
        result = install(tmp_path, "new\n", lock_wait_seconds=1)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    assert "has held" in result.stderr and "for 1 s" in result.stderr
    assert "nothing installed" in result.stderr and "fuser -v" in result.stderr
    assert (tmp_path / "site.conf").read_text() == "old\n"  # untouched
