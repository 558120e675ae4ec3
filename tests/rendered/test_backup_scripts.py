"""The backup scripts with an off-host target (no shipped stack has one) are shellcheck-clean
too, and the target's host key is what ssh is told to trust, alone; the receiver the operator
installs on the target, run by sh as sshd's forced command would run it; and which host paths
each backup job container mounts, read from the docker command line backup.sh builds."""

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from components.host.templates import render
from components.platform.backup import RECEIVER_PATH
from components.settings.backup import OffHostSettings
from tests.harness.program import host_files, host_scripts, run_program, stack_config
from tests.rendered.conftest import unwrap_sudo, without_lease
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
                        target=f"{HOSTILE.user}@{HOSTILE.host}", receiver=RECEIVER_PATH,
                        store=HOSTILE.path, comment="aiia backups")
    result = subprocess.run(["bash", "-c", key_script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=True)
    assert f"on {HOSTILE.user}@{HOSTILE.host}, install" in result.stdout
    assert f'restrict,command="{RECEIVER_PATH} {HOSTILE.path}" ssh-ed25519 ' in result.stdout
    backup_script = render("backup/backup.sh.j2", root_dir="/srv/aiia", prefix="aiia",
                           image="postgres", network="aiia", postgres_host="aiia-postgres",
                           memory_mb=64, environments=[], keep_daily=7, keep_monthly=3,
                           disk_budget_mb=1024, scratch_prefix="aiia_drill",
                           scratch_role="aiia_drill", off_host=HOSTILE, extra_capabilities=[],
                           signer="backup@aiia", signature_namespace="aiia-backup",
                           host_logs=True)
    assignment = next(line.strip() for line in backup_script.splitlines()
                      if line.strip().startswith("off_host=") and "$id" in line)
    result = subprocess.run(["bash", "-c", f'id=20261206; {assignment}; echo "$off_host"'],
                            cwd=tmp_path, capture_output=True, text=True, timeout=10,
                            check=True)
    assert result.stdout.strip() == f"{target}/20261206"
    assert "copied to the off-host target" in backup_script
    assert not (tmp_path / "PWNED").exists()


def test_the_printed_line_restricts_the_copy_key_to_the_receiver(with_off_host, tmp_path):
    script = without_lease(unwrap_sudo(host_scripts(with_off_host)["platform-backup-off-host-key"]))
    assert shellcheck(script, "bash") == ""
    directory = tmp_path / "off-host"
    result = subprocess.run(["bash", "-c", script.replace("/srv/aiia/backup/off-host",
                                                          str(directory))],
                            capture_output=True, text=True, timeout=60, check=True)
    (line,) = [line for line in result.stdout.splitlines() if "ssh-ed25519" in line]
    public = (directory / "id_ed25519.pub").read_text().strip()
    # restrict: no pty, no forwarding of any kind, no ~/.ssh/rc; command=: the receiver, always.
    assert line == f'restrict,command="{RECEIVER_PATH} /srv/aiia-backups" {public}'


# ----------------------------------------------------------------- the receiver, by sh

RECEIVER = Path(__file__).resolve().parents[2] / "templates" / "backup" / "receive-backup.sh.j2"


def test_the_receiver_is_posix_sh_and_installed_as_it_is_in_the_repository():
    text = RECEIVER.read_text()
    assert shellcheck(text, "sh") == ""
    # The operator copies the file itself: rendering changes nothing in it.
    assert render("backup/receive-backup.sh.j2") == text


def receive(store: Path, request: str, data: bytes = b"") -> subprocess.CompletedProcess:
    """The receiver as sshd runs a forced command: the client's command in the environment."""
    return subprocess.run(["sh", str(RECEIVER), str(store)], input=data, capture_output=True,
                          timeout=30, check=False,
                          env={**os.environ, "SSH_ORIGINAL_COMMAND": request})


def a_backup(backup_id: str, manifest_id: str | None = None) -> dict[str, bytes]:
    files = {"db-x.dump.gpg": os.urandom(2000), "rows-x.tsv": b"public.t\t1\n",
             "manifest.json": b'{"format": 1, "id": "%s", "files": []}\n'
             % (manifest_id or backup_id).encode()}
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n"
                   for name, data in files.items())
    return {**files, "SHA256SUMS": sums.encode(), "SHA256SUMS.sig": b"signature\n"}


def send(store: Path, backup_id: str, files: dict[str, bytes]) -> subprocess.CompletedProcess:
    for name, data in files.items():
        put = receive(store, f"put {backup_id} {name}", data)
        assert put.returncode == 0, put
    return receive(store, f"commit {backup_id}")


def now_id(offset: int = 0) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + offset))


def test_the_receiver_stores_a_new_backup_read_only_and_never_overwrites_it(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    backup_id = now_id()
    files = a_backup(backup_id)
    committed = send(store, backup_id, files)
    assert committed.returncode == 0, committed
    stored = store / backup_id
    assert {path.name: path.read_bytes() for path in stored.iterdir()} == files
    assert committed.stdout.decode().endswith("  SHA256SUMS\n")
    assert all(path.stat().st_mode & 0o222 == 0 for path in [stored, *stored.iterdir()])
    assert backup_id in (store / "received.log").read_text()
    for request in (f"put {backup_id} SHA256SUMS", f"put {backup_id} other.gpg",
                    f"commit {backup_id}"):
        refused = receive(store, request, b"garbage")
        assert refused.returncode == 2 and b"never overwritten" in refused.stderr, refused
    assert {path.name: path.read_bytes() for path in stored.iterdir()} == files


@pytest.mark.parametrize("request_line", [
    "rm -rf /", "ls", "", "put", "put 20261206T033000Z", "commit", "get x y",
    "put {id} ../escape", "put {id} .hidden", "put {id} a/b", "put {id} -rf",
    "put 2026-12-06 x", "put 20261399T000000Z x", "put {old} x", "put {ahead} x",
])
def test_the_receiver_refuses_every_other_request(tmp_path, request_line):
    store = tmp_path / "store"
    store.mkdir()
    request = request_line.format(id=now_id(), old=now_id(-27 * 3600), ahead=now_id(2 * 3600))
    refused = receive(store, request, b"data")
    assert refused.returncode == 2 and b"refused" in refused.stderr, refused
    assert [path.name for path in store.rglob("*") if path.is_file()] == []
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("defect", ["a file differs", "an unlisted file", "no signature",
                                    "the manifest names another backup"])
def test_the_receiver_commits_only_a_backup_that_matches_its_sums(tmp_path, defect):
    store = tmp_path / "store"
    store.mkdir()
    backup_id = now_id()
    files = a_backup(backup_id, manifest_id=now_id(-60) if "another" in defect else None)
    if defect == "a file differs":
        files["db-x.dump.gpg"] = b"swapped"
    elif defect == "an unlisted file":
        files["extra.gpg"] = b"not in SHA256SUMS"
    elif defect == "no signature":
        del files["SHA256SUMS.sig"]
    failed = send(store, backup_id, files)
    assert failed.returncode == 1, failed
    assert not (store / backup_id).exists()


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
                    signature_namespace="aiia-backup", host_logs=True)
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


HOST_LOGS_SCRIPT = r"""
mark=$(cat /proc/sys/kernel/random/uuid)
logger -t aiia-test "a login to keep: $mark"
mkdir -p /var/log/audit /tmp/root/nginx /tmp/backups
echo "type=USER_START msg=audit($mark)" > /var/log/audit/audit.log
echo "type=USER_START msg=audit(an old one)" > /var/log/audit/audit.log.4
touch -d '3 days ago' /var/log/audit/audit.log.4
echo 'server {}' > /tmp/root/nginx/site.conf
sleep 1  # journald has the line
root=/tmp/root
source /aiia/functions.sh
mkdir -m 0700 /tmp/backups/.work-x-logs
host_logs /tmp/backups/.work-x-logs
config_archive /tmp/backups/.work-x-logs > /tmp/config.tar
echo "MEMBERS"; tar -tf /tmp/config.tar | sort
echo "JOURNAL $(tar -xOf /tmp/config.tar ./host-logs/journal.export.gz | gunzip \
  | grep -c "MESSAGE=a login to keep: $mark")"
echo "AUDIT $(tar -xOf /tmp/config.tar ./host-logs/audit/audit.log.gz | gunzip | grep -c "$mark")"
"""


def test_the_config_archive_carries_the_last_days_journal_and_audit_trail(tmp_path):
    """Review H3: the last day of the journal (a line logged just now among it) and the audit
    trail's files of the day (not an older one) go into config.tar, which the backup encrypts,
    verifies and copies off the host with the rest; run by a booted Debian 13 stand-in's own
    journalctl, with prod's rendered functions."""
    from tests.rendered.test_host import IMAGES
    from tests.rendered.test_integrity import booted_standin

    script = host_files(run_program("prod"))["/srv/aiia/bin/backup.sh"]
    functions = [script[script.index(f"\n{name}() {{"):] for name in ("host_logs",
                                                                       "config_archive")]
    (tmp_path / "functions.sh").write_text("".join(
        function[:function.index("\n}\n") + 3] for function in functions))
    with booted_standin(IMAGES["13"], tmp_path) as name:
        result = subprocess.run(["docker", "exec", name, "bash", "-euo", "pipefail", "-c",
                                 HOST_LOGS_SCRIPT], capture_output=True, text=True, timeout=120,
                                check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    members = result.stdout.split("MEMBERS\n")[1].split("JOURNAL")[0].split()
    assert {"./nginx/site.conf", "./host-logs/journal.export.gz",
            "./host-logs/audit/audit.log.gz"} <= set(members), members
    assert "./host-logs/audit/audit.log.4.gz" not in members  # older than a day
    assert result.stdout.split("JOURNAL ")[1].split()[0] == "1", result.stdout
    assert result.stdout.split("AUDIT ")[1].split()[0] == "1", result.stdout
