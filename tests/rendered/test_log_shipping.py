"""The host's journal and audit trail shipped off the host as they are written (review H3):
the receiver's `log FILE` request (templates/backup/receive-backup.sh.j2) run by sh as sshd
runs it, and {root}/bin/ship-logs.sh (templates/logs/ship-logs.sh.j2) run for real with real
GnuPG against that receiver.

Stand-ins on PATH, both under tmp_path:

- `ssh` runs the real receiver on a scratch store with the request as sshd's forced command
  would pass it ($SSH_ORIGINAL_COMMAND: the last word of the ssh command line); while the
  file `down` exists it fails as OpenSSH's client does when the target is unreachable (exit
  255, "Connection refused"; ssh(1), EXIT STATUS).
- `journalctl` follows journalctl(1)'s --cursor-file: "If FILE exists and contains a cursor,
  start showing entries after this location. Otherwise show entries according to the other
  given options. At the end, write the cursor of the last entry to FILE." Its entries are the
  lines of `journal` (cursor = line number); --output=export is each line as it is, and other
  options (--since) are not imitated: without a cursor it shows every line.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import pytest

from components.host.templates import render
from components.platform.log_shipping import (
    MAX_CHUNK_BYTES,
    PENDING_CAP_MB,
    render_ship_logs,
    shipping_note,
)
from components.settings.backup import OffHostSettings
from tests.rendered.test_backup_scripts import RECEIVER, receive
from tests.rendered.test_pitr_scripts import gpg
from tests.rendered.test_shellcheck import shellcheck

pytestmark = pytest.mark.rendered

TARGET = OffHostSettings(host="target.invalid", path="/srv/aiia-backups", user="aiia-backup",
                         host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqK"
                                  "LsabgH5C9okWi0dh2l9GKJl", port=2222)
JOURNAL_CHUNK = "journal-20261207T083000Z-00000001.export.gz.gpg"
AUDIT_CHUNK = "audit-20261207T083000Z-00000002.log.gz.gpg"

FAKE_SSH = """#!/bin/sh
if [ -e "$FAKE_DIR/down" ]; then
  echo "ssh: connect to host target.invalid port 2222: Connection refused" >&2
  exit 255
fi
for request; do :; done
echo "$request" >> "$FAKE_DIR/ssh-calls"
SSH_ORIGINAL_COMMAND=$request exec sh {receiver} "$FAKE_DIR/store"
"""

FAKE_JOURNALCTL = """#!/bin/bash
echo "$*" >> "$FAKE_DIR/journalctl-calls"
cursor_file=""
for argument; do
  case $argument in --cursor-file=*) cursor_file=${argument#--cursor-file=} ;; esac
done
after=0
if [ -n "$cursor_file" ] && [ -s "$cursor_file" ]; then after=$(cat "$cursor_file"); fi
total=$(wc -l < "$FAKE_DIR/journal")
tail -n +$((after + 1)) "$FAKE_DIR/journal"
if [ -n "$cursor_file" ] && [ "$total" -gt "$after" ]; then echo "$total" > "$cursor_file"; fi
"""


@pytest.fixture(scope="module")
def operator(tmp_path_factory) -> tuple[Path, bytes]:
    """A key pair: its GnuPG home and its exported public half."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    gpg(home, "--passphrase", "", "--quick-generate-key", "Ops <ops@x.invalid>",
        "future-default", "default", "1y")
    return home, gpg(home, "--armor", "--export").stdout


class Host:
    """A scratch host root with the backups' key, a journal, an audit directory, and the
    stand-in ssh and journalctl; `tick()` runs ship-logs.sh as cron does."""

    def __init__(self, tmp_path: Path, public_key: bytes, off_host=TARGET,
                 pending_cap_mb: int = PENDING_CAP_MB, host_logs: bool = True,
                 max_chunk_bytes: int = MAX_CHUNK_BYTES):
        self.dir = tmp_path
        self.root = tmp_path / "root"
        (self.root / "backup" / "keys").mkdir(parents=True)
        (self.root / "backup" / "keys" / "drill.asc").write_bytes(public_key)
        self.store = tmp_path / "store"
        self.store.mkdir()
        self.audit = tmp_path / "audit"
        self.audit.mkdir()
        self.journal = tmp_path / "journal"
        self.journal.write_text("")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for name, text in (("ssh", FAKE_SSH.format(receiver=RECEIVER)),
                           ("journalctl", FAKE_JOURNALCTL)):
            (bin_dir / name).write_text(text)
            (bin_dir / name).chmod(0o755)
        self.script = tmp_path / "ship-logs.sh"
        self.script.write_text(render(
            "logs/ship-logs.sh.j2", root_dir=str(self.root), off_host=off_host,
            host_logs=host_logs, audit_dir=str(self.audit), max_chunk_bytes=max_chunk_bytes,
            pending_cap_mb=pending_cap_mb, note=shipping_note(off_host is not None, host_logs)))
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                    "FAKE_DIR": str(tmp_path)}

    def write_journal(self, *entries: str) -> None:
        with self.journal.open("a") as handle:
            handle.writelines(f"MESSAGE={entry}\n" for entry in entries)

    def write_audit(self, *lines: str, name: str = "audit.log") -> None:
        with (self.audit / name).open("a") as handle:
            handle.writelines(f"type=USER_CMD msg=audit(1.0:1): {line}\n" for line in lines)

    def target(self, up: bool) -> None:
        (self.dir / "down").unlink(missing_ok=True) if up else (self.dir / "down").touch()

    def tick(self) -> subprocess.CompletedProcess:
        result = subprocess.run(["bash", str(self.script), "tick"], env=self.env,
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def status(self) -> dict:
        return json.loads((self.root / "state" / "log-shipping.json").read_text())

    def stored(self, kind: str) -> list[Path]:
        """The chunks of KIND on the target, in the order they arrived (received.log)."""
        log = self.store / "logs" / "received.log"
        names = [line.split()[1] for line in log.read_text().splitlines()] \
            if log.exists() else []
        return [self.store / "logs" / name for name in names if name.startswith(f"{kind}-")]

    def waiting(self) -> list[str]:
        outbox = self.root / "state" / "log-shipping" / "outbox"
        return sorted(path.name for path in outbox.glob("*.gpg"))


def plain(home: Path, chunk: Path) -> str:
    return gzip.decompress(gpg(home, "--decrypt", str(chunk)).stdout).decode()


# ----------------------------------------------------------------- the receiver's `log`

def test_the_receiver_stores_each_log_chunk_once_read_only_and_records_its_arrival(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    for name in (JOURNAL_CHUNK, AUDIT_CHUNK):
        stored = receive(store, f"log {name}", b"encrypted chunk")
        assert stored.returncode == 0, stored
        path = store / "logs" / name
        assert path.read_bytes() == b"encrypted chunk" and path.stat().st_mode & 0o222 == 0
    again = receive(store, f"log {JOURNAL_CHUNK}", b"a forged chunk")
    assert again.returncode == 2 and b"never overwritten" in again.stderr
    assert (store / "logs" / JOURNAL_CHUNK).read_bytes() == b"encrypted chunk"
    arrivals = (store / "logs" / "received.log").read_text().splitlines()
    assert [line.split()[1] for line in arrivals] == [JOURNAL_CHUNK, AUDIT_CHUNK]
    assert sorted(path.name for path in (store / "logs").iterdir()) == \
        sorted([JOURNAL_CHUNK, AUDIT_CHUNK, "received.log"])


@pytest.mark.parametrize("name", [
    "received.log", "../x.export.gz.gpg", ".journal-20261207T083000Z-00000001.export.gz.gpg",
    "journal-20261207T083000Z-1.export.gz.gpg", "journal-2026-12-07-00000001.export.gz.gpg",
    "journal-20261207T083000Z-00000001.export.gz", "audit-20261207T083000Z-00000001.export.gz.gpg",
    "secrets-20261207T083000Z-00000001.log.gz.gpg", "000000010000000000000003.gpg",
    "journal-20261207T083000Z-00000001.export.gz.gpg/../../x"])
def test_the_receiver_refuses_any_other_log_name(tmp_path, name):
    store = tmp_path / "store"
    store.mkdir()
    refused = receive(store, f"log {name}", b"data")
    assert refused.returncode == 2 and b"refused" in refused.stderr, refused
    assert not [path for path in store.rglob("*") if path.is_file()]


def test_the_receiver_refuses_an_empty_or_oversized_chunk_and_keeps_nothing(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    empty = receive(store, f"log {JOURNAL_CHUNK}", b"")
    assert empty.returncode == 2 and b"empty" in empty.stderr, empty
    big = receive(store, f"log {JOURNAL_CHUNK}", b"x" * (MAX_CHUNK_BYTES + 1))
    assert big.returncode == 2 and b"larger than" in big.stderr, big
    assert not [path for path in store.rglob("*") if path.is_file()]
    exact = receive(store, f"log {JOURNAL_CHUNK}", b"x" * MAX_CHUNK_BYTES)
    assert exact.returncode == 0, exact


# ----------------------------------------------------------------- ship-logs.sh

@pytest.mark.parametrize("off_host", [TARGET, None])
@pytest.mark.parametrize("host_logs", [True, False])
def test_every_variant_of_the_script_is_shellcheck_clean(off_host, host_logs):
    assert shellcheck(render_ship_logs("/srv/aiia", off_host, host_logs), "bash") == ""


def test_new_journal_entries_and_audit_lines_reach_the_target_encrypted(tmp_path, operator):
    home, public = operator
    host = Host(tmp_path, public)
    host.write_journal("sshd: Accepted publickey for deploy", "sudo: deploy : COMMAND=/bin/sh")
    host.write_audit("exe=/usr/bin/sudo", "exe=/usr/bin/crontab")
    host.tick()
    (journal,), (audit,) = host.stored("journal"), host.stored("audit")
    assert b"Accepted publickey" not in journal.read_bytes()
    assert plain(home, journal) == host.journal.read_text()
    assert plain(home, audit) == (host.audit / "audit.log").read_text()
    status = host.status()
    assert status["configured"] is True and status["pending"] == 0 and status["last_shipped_at"]
    assert host.waiting() == []
    # The next minute ships what is new, and only that.
    host.write_journal("useradd: new user: name=intruder")
    host.tick()
    assert len(host.stored("journal")) == 2 and len(host.stored("audit")) == 1
    assert plain(home, host.stored("journal")[1]) == "MESSAGE=useradd: new user: name=intruder\n"
    host.tick()  # nothing new: no chunk
    assert len(host.stored("journal")) == 2


def test_chunks_wait_while_the_target_is_down_and_go_in_order_when_it_is_back(
        tmp_path, operator):
    home, public = operator
    host = Host(tmp_path, public)
    host.target(up=False)
    position = host.root / "state" / "log-shipping" / "journal.position"
    for minute in range(3):
        host.write_journal(f"entry {minute}")
        host.write_audit(f"line {minute}")
        result = host.tick()
        assert "Connection refused" in result.stdout
        assert not position.exists(), "the cursor moved before the receiver took a chunk"
    assert len(host.waiting()) == 6
    status = host.status()
    assert status["pending"] == 6 and status["last_shipped_at"] is None
    host.target(up=True)
    host.tick()
    assert host.waiting() == [] and host.status()["pending"] == 0
    journal = host.stored("journal")
    assert [plain(home, chunk) for chunk in journal] == \
        [f"MESSAGE=entry {minute}\n" for minute in range(3)]
    assert "".join(plain(home, chunk) for chunk in host.stored("audit")) == \
        (host.audit / "audit.log").read_text()
    assert position.read_text().strip() == "3"  # the fake journal's last cursor


def test_a_half_written_audit_record_and_a_rotation_lose_and_repeat_nothing(tmp_path, operator):
    home, public = operator
    host = Host(tmp_path, public)
    host.write_audit("before")
    with (host.audit / "audit.log").open("a") as handle:
        handle.write("type=USER_CMD msg=audit(1.0:2): half")  # the rest not yet written
    host.tick()
    assert plain(home, host.stored("audit")[0]).endswith("before\n")
    with (host.audit / "audit.log").open("a") as handle:
        handle.write(" written\n")
    host.write_audit("last before rotation")
    (host.audit / "audit.log").rename(host.audit / "audit.log.1")  # auditd's rotation
    host.write_audit("first after rotation")
    host.tick()
    shipped = "".join(plain(home, chunk) for chunk in host.stored("audit"))
    assert shipped == (host.audit / "audit.log.1").read_text() + \
        (host.audit / "audit.log").read_text()


def test_an_audit_file_rotated_away_before_its_rest_was_read_is_recorded(tmp_path, operator):
    home, public = operator
    host = Host(tmp_path, public)
    host.write_audit("shipped")
    host.tick()
    host.write_audit("lost with the file")
    (host.audit / "audit.log").rename(host.audit / "audit.log.1")
    (host.audit / "audit.log.1").unlink()  # rotated past auditd's num_logs, or erased
    # (the new file may get the removed one's inode: its first bytes tell them apart)
    host.write_audit("in the new file")
    host.tick()
    status = host.status()
    assert status["skipped"] == 1 and "rotated away" in status["last_skipped"]
    assert plain(home, host.stored("audit")[-1]) == (host.audit / "audit.log").read_text()
    host.tick()
    assert host.status()["skipped"] == 1, "recorded once"


def test_past_the_cap_nothing_new_is_exported_and_the_status_says_so(tmp_path, operator):
    host = Host(tmp_path, operator[1], pending_cap_mb=0)
    host.write_journal("entry")
    host.tick()
    assert host.waiting() == [] and host.stored("journal") == []
    assert "nothing new is exported" in host.status()["held"]


def test_a_chunk_over_the_receivers_bound_is_recorded_once_and_passed(tmp_path, operator):
    host = Host(tmp_path, operator[1], max_chunk_bytes=100)  # any encrypted chunk is larger
    host.write_journal("a flood")
    host.tick()
    host.tick()  # the same entries are not exported again
    assert host.waiting() == [] and host.stored("journal") == []
    status = host.status()
    assert status["skipped"] == 1 and "over the receiver's 100" in status["last_skipped"]
    position = host.root / "state" / "log-shipping" / "journal.position"
    assert position.read_text().strip() == "1"


def test_without_an_off_host_target_nothing_is_exported_or_sent_and_the_status_says_so(
        tmp_path, operator):
    host = Host(tmp_path, operator[1], off_host=None)
    host.write_journal("entry")
    host.write_audit("line")
    host.tick()
    assert not (tmp_path / "ssh-calls").exists()
    assert host.waiting() == []
    status = host.status()
    assert status["configured"] is False and status["pending"] == 0
    assert "off_host is not set: nothing is shipped" in status["note"]


def test_a_local_stack_exports_nothing_of_the_developers_machine(tmp_path, operator):
    host = Host(tmp_path, operator[1], host_logs=False)
    host.write_journal("the developer's own entry")
    host.write_audit("the developer's own line")
    host.tick()
    assert not (tmp_path / "journalctl-calls").exists()
    assert host.waiting() == [] and host.stored("journal") == host.stored("audit") == []
    status = host.status()
    assert status["host_logs"] is False and "nothing is exported" in status["note"]
