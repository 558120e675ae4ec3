"""components/platform/pitr.py: what point-in-time recovery puts on the host — PostgreSQL's
archiving (its config, its archive mount, a replication rule for the base backup), the keys it
encrypts to, pitr.sh and its cron entries — and that `pitr: false` puts none of it there."""

import copy
import json

from components.platform.pitr import ARCHIVE_MOUNT, archive_command, render_pitr_cron
from tests.harness.program import host_files, host_scripts, run_program, stack_config


def test_the_cron_entries_tick_every_minute_and_take_base_backups_and_the_drill():
    entry = render_pitr_cron("/srv/aiia/bin/pitr.sh", "/srv/aiia/logs/pitr.log", "02:40", 1,
                             15, "05:40")
    lines = [line for line in entry.splitlines() if line and not line.startswith(("#", "S", "P"))]
    assert lines == [
        "* * * * * root /srv/aiia/bin/pitr.sh tick >> /srv/aiia/logs/pitr.log 2>&1",
        "40 2 * * * root /srv/aiia/bin/pitr.sh base >> /srv/aiia/logs/pitr.log 2>&1",
        "40 5 15 * * root /srv/aiia/bin/pitr.sh drill >> /srv/aiia/logs/pitr.log 2>&1"]
    every_third = render_pitr_cron("/s", "/l", "02:40", 3, 15, "05:40")
    assert "40 2 */3 * * root /s base" in every_third


def test_postgresql_archives_through_the_program_script_into_its_own_mount():
    run = run_program("prod")
    files = host_files(run)
    config = files["/srv/aiia/postgres/postgresql.conf"]
    assert "archive_mode = on" in config and "archive_timeout = 40s" in config
    assert f"archive_command = '{archive_command(17)}'" in config
    assert "bash /etc/postgresql/aiia/pitr-archive.sh %p %f 17" in config
    assert "host    replication   postgres" in files["/srv/aiia/postgres/pg_hba.conf"]
    server = run.containers()["aiia-postgres"]
    mounts = {volume["container_path"]: volume for volume in server.plain["volumes"]}
    assert mounts[ARCHIVE_MOUNT]["host_path"] == "/srv/aiia/pitr/wal"
    assert not mounts[ARCHIVE_MOUNT].get("read_only")
    # The archive script is there before the server that runs it.
    script = run.named("platform-postgres-pitr-archive-install")
    assert script.urn in server.dependencies
    assert "/srv/aiia/pitr/wal" in host_scripts(run)["platform-directories"]


def test_the_keys_the_server_encrypts_to_are_the_backups_own(keys):
    config = stack_config("prod")
    config["aiia:platform"]["backup"] = {"recipients": [keys["path"]]}
    run = run_program("prod", config=config)
    copy_keys = host_scripts(run)["platform-pitr-keys"]
    assert "/srv/aiia/backup/keys/drill.asc" in copy_keys
    assert "/srv/aiia/backup/keys/operator-" in copy_keys
    assert "/srv/aiia/postgres/pitr-keys" in copy_keys
    copying = run.named("platform-pitr-keys").dependencies
    assert run.named("platform-backup-drill-key").urn in copying
    # Every key file it copies is written first (an operator's key raced it once in CI).
    (operator_key,) = [resource for resource in run.resources
                       if resource.name.startswith("platform-backup-key-")
                       and resource.name.endswith("-install")]
    assert operator_key.urn in copying


def test_pitr_false_archives_nothing_and_installs_nothing():
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"].setdefault("backup", {})["pitr"] = False
    run = run_program("prod", config=config)
    files = host_files(run)
    assert "archive_mode = off" in files["/srv/aiia/postgres/postgresql.conf"]
    assert "replication" not in files["/srv/aiia/postgres/pg_hba.conf"].split("# TYPE")[1] \
        .replace("# The PITR", "")
    assert not [path for path in files if "pitr" in path]
    server = run.containers()["aiia-postgres"]
    assert ARCHIVE_MOUNT not in [volume["container_path"] for volume in server.plain["volumes"]]


def test_the_dashboard_names_the_stack_its_pitr_alerts_tell_the_operator_to_run():
    for stack in ("prod", "local"):
        (config,) = [json.loads(content) for path, content in host_files(run_program(stack)).items()
                     if path.endswith("/dashboard/config.json")]
        assert config["pulumi_stack"] == stack


def test_the_daily_backup_leaves_the_wal_archive_out_of_the_host_configuration():
    # Data that changes while tar reads it ("file changed as we read it" failed a backup),
    # and copied off the host on its own.
    script = host_files(run_program("prod"))["/srv/aiia/bin/backup.sh"]
    assert "--exclude=./pitr " in script
