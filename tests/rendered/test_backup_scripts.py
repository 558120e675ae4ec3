"""The backup scripts with an off-host target (no shipped stack has one) are shellcheck-clean
too, and the target's host key is what ssh is told to trust, alone; and which host paths
each backup job container mounts, read from the docker command line backup.sh builds."""

import os
import subprocess
from pathlib import Path

import pytest

from components.host.templates import render
from components.settings.backup import OffHostSettings
from tests.harness.program import host_files, host_scripts, run_program, stack_config
from tests.rendered.test_shellcheck import shellcheck

pytestmark = pytest.mark.rendered

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.fixture(scope="module")
def with_off_host():
    config = stack_config("prod")
    config["aiia:platform"]["backup"]["off_host"] = {
        "host": "backup.example.net", "port": 2222, "path": "/srv/aiia-backups",
        "host_key": HOST_KEY}
    return run_program("prod", config=config)


def test_the_off_host_copy_is_shellcheck_clean(with_off_host):
    files = host_files(with_off_host)
    assert "copy_off_host" in files["/srv/aiia/bin/backup.sh"]
    assert shellcheck(files["/srv/aiia/bin/backup.sh"], "bash") == ""
    key_script = host_scripts(with_off_host)["platform-backup-off-host-key"]
    assert shellcheck(key_script, "bash") == ""


def test_ssh_trusts_the_pinned_host_key_alone(with_off_host):
    files = host_files(with_off_host)
    assert files["/srv/aiia/backup/off-host/known_hosts"] == \
        f"[backup.example.net]:2222 {HOST_KEY}\n"
    script = files["/srv/aiia/bin/backup.sh"]
    for option in ("StrictHostKeyChecking=yes", "GlobalKnownHostsFile=/dev/null",
                   'UserKnownHostsFile="$root/backup/off-host/known_hosts"', "BatchMode=yes"):
        assert option in script


HOSTILE = OffHostSettings(host="backup.example.net", path="/srv/b/$(touch PWNED)",
                          host_key=HOST_KEY, user="aiia`touch PWNED`")


def test_hostile_off_host_values_are_data_in_the_rendered_scripts(tmp_path):
    # Settings refuse these values (tests/unit/settings/test_backup.py); the scripts quote
    # them anyway, so that a value that gets past a check still cannot run as root.
    target = f"{HOSTILE.user}@{HOSTILE.host}:{HOSTILE.path}"
    key_script = render("backup/off-host-key.sh.j2", directory=str(tmp_path / "key"),
                        target=target, comment="aiia backups")
    result = subprocess.run(["bash", "-c", key_script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=True)
    assert f"authorise it for {target}): ssh-ed25519 " in result.stdout
    backup_script = render("backup/backup.sh.j2", root_dir="/srv/aiia", prefix="aiia",
                           image="postgres", network="aiia", postgres_host="aiia-postgres",
                           memory_mb=64, environments=[], keep_daily=7, keep_monthly=3,
                           disk_budget_mb=1024, scratch_prefix="aiia_drill",
                           scratch_role="aiia_drill", off_host=HOSTILE, extra_capabilities=[],
                           signer="backup@aiia", signature_namespace="aiia-backup")
    assignment = next(line.strip() for line in backup_script.splitlines()
                      if line.strip().startswith("off_host=") and "$id" in line)
    result = subprocess.run(["bash", "-c", f'id=20261206; {assignment}; echo "$off_host"'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=10,
                            check=True)
    assert result.stdout.strip() == f"{target}/20261206"
    assert "copied to the off-host target" in backup_script
    assert not (tmp_path / "PWNED").exists()


# ------------------------------------------------------- what each job container mounts

DECRYPTING = {"drill-restore", "restore-database", "decrypt"}


def job_mounts(tmp_path: Path, *arguments: str) -> list[tuple[str, str]]:
    """The -v mounts of the `docker run` that backup.sh's job() builds for `arguments`,
    read from a stand-in docker on PATH that records its command line."""
    script = render("backup/backup.sh.j2", root_dir="/srv/aiia", prefix="aiia", image="sha256:1",
                    network="aiia", postgres_host="aiia-postgres", memory_mb=64,
                    environments=[], keep_daily=7, keep_monthly=3, disk_budget_mb=1024,
                    scratch_prefix="aiia_drill_", scratch_role="aiia_drill_role",
                    off_host=None, extra_capabilities=[], signer="backup@aiia",
                    signature_namespace="aiia-backup")
    start = script.index("\njob() {")
    function = script[start:script.index("\n}\n", start) + 3]
    (tmp_path / "docker").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD"\n')
    (tmp_path / "docker").chmod(0o755)
    record = tmp_path / "record"
    subprocess.run(["bash", "-c", f'set -euo pipefail; root=/srv/aiia; backups=$root/backups; '
                    f'job_name=aiia-backup-run\n{function}\njob "$@"', "job", *arguments],
                   env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
                        "RECORD": str(record)}, check=True, timeout=30)
    words = record.read_text().splitlines()
    return [tuple(words[index + 1].split(":")[:2]) for index, word in enumerate(words)
            if word == "-v"]


@pytest.mark.parametrize("arguments", [
    ("estimate",), ("dump", "/srv/aiia/backups/.work-20261206T033000Z"),
    ("drill-restore", "/backups/20261206T033000Z", "password"), ("drop-scratch",),
    ("restore-database", "prod", "/backups/20261206T033000Z"), ("restore-database", "prod", "-"),
    ("decrypt", "/backups/20261206T033000Z", "media-prod.tar.gpg"),
])
def test_a_job_container_mounts_only_what_its_command_uses(tmp_path, arguments):
    mounts = dict(job_mounts(tmp_path, *arguments))
    sources = set(mounts)
    # M11: never the host's root, and the drill key only where something is decrypted.
    assert "/srv/aiia" not in sources and not any(
        source in ("/srv/aiia/backup", "/srv/aiia/backup/signing", "/srv/aiia/backup/off-host")
        for source in sources), mounts
    decrypts = arguments[0] in DECRYPTING and arguments[-1] != "-"
    assert ("/srv/aiia/backup/drill-gnupg" in sources) == decrypts, mounts
    assert ("/srv/aiia/postgres/superuser-password" in sources) == (arguments[0] != "decrypt")
    if arguments[0] == "dump":
        assert mounts[arguments[1]] == "/backups/.work-20261206T033000Z"
        assert "/srv/aiia/backups" not in sources
    writable = [line for line in job_mount_lines(tmp_path) if not line.endswith(":ro")]
    assert all(".work-" in line for line in writable), writable


def job_mount_lines(tmp_path: Path) -> list[str]:
    words = (tmp_path / "record").read_text().splitlines()
    return [words[index + 1] for index, word in enumerate(words) if word == "-v"]
