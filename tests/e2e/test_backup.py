"""Backups that restore, on the real engine: real PostgreSQL (the stand-in, 15), real GnuPG,
the program's own scripts ({root}/bin/backup.sh and backup-job.sh) run as cron and an
operator run them.

One stack for the module, in order: data in both environments → a backup (as cron runs
it) → the data changed → the runbook's restore commands bring the backup's state back;
then the drill, tampering, encryption, a backup changed after it was signed, who a restore
runs as, a full disk (a tmpfs mounted on the backup directory), retention and an off-host
copy to an SSH container (tests/images/sshd) set up as the runbook says: the receiver
installed, the copy key forced to it. The operator's key is a key pair made here, its
private half only in this test's GnuPG home. Not modelled: the host's cron daemon (its
entry is run as cron would), the target's own retention cron.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.host.templates import render
from components.names import database_name
from components.platform.backup import RECEIVER_PATH
from components.platform.log_shipping import MAX_CHUNK_BYTES, PENDING_CAP_MB
from components.settings.backup import OffHostSettings
from dashboard.alerts import evaluate
from dashboard.records import read_records, summarize_jobs
from tests.harness.local_stack import ROOT, LocalStack, free_port
from tests.harness.program import host_scripts

pytestmark = pytest.mark.e2e

ENVIRONMENTS = ("prod", "staging")


def gpg(home: Path, *args: str, input: bytes | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty", *args],
                          input=input, capture_output=True, timeout=120, check=check)


@pytest.fixture(scope="module")
def operator(tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    """An operator's key pair: (GnuPG home with the private key, exported public key)."""
    home = tmp_path_factory.mktemp("operator-gnupg")
    home.chmod(0o700)
    gpg(home, "--passphrase", "", "--quick-generate-key", "Operator <ops@example.test>",
        "future-default", "default", "1y")
    public = home.parent / "operator.asc"
    public.write_bytes(gpg(home, "--armor", "--export").stdout)
    yield home, public
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


@pytest.fixture(scope="module")
def postgres_with_gpg() -> None:
    """The postgres stand-in of this checkout (with gpg), built if the tag names another:
    checkouts that share this engine share its stand-in tags."""
    subprocess.run(["bash", str(ROOT / "tests/images/build-standins.sh"), "postgres"],
                   check=True, capture_output=True, timeout=600)


@pytest.fixture(scope="module")
def stack(postgres_with_gpg, local_stack: LocalStack, operator) -> LocalStack:
    """The module's stack with the operator's key as a backup recipient."""
    config = copy.deepcopy(local_stack.config)
    config["aiia:platform"]["backup"] = {"recipients": [str(operator[1])]}
    local_stack.up(config)
    return local_stack


def script(stack: LocalStack) -> str:
    return str(stack.root / "bin" / "backup.sh")


def run(stack: LocalStack, *args: str, stdin: bytes | None = None,
        check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run([script(stack), *args], input=stdin, capture_output=True,
                            timeout=300, check=False)
    if check:
        assert result.returncode == 0, output(result)
    return result


def output(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr).decode(errors="replace")[-4000:]


def last_line(result: subprocess.CompletedProcess) -> str:
    """What backup.sh says last (its own lines go to stdout, the job's log to stderr)."""
    return result.stdout.decode(errors="replace").strip().splitlines()[-1]


def psql(stack: LocalStack, environment: str, sql: str) -> str:
    return stack.exec(stack.container("postgres"), "psql", "-U", "postgres", "-X", "-qAt",
                      "-v", "ON_ERROR_STOP=1", "-d", database_name(stack.prefix, environment),
                      "-f", "-", stdin=sql).stdout.strip()


def row_counts(stack: LocalStack, environment: str) -> dict[str, int]:
    counts = {}
    for table in psql(stack, environment, "SELECT schemaname || '.' || tablename FROM "
                      "pg_tables WHERE schemaname = 'public' ORDER BY 1;").splitlines():
        # Names PostgreSQL just listed, not input.
        counts[table] = int(psql(stack, environment, f"SELECT count(*) FROM {table};"))  # noqa: S608
    return counts


def media(stack: LocalStack, environment: str) -> Path:
    return stack.root / "media" / environment


def media_hashes(stack: LocalStack, environment: str) -> dict[str, str]:
    base = media(stack, environment)
    return {str(path.relative_to(base)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(base.rglob("*")) if path.is_file()}


def write_upload(stack: LocalStack, environment: str, name: str, data: bytes) -> None:
    """A file as the app writes an upload: under its media directory, as its uid."""
    path = media(stack, environment) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chown(path, 10001, 10001)


def backups(stack: LocalStack) -> list[str]:
    return sorted(path.name for path in (stack.root / "backups").iterdir()
                  if path.is_dir() and not path.name.startswith("."))


def newest(stack: LocalStack) -> Path:
    return stack.root / "backups" / backups(stack)[-1]


def manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text())


def records(stack: LocalStack, name: str) -> dict:
    return summarize_jobs(read_records(stack.root / "state" / name),
                          needs_verification=name == "backups.jsonl")


def cron_command(stack: LocalStack, which: str) -> str:
    lines = (stack.root / "cron.d" / f"{stack.prefix}-backup").read_text().splitlines()
    entry = next(line for line in lines if f"backup.sh {which} " in line)
    fields = entry.split(None, 6)  # m h dom mon dow user command
    assert fields[5] == "root", entry
    return fields[6]


def plaintext_left(root: Path, markers: list[bytes]) -> list[str]:
    """Files under `root` that hold a plain dump (PGDMP), a tar or a marker."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if data.startswith(b"PGDMP") or data[257:262] == b"ustar" or \
                any(marker in data for marker in markers):
            found.append(str(path))
    return found


MARKER = "backup-e2e-marker-7f3a"
SECRET_UPLOAD = b"an upload nobody may read without the key " * 100


def test_the_cron_entry_backs_up_both_environments_and_the_runbook_restores_them(stack):
    for environment, notes in (("prod", 5), ("staging", 3)):
        psql(stack, environment, "INSERT INTO notes_note (text, created_at) SELECT "  # noqa: S608
             f"'{MARKER} {environment} ' || n, now() FROM generate_series(1, {notes}) n;")
    write_upload(stack, "prod", "avatars/a.png", os.urandom(50_000))
    write_upload(stack, "prod", "docs/contract.txt", SECRET_UPLOAD)
    write_upload(stack, "staging", "avatars/b.png", os.urandom(20_000))
    before = {env: (row_counts(stack, env), media_hashes(stack, env)) for env in ENVIRONMENTS}
    assert before["prod"][0]["public.notes_note"] == 5
    assert before["prod"][0]["public.django_migrations"] >= 1  # the notes app's migration

    result = subprocess.run(["bash", "-c", cron_command(stack, "run")], capture_output=True,
                            timeout=300, check=False)
    log = (stack.root / "logs" / "backup.log").read_text()
    assert result.returncode == 0, log[-3000:]
    directory = newest(stack)
    described = manifest(directory)
    for database in described["databases"]:
        assert database["tables"] == before[database["environment"]][0], database
        assert database["release"] == "release-a"
    assert described["postgres_version"].startswith("17.")  # a new stack's default major
    assert {entry["environment"]: entry["files"] for entry in described["media"]} == \
        {"prod": 2, "staging": 1}
    for entry in described["files"]:
        path = directory / entry["name"]
        assert path.stat().st_size == entry["size_bytes"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    last = records(stack, "backups.jsonl")["last"]
    assert last["outcome"] == "succeeded" and last["verified"] is True, last
    assert last["archive"] == str(directory)

    # The data changes after the backup: rows deleted and added, uploads changed and gone.
    psql(stack, "prod", "DELETE FROM notes_note;")
    psql(stack, "staging", "INSERT INTO notes_note (text, created_at) VALUES ('later', now());")
    write_upload(stack, "prod", "avatars/a.png", b"overwritten")
    (media(stack, "prod") / "docs" / "contract.txt").unlink()
    write_upload(stack, "staging", "new.txt", b"uploaded after the backup")
    assert row_counts(stack, "prod") != before["prod"][0]

    # docs/runbooks.md, "Restore one environment's database" and "Restore the media".
    for environment in ENVIRONMENTS:
        run(stack, "restore-database", environment, check=True)
        run(stack, "restore-media", environment, check=True)
    for environment in ENVIRONMENTS:
        counts, hashes = before[environment]
        assert row_counts(stack, environment) == counts, environment
        assert media_hashes(stack, environment) == hashes, environment
        upload = media(stack, environment) / next(iter(hashes))
        assert upload.stat().st_uid == 10001, "uploads stay the app's"
    # The app serves the restored rows through nginx (its connections came back).
    deadline = time.monotonic() + 30
    while True:
        response = stack.get("prod", "/api/notes/")
        if response.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert response.status == 200, response.body[:300]
    assert sum(MARKER in note["text"] for note in json.loads(response.body)["notes"]) == 5


def test_the_backup_is_unreadable_without_a_private_key_and_leaves_no_plaintext(
        stack, operator, tmp_path):
    directory = newest(stack)
    dump = directory / f"db-{database_name(stack.prefix, 'prod')}.dump.gpg"
    stranger = tmp_path / "stranger"
    stranger.mkdir(mode=0o700)
    refused = gpg(stranger, "--decrypt", str(dump), check=False)
    subprocess.run(["gpgconf", "--homedir", str(stranger), "--kill", "gpg-agent"], check=False)
    assert refused.returncode != 0 and b"PGDMP" not in refused.stdout
    assert b"No secret key" in refused.stderr or b"no secret key" in refused.stderr.lower()
    assert plaintext_left(stack.root / "backups", [MARKER.encode(), SECRET_UPLOAD[:40]]) == []
    # The host's configuration is there, and no private key that decrypts, signs or copies
    # backups (the dump job never mounts them; the host archives around them).
    members = subprocess.run(["tar", "-t"], input=gpg(operator[0], "--decrypt", str(
        directory / "config.tar.gpg")).stdout, capture_output=True, check=True).stdout.decode()
    assert "./bin/backup.sh" in members.splitlines(), members[:500]
    assert "./backup/drill-gnupg" not in members and "./backup/signing" not in members
    assert "./backup/off-host/id_ed25519" not in members
    # The operator's own key opens it (a host rebuilt from nothing, docs/runbooks.md).
    opened = gpg(operator[0], "--decrypt", str(dump))
    assert opened.stdout.startswith(b"PGDMP")
    psql(stack, "prod", "DELETE FROM notes_note;")
    run(stack, "restore-database", "prod", "--from-stdin", stdin=opened.stdout, check=True)
    assert row_counts(stack, "prod")["public.notes_note"] == 5
    (media(stack, "prod") / "docs" / "contract.txt").unlink()
    archive = gpg(operator[0], "--decrypt", str(directory / "media-prod.tar.gpg")).stdout
    run(stack, "restore-media", "prod", "--from-stdin", stdin=archive, check=True)
    assert (media(stack, "prod") / "docs" / "contract.txt").read_bytes() == SECRET_UPLOAD


def test_the_drill_restores_the_newest_backup_into_scratch_databases_and_records_it(stack):
    result = subprocess.run(["bash", "-c", cron_command(stack, "drill")], capture_output=True,
                            timeout=300, check=False)
    log = (stack.root / "logs" / "backup.log").read_text()
    assert result.returncode == 0, log[-3000:]
    drill = records(stack, "restore-tests.jsonl")["last"]
    assert drill["outcome"] == "succeeded", drill
    assert drill["archive"] == str(newest(stack))
    expected = manifest(newest(stack))["databases"]
    assert drill["tables"] == sum(len(db["tables"]) for db in expected)
    assert drill["rows"] == sum(sum(db["tables"].values()) for db in expected)
    assert "migrate --check of prod's release release-a" in drill["compared"]
    # The scratch databases and their role are gone again.
    left = psql(stack, "prod", "SELECT count(*) FROM pg_database WHERE datname LIKE "  # noqa: S608
                f"'{database_name(stack.prefix, 'drill_')}%';")
    assert left == "0"
    status = {"backups": records(stack, "backups.jsonl"),
              "restore_tests": records(stack, "restore-tests.jsonl")}
    alerts = [a for a in evaluate(status, time.time()) if a["area"] in ("backup", "restore")]
    assert alerts == [], alerts


def copy_as_newer(stack: LocalStack, suffix: int) -> Path:
    """The newest backup again under a later name, as the host would have written it there:
    what the drill takes next."""
    source = newest(stack)
    target = source.parent / f"{source.name[:9]}2359{suffix:02d}Z"
    copy_as(stack, source, target)
    return target


def copy_as(stack: LocalStack, source: Path, target: Path) -> None:
    """`source` copied to `target`, its manifest naming the new id, summed and signed again
    with the host's key: a backup the host itself made under that name."""
    shutil.copytree(source, target)
    described = target / "manifest.json"
    described.write_text(described.read_text().replace(
        f'"id": "{source.name}"', f'"id": "{target.name}"', 1))
    rehash(target)
    sign_as_host(stack, target)


def rehash(directory: Path) -> None:
    """SHA256SUMS recomputed, as a backup whose manifest is self-consistent (not signed)."""
    names = sorted(p.name for p in directory.iterdir()
                   if p.name.endswith((".gpg", ".tsv"))) + ["manifest.json"]
    sums = subprocess.run(["sha256sum", *names], cwd=directory, capture_output=True,
                          text=True, check=True).stdout
    (directory / "SHA256SUMS").write_text(sums)


def sign_as_host(stack: LocalStack, directory: Path) -> None:
    """SHA256SUMS signed with the host's own signing key, as backup.sh signs it."""
    (directory / "SHA256SUMS.sig").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f",
                    str(stack.root / "backup" / "signing" / "id_ed25519"), "-n", "aiia-backup",
                    str(directory / "SHA256SUMS")], check=True, capture_output=True, timeout=30)


def test_a_drill_of_a_backup_whose_rows_differ_from_its_manifest_fails_and_alerts(stack):
    copy = copy_as_newer(stack, 58)
    try:
        rows = copy / f"rows-{database_name(stack.prefix, 'staging')}.tsv"
        rows.write_text(rows.read_text().replace("public.notes_note\t3", "public.notes_note\t4"))
        rehash(copy)
        sign_as_host(stack, copy)
        result = run(stack, "drill")
        assert result.returncode == 1, output(result)
        assert "restore drill FAILED" in last_line(result)
        assert "row counts differ" in last_line(result)
        assert "public.notes_note" in last_line(result)
        drill = records(stack, "restore-tests.jsonl")["last"]
        assert drill["outcome"] == "failed" and "public.notes_note" in drill["reason"]
        status = {"backups": records(stack, "backups.jsonl"),
                  "restore_tests": records(stack, "restore-tests.jsonl")}
        assert any(a["severity"] == "critical" and "restore test failed" in a["message"]
                   for a in evaluate(status, time.time()))
        # A release whose migrations the backup lacks fails the app's own check.
        rows.write_text(rows.read_text().replace("public.notes_note\t4", "public.notes_note\t3"))
        schema_b = stack.engine.image("aiia-e2e-app:schema-b")
        releases = copy / "releases.tsv"
        lines = releases.read_text().splitlines()
        first = lines[0].split("\t")
        lines[0] = "\t".join([*first[:2], "schema-b", schema_b["Id"]])
        releases.write_text("\n".join(lines) + "\n")
        rehash(copy)
        sign_as_host(stack, copy)
        result = run(stack, "drill")
        assert result.returncode == 1, output(result)
        assert "migrate --check of release schema-b" in last_line(result)
    finally:
        shutil.rmtree(copy)


@pytest.mark.parametrize("tamper", ["flip a byte", "truncate", "remove"])
def test_a_tampered_backup_fails_verification_and_the_drill_naming_the_file(stack, tamper):
    copy = copy_as_newer(stack, 59)
    name = f"db-{database_name(stack.prefix, 'prod')}.dump.gpg"
    target = copy / name
    try:
        if tamper == "flip a byte":
            data = bytearray(target.read_bytes())
            data[len(data) // 2] ^= 0x01
            target.write_bytes(bytes(data))
        elif tamper == "truncate":
            target.write_bytes(target.read_bytes()[:-100])
        else:
            target.unlink()
        verify = run(stack, "verify", copy.name)
        assert verify.returncode == 1 and name in output(verify), output(verify)
        drill = run(stack, "drill")
        assert drill.returncode == 1
        assert "restore drill FAILED" in last_line(drill) and name in last_line(drill), \
            output(drill)
    finally:
        shutil.rmtree(copy)
    assert run(stack, "verify").returncode == 0, "the untouched backup still verifies"


def backup_jobs_created(stack: LocalStack, since: float) -> list[str]:
    """The names of the backup job containers the engine created since `since` (its events)."""
    names = docker("events", "--since", f"{since:.3f}", "--until", f"{time.time() + 1:.3f}",
                   "--filter", "type=container", "--filter", "event=create",
                   "--format", "{{.Actor.Attributes.name}}").stdout.split()
    return [name for name in names if name.startswith(f"{stack.prefix}-backup-run-")]


def poison(stack: LocalStack, directory: Path, tamper: str) -> None:
    """What someone who can write the backups but not sign does: a file swapped for another
    valid GnuPG file (here staging's dump, as any encryption to the public keys would make)
    with the manifest and SHA256SUMS made to agree, or the manifest's counts changed."""
    manifest_file = directory / "manifest.json"
    text = manifest_file.read_text()
    if tamper == "a dump swapped":
        prod = f"db-{database_name(stack.prefix, 'prod')}.dump.gpg"
        staging = directory / f"db-{database_name(stack.prefix, 'staging')}.dump.gpg"
        old = manifest(directory)["files"]
        entry = next(item for item in old if item["name"] == prod)
        (directory / prod).write_bytes(staging.read_bytes())
        size = staging.stat().st_size
        digest = hashlib.sha256(staging.read_bytes()).hexdigest()
        text = text.replace(
            f'{{"name": "{prod}", "size_bytes": {entry["size_bytes"]}, "sha256": '
            f'"{entry["sha256"]}"}}',
            f'{{"name": "{prod}", "size_bytes": {size}, "sha256": "{digest}"}}')
    else:
        text = text.replace('"public.notes_note": 5', '"public.notes_note": 6')
    assert text != manifest_file.read_text()
    manifest_file.write_text(text)
    rehash(directory)


@pytest.mark.parametrize("tamper", ["a dump swapped", "the manifest changed"])
def test_a_backup_changed_after_signing_is_refused_before_anything_is_decrypted(stack, tamper):
    copy = copy_as_newer(stack, 57)
    try:
        poison(stack, copy, tamper)
        verify = run(stack, "verify", copy.name)
        assert verify.returncode == 1 and "SHA256SUMS.sig" in output(verify), output(verify)
        # A row the restore would remove, and the uploads it would replace.
        psql(stack, "prod", "INSERT INTO notes_note (text, created_at) VALUES ('after', now());")
        counts, hashes = row_counts(stack, "prod"), media_hashes(stack, "prod")
        since = time.time()
        for command in ("restore-database", "restore-media"):
            refused = run(stack, command, "prod", copy.name)
            assert refused.returncode == 1, output(refused)
            assert "does not verify; nothing was decrypted or changed" in last_line(refused)
        drill = run(stack, "drill")
        assert drill.returncode == 1 and "SHA256SUMS.sig" in last_line(drill), output(drill)
        # No container that decrypts was started: the drill only dropped its scratch databases.
        assert [name for name in backup_jobs_created(stack, since)
                if not name.endswith("-drop-scratch")] == []
        assert row_counts(stack, "prod") == counts and media_hashes(stack, "prod") == hashes
    finally:
        shutil.rmtree(copy)
        psql(stack, "prod", "DELETE FROM notes_note WHERE text = 'after';")


# A materialized view's query runs again at restore (REFRESH), in the restoring session: it
# shows who a dump's own SQL runs as. Made by the superuser, as a dump crafted to escalate
# would have it.
RESTORE_WITNESS = """CREATE MATERIALIZED VIEW restore_witness AS SELECT
    session_user::text AS session_role, current_user::text AS acting_role,
    (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) AS session_superuser;"""


def test_a_restore_runs_the_dumps_sql_as_the_environments_role_not_the_superuser(stack):
    role = database_name(stack.prefix, "prod")
    psql(stack, "prod", RESTORE_WITNESS)
    try:
        assert psql(stack, "prod", "SELECT session_superuser FROM restore_witness;") == "t"
        run(stack, "run", check=True)
        run(stack, "restore-database", "prod", check=True)
        session, acting, superuser, owner = psql(
            stack, "prod", "SELECT session_role, acting_role, session_superuser, "
            "(SELECT matviewowner FROM pg_matviews WHERE matviewname = 'restore_witness') "
            "FROM restore_witness;").split("|")
        assert superuser == "f" and session != "postgres", (session, acting, superuser)
        assert acting == role and owner == role, (acting, owner)
        # The throw-away role the restore connected as is gone.
        left = f"SELECT count(*) FROM pg_roles WHERE rolname = '{session}';"  # noqa: S608
        assert psql(stack, "prod", left) == "0", "a role name PostgreSQL returned, not input"
    finally:
        psql(stack, "prod", "DROP MATERIALIZED VIEW IF EXISTS restore_witness;")


def tar_of(*members: tuple[str, str, bytes | str, int]) -> bytes:
    """An archive as root would make it: (name, kind, data or link target, mode), owner 0."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, kind, data, mode in members:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = mode
            info.mtime = int(time.time())
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif kind == "file":
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data
                archive.addfile(info)
            else:
                info.type = tarfile.FIFOTYPE
                archive.addfile(info)
    return buffer.getvalue()


def test_media_are_restored_as_their_owner_and_an_archive_with_links_or_pipes_is_refused(stack):
    made_by_root = tar_of(("staging", "dir", b"", 0o755),
                          ("staging/notes.txt", "file", b"restored", 0o644),
                          ("staging/tool", "file", b"#!/bin/sh\nid\n", 0o4755))
    run(stack, "restore-media", "staging", "--from-stdin", stdin=made_by_root, check=True)
    restored = [media(stack, "staging"), *media(stack, "staging").rglob("*")]
    assert (media(stack, "staging") / "notes.txt").read_bytes() == b"restored"
    for path in restored:
        status = path.lstat()
        assert (status.st_uid, status.st_gid) == (10001, 10001), (path, status.st_uid)
        assert status.st_mode & 0o7000 == 0, (path, oct(status.st_mode))
    for odd in (("staging/passwd", "symlink", "/etc/passwd", 0o777),
                ("staging/pipe", "fifo", b"", 0o644)):
        refused = run(stack, "restore-media", "staging", "--from-stdin",
                      stdin=tar_of(("staging", "dir", b"", 0o755), odd))
        assert refused.returncode == 1, output(refused)
        assert "refused" in last_line(refused) and odd[0] in last_line(refused)
        assert [path.name for path in media(stack, "staging").iterdir()] and \
            (media(stack, "staging") / "notes.txt").read_bytes() == b"restored"
        assert not (stack.root / "media" / ".restore-staging").exists()


def test_a_full_disk_fails_the_backup_loudly_and_keeps_the_last_good_one(stack):
    backups_dir = stack.root / "backups"
    hidden = stack.root / "backups-before-tmpfs"
    backups_dir.rename(hidden)
    backups_dir.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs",
                    str(backups_dir)], check=True)
    try:
        # The first backup on an empty directory is sized by the databases (pg_database_size:
        # ~7.5 MB each even when nearly empty) and the uploads; 32 MB holds it.
        run(stack, "run", check=True)
        good = newest(stack)
        size = sum(p.stat().st_size for p in good.iterdir())
        # Free space just above what the next backup is expected to take (the last one
        # + 25 % + 1 MiB), then uploads that will not compress: it fills up midway.
        free = shutil.disk_usage(backups_dir).free
        (backups_dir / "filler").write_bytes(b"\0" * (free - (size * 5 // 4 + 1_300_000)))
        write_upload(stack, "staging", "big.bin", os.urandom(2_000_000))
        failed = run(stack, "run")
        assert failed.returncode == 1, output(failed)
        assert "backup FAILED" in last_line(failed), output(failed)
        assert f"({good.name}) is kept" in last_line(failed)
        assert backups(stack) == [good.name]
        assert not [p for p in backups_dir.iterdir() if p.name.startswith(".work")]
        assert plaintext_left(backups_dir, [MARKER.encode()]) == []
        assert run(stack, "verify", good.name).returncode == 0
        assert records(stack, "backups.jsonl")["last"]["outcome"] == "failed"
        assert records(stack, "backups.jsonl")["last_good"]["archive"] == str(good)
        # With no room at all it refuses to start, and says why.
        (backups_dir / "filler2").write_bytes(b"\0" * (shutil.disk_usage(backups_dir).free
                                                       - 4096))
        refused = run(stack, "run")
        assert refused.returncode == 1
        assert "refusing to start" in last_line(refused), output(refused)
        assert run(stack, "verify", good.name).returncode == 0
    finally:
        (media(stack, "staging") / "big.bin").unlink(missing_ok=True)
        subprocess.run(["umount", str(backups_dir)], check=True)
        backups_dir.rmdir()
        hidden.rename(backups_dir)


def test_a_backup_killed_midway_leaves_no_plaintext_and_no_partial_backup(stack):
    before = backups(stack)
    write_upload(stack, "prod", "video.bin", os.urandom(40_000_000))
    try:
        process = subprocess.Popen([script(stack), "run"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        work = stack.root / "backups"
        deadline = time.monotonic() + 60
        while not any(work.glob(".work-*/media-*.tar.gpg")):
            assert time.monotonic() < deadline and process.poll() is None, \
                process.communicate()[0][-2000:]
            time.sleep(0.05)
        subprocess.run(["docker", "kill", f"{stack.prefix}-backup-run-dump"],
                       capture_output=True, timeout=30, check=False)
        log = process.communicate(timeout=120)[0].decode(errors="replace")
        assert process.returncode == 1, log[-2000:]
        assert "backup FAILED" in log.strip().splitlines()[-1]
        assert backups(stack) == before
        assert not list(work.glob(".work-*"))
        assert plaintext_left(stack.root / "backups", [MARKER.encode()]) == []
        assert records(stack, "backups.jsonl")["last"]["outcome"] == "failed"
    finally:
        (media(stack, "prod") / "video.bin").unlink(missing_ok=True)


def test_retention_keeps_the_daily_and_monthly_backups_and_always_the_newest(stack):
    good = newest(stack)
    made = []
    # 12 daily backups of the last days of November and one per earlier month.
    for name in [f"202611{day:02d}T033000Z" for day in range(18, 30)] + \
                [f"2026{month:02d}01T033000Z" for month in range(5, 11)]:
        copy_as(stack, good, good.parent / name)
        made.append(name)
    before = backups(stack)
    run(stack, "run", check=True)
    kept = backups(stack)
    newest_name = kept[-1]
    assert newest_name > good.name and newest_name not in before
    # keep_daily 7: the newest backup of each of the 7 newest days (today's and six of
    # November's); keep_monthly 3: the first of each of the 3 newest months.
    first_this_month = min(name for name in before if name[:6] == newest_name[:6])
    assert set(kept) == {newest_name, first_this_month,
                         *[f"202611{day}T033000Z" for day in range(24, 30)],
                         "20261118T033000Z", "20261001T033000Z"}
    for name in kept:
        assert run(stack, "verify", name).returncode == 0, name


SSHD_IMAGE = "aiia-standin/sshd:9"
RECEIVER = ROOT / "templates" / "backup" / "receive-backup.sh.j2"


def docker(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120,
                          check=check, input=stdin)


def printed(stack: LocalStack, command: str) -> list[str]:
    """What a host command of the program printed for the operator at `pulumi up` (run again
    here: it is idempotent, and the replay keeps no log)."""
    script = host_scripts(stack.run)[command]
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          check=True).stdout.splitlines()


def with_target(stack: LocalStack, port: int, host_key: str) -> dict:
    config = copy.deepcopy(stack.config)
    config["aiia:platform"]["backup"]["off_host"] = {
        "host": "127.0.0.1", "port": port, "user": "aiia-backup", "path": "/backups",
        "host_key": host_key}
    return config


def set_up_target(container: str, authorized_line: str) -> None:
    """docs/runbooks.md, "An off-host copy", on the target: the receiver installed as root's,
    the printed line as the account's one key, its .ssh and authorized_keys root's."""
    docker("exec", "-i", container, "sh", "-c",
           f"cat > {RECEIVER_PATH} && chmod 0755 {RECEIVER_PATH}", stdin=RECEIVER.read_text())
    docker("exec", container, "sh", "-c",
           'printf "%s\\n" "$1" > /home/aiia-backup/.ssh/authorized_keys '
           "&& chown root:root /home/aiia-backup/.ssh /home/aiia-backup/.ssh/authorized_keys "
           "&& chmod 0755 /home/aiia-backup/.ssh && chmod 0644 "
           "/home/aiia-backup/.ssh/authorized_keys", "-", authorized_line)


@pytest.fixture(scope="module")
def off_host(stack) -> Iterator[dict]:
    """An SSH host on 127.0.0.1 set up as the runbook says, the stack copying to it, and one
    backup copied: {container, port, host_key, copied, output}."""
    subprocess.run(["bash", str(ROOT / "tests/images/build-standins.sh"), "sshd"],
                   check=True, capture_output=True, timeout=600)
    name, port = f"{stack.prefix}-test-backup-target", free_port()
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:22", "--memory", "64m",
           SSHD_IMAGE)
    original = copy.deepcopy(stack.config)
    try:
        deadline = time.monotonic() + 30
        while "Server listening" not in docker("logs", name, check=False).stderr:
            assert time.monotonic() < deadline, docker("logs", name, check=False).stderr
            time.sleep(0.2)
        host_key = " ".join(docker("exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
                            .stdout.split()[:2])
        stack.up(with_target(stack, port, host_key))
        lines = printed(stack, "platform-backup-off-host-key")
        authorized = [line for line in lines if line.startswith("restrict,")]
        assert len(authorized) == 1, lines
        set_up_target(name, authorized[0])
        result = run(stack, "run")
        assert result.returncode == 0, output(result)
        yield {"container": name, "port": port, "host_key": host_key,
               "authorized": authorized[0], "copied": newest(stack).name, "output": result}
    finally:
        docker("rm", "-f", name, check=False)
        stack.up(original)


def with_copy_key(stack: LocalStack, port: int, *command: str, stdin: bytes = b"",
                  options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """A session on the target with the host's copy key: what root on the host can open."""
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={stack.root}/backup/off-host/known_hosts",
         "-o", "IdentitiesOnly=yes", "-i", str(stack.root / "backup/off-host/id_ed25519"),
         "-p", str(port), *options, "aiia-backup@127.0.0.1", *command],
        input=stdin, capture_output=True, timeout=60, check=False)


def stored_on_target(container: str) -> str:
    """Every stored file on the target with its SHA-256, as the target's root sees them."""
    return docker("exec", container, "sh", "-c",
                  "cd /backups && find . -path ./.incoming -prune -o -type f -print "
                  "| LC_ALL=C sort | xargs sha256sum").stdout


def test_the_copy_key_adds_a_backup_and_cannot_delete_overwrite_or_run_anything(
        stack, off_host, tmp_path):
    container, port, copied = off_host["container"], off_host["port"], off_host["copied"]
    assert off_host["authorized"].startswith(
        f'restrict,command="{RECEIVER_PATH} /backups" ssh-ed25519 ')
    before = stored_on_target(container)
    assert f"./{copied}/SHA256SUMS.sig" in before and "./received.log" in before
    fresh = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + 60))
    attempts = {
        "delete a backup": ["rm", "-rf", f"/backups/{copied}"],
        "list and remove": ["sh", "-c", "'ls /backups; rm -rf /backups/*'"],
        "any command": ["id"],
        "a shell": [],
        "overwrite a stored file": ["put", copied, "SHA256SUMS"],
        "commit a stored backup again": ["commit", copied],
        "a name outside the backup": ["put", fresh, f"../{copied}/SHA256SUMS"],
        "a backup dated in the past": ["put", "20200101T000000Z", "SHA256SUMS"],
    }
    for what, command in attempts.items():
        result = with_copy_key(stack, port, *command, stdin=b"garbage\n")
        assert result.returncode == 2, (what, result)
        assert b"aiia-receive-backup: refused" in result.stderr, (what, result)
    # A file transfer (sftp, and scp, which speaks sftp) and a forwarded connection.
    key = str(stack.root / "backup/off-host/id_ed25519")
    sftp = subprocess.run(
        ["sftp", "-F", "/dev/null", "-b", "-", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={stack.root}/backup/off-host/known_hosts",
         "-o", "IdentitiesOnly=yes", "-i", key, "-P", str(port), "aiia-backup@127.0.0.1"],
        input=f"rm /backups/{copied}/SHA256SUMS\n".encode(), capture_output=True, timeout=60,
        check=False)
    assert sftp.returncode != 0, sftp
    forward = with_copy_key(stack, port, options=("-W", "127.0.0.1:22"))
    assert forward.returncode != 0 and b"prohibited" in forward.stderr, forward
    assert stored_on_target(container) == before, "nothing stored was changed"
    assert docker("exec", container, "sh", "-c",
                  f"cd /backups/{copied} && sha256sum --check --quiet SHA256SUMS",
                  check=False).returncode == 0


def test_a_copy_tampered_on_the_target_fails_the_runbooks_signature_check(
        stack, off_host, tmp_path):
    container, copied = off_host["container"], off_host["copied"]
    lines = printed(stack, "platform-backup-signing-key")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text("\n".join(line for line in lines if " namespaces=" in line) + "\n")

    def fetch_and_check() -> subprocess.CompletedProcess:
        # docs/runbooks.md, "Rebuild a whole host from nothing", step 2, on the operator's side.
        fetched = tmp_path / "fetched"
        shutil.rmtree(fetched, ignore_errors=True)
        fetched.mkdir()
        docker("cp", f"{container}:/backups/{copied}", str(fetched))
        return subprocess.run(
            ["sh", "-c", f"ssh-keygen -Y verify -f {allowed} -I backup@{stack.prefix} "
             "-n aiia-backup -s SHA256SUMS.sig < SHA256SUMS && sha256sum --check SHA256SUMS "
             f"&& grep -q '\"id\": \"{copied}\"' manifest.json"],
            cwd=fetched / copied, capture_output=True, text=True, timeout=60, check=False)

    good = fetch_and_check()
    assert good.returncode == 0 and "Good \"aiia-backup\" signature" in good.stdout, good
    # Someone with the target's disk edits the manifest and makes SHA256SUMS agree with it.
    docker("exec", container, "sh", "-c",
           f"cd /backups/{copied} && chmod u+w . manifest.json SHA256SUMS "
           "&& sed -i 's/\"public.notes_note\": 5/\"public.notes_note\": 6/' manifest.json "
           "&& grep -v ' manifest.json$' SHA256SUMS > s && sha256sum manifest.json >> s "
           "&& mv s SHA256SUMS")
    bad = fetch_and_check()
    assert bad.returncode != 0, bad
    assert "Signature verification failed: incorrect signature" in bad.stderr, bad
    assert ": OK" not in bad.stdout, "the files are not even read before the signature passes"


def test_pitr_ships_its_archive_and_base_backups_through_the_same_receiver(stack, off_host):
    """The WAL archive and a PITR base backup reach the target with the copy key (`wal`,
    then `put`/`commit`), each once; pitr.json says nothing is pending."""
    # (Before the test that stops the target to show an unreachable one.)
    pitr = str(stack.root / "bin" / "pitr.sh")
    base = subprocess.run([pitr, "base"], capture_output=True, text=True, timeout=600,
                          check=False)
    assert base.returncode == 0, base.stdout + base.stderr
    archive = next((stack.root / "pitr" / "wal").glob("pg*")) / "wal"
    before = len(list(archive.glob("*.gpg")))
    psql(stack, "prod", "CREATE TABLE shipped (n int); INSERT INTO shipped VALUES (1);")
    stack.exec(stack.container("postgres"), "psql", "-U", "postgres", "-qAtc",
               "SELECT pg_switch_wal()")
    deadline = time.monotonic() + 60
    while len(list(archive.glob("*.gpg"))) <= before:
        assert time.monotonic() < deadline, "the switched segment was not archived"
        time.sleep(0.5)
    tick = subprocess.run([pitr, "tick", "1"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert tick.returncode == 0 and "not sent" not in tick.stdout, tick.stdout + tick.stderr
    local = sorted(path.name for path in archive.glob("*.gpg"))
    stored = docker("exec", off_host["container"], "sh", "-c",
                    "ls /backups/wal; ls /backups/*/base.tar.gpg").stdout.split()
    assert set(local) <= set(stored)
    base_id = sorted((stack.root / "pitr" / "base").glob("pg*/2*"))[-1].name
    assert f"/backups/{base_id}/base.tar.gpg" in stored
    status = json.loads((stack.root / "state" / "pitr.json").read_text())
    assert status["off_host"] == {"configured": True, "pending": 0,
                                  "last_shipped_at": status["off_host"]["last_shipped_at"]}
    assert status["off_host"]["last_shipped_at"]
    # Once: a second tick sends nothing again (the receiver would refuse a second copy).
    again = subprocess.run([pitr, "tick", "1"], capture_output=True, text=True, timeout=300,
                           check=False)
    assert again.returncode == 0 and "not sent" not in again.stdout, again.stdout


def test_the_hosts_trail_reaches_the_target_within_the_tick_through_the_receiver(
        stack, off_host, operator, tmp_path):
    """ship-logs.sh with the stack's copy key, known_hosts and backup keys, through the real
    sshd and receiver. The local stack's own script exports nothing (the test machine's
    journal and audit trail are not the stack's, and it has no journald): that is checked
    first. Then the VPS's variant of the same template, rendered for this stack's root, ships
    a journal and an audit trail that are stand-ins (a journalctl on PATH serving a file, as
    in tests/rendered/test_log_shipping.py; an audit directory here): what is real is the
    transport, the key the receiver is forced to, the encryption and the store."""
    # (Before the test that stops the target to show an unreachable one.)
    own = subprocess.run([str(stack.root / "bin" / "ship-logs.sh"), "tick"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert own.returncode == 0, own.stdout + own.stderr
    status = json.loads((stack.root / "state" / "log-shipping.json").read_text())
    assert status["configured"] is True and status["host_logs"] is False
    assert status["pending"] == 0 and "not the stack's" in status["note"]

    target = OffHostSettings(host="127.0.0.1", port=off_host["port"], user="aiia-backup",
                             path="/backups", host_key=off_host["host_key"])
    audit = tmp_path / "audit"
    audit.mkdir()
    script = tmp_path / "ship-logs.sh"
    script.write_text(render("logs/ship-logs.sh.j2", root_dir=str(stack.root), off_host=target,
                             host_logs=True, audit_dir=str(audit),
                             max_chunk_bytes=MAX_CHUNK_BYTES, pending_cap_mb=PENDING_CAP_MB,
                             note="the VPS's variant"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "journalctl").write_text(
        '#!/bin/bash\nfor a; do case $a in --cursor-file=*) c=${a#*=} ;; esac; done\n'
        'after=$(cat "$c" 2>/dev/null || echo 0); total=$(wc -l < "$JOURNAL")\n'
        'tail -n +$((after + 1)) "$JOURNAL"; [ "$total" -le "$after" ] || echo "$total" > "$c"\n')
    (bin_dir / "journalctl").chmod(0o755)
    journal = tmp_path / "journal"
    marker = f"MESSAGE=sshd[1]: Accepted publickey for intruder {time.time()}"
    journal.write_text(marker + "\n")
    (audit / "audit.log").write_text("type=USER_CMD msg=audit(1.0:7): cmd=crontab -e\n")
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                   "JOURNAL": str(journal)}
    try:
        started = time.monotonic()
        tick = subprocess.run(["bash", str(script), "tick"], env=environment,
                              capture_output=True, text=True, timeout=120, check=False)
        assert tick.returncode == 0 and "shipped" in tick.stdout, tick.stdout + tick.stderr
        assert time.monotonic() - started < 60
        status = json.loads((stack.root / "state" / "log-shipping.json").read_text())
        assert status["pending"] == 0 and status["last_shipped_at"], status
        fetched = tmp_path / "fetched"
        docker("cp", f"{off_host['container']}:/backups/logs", str(fetched))
        received = (fetched / "received.log").read_text().split()
        chunks = {path.name.split("-")[0]: path for path in fetched.glob("*.gpg")}
        assert set(chunks) == {"journal", "audit"} and chunks["journal"].name in received
        assert marker.encode() not in chunks["journal"].read_bytes()
        home = operator[0]
        for kind, expected in (("journal", journal), ("audit", audit / "audit.log")):
            decrypted = gpg(home, "--decrypt", str(chunks[kind])).stdout
            assert gzip.decompress(decrypted) == expected.read_bytes(), kind
        # Read-only there, and the copy key cannot send it again over itself.
        again = with_copy_key(stack, off_host["port"], "log", chunks["journal"].name,
                              stdin=b"forged")
        assert again.returncode == 2 and b"never overwritten" in again.stderr, again
    finally:
        shutil.rmtree(stack.root / "state" / "log-shipping", ignore_errors=True)
        (stack.root / "state" / "log-shipping.json").unlink(missing_ok=True)


def test_an_off_host_copy_arrives_verified_and_a_failed_one_keeps_the_local_backup(
        stack, off_host, tmp_path):
    name, port, host_key = off_host["container"], off_host["port"], off_host["host_key"]
    copied = off_host["copied"]
    assert "copied to aiia-backup@127.0.0.1:/backups/" in output(off_host["output"])
    check = docker("exec", name, "sh", "-c",
                   f"cd /backups/{copied} && sha256sum --check SHA256SUMS", check=False)
    assert check.returncode == 0 and check.stdout.count(": OK") >= 10, check.stdout
    assert records(stack, "backups.jsonl")["last"]["outcome"] == "succeeded"

    # A target where the key gets a shell (no receiver forced) is refused: nothing is sent.
    docker("exec", name, "sh", "-c",
           'sed -i "s/^restrict,command=\\"[^\\"]*\\" //" /home/aiia-backup/.ssh/authorized_keys')
    everything = docker("exec", name, "find", "/backups").stdout
    refused = run(stack, "run")
    assert refused.returncode == 1
    assert "the copy key runs a shell on the target" in last_line(refused), output(refused)
    assert docker("exec", name, "find", "/backups").stdout == everything
    set_up_target(name, off_host["authorized"])

    # A target that answers with another host key is refused: nothing is sent.
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    stack.up(with_target(stack, port, " ".join(
        (tmp_path / "other.pub").read_text().split()[:2])))
    refused = run(stack, "run")
    assert refused.returncode == 1
    assert "off-host copy" in last_line(refused) and \
        "Host key verification failed" in last_line(refused), output(refused)

    # An unreachable target: the record fails, the local backup is kept and verifies.
    stack.up(with_target(stack, port, host_key))
    docker("stop", "-t", "1", name)
    failed = run(stack, "run")
    assert failed.returncode == 1
    assert "off-host copy to aiia-backup@127.0.0.1:/backups/" in last_line(failed)
    assert "is kept and verified" in last_line(failed)
    kept = newest(stack).name
    assert kept != copied and run(stack, "verify", kept).returncode == 0
    last = records(stack, "backups.jsonl")["last"]
    assert last["outcome"] == "failed" and last["verified"] is True
    assert last["archive"] == str(newest(stack))

