"""components/platform/backup.py: the backup job the platform installs (its cron entry, the
operators' keys it encrypts to)."""

from components.platform.backup import backup_signer, render_backup_cron, restore_role
from components.settings.platform import ENVIRONMENT_NAME_RE
from tests.harness.program import host_files, run_program, stack_config
from tests.harness.settings import parse, with_backup


def test_the_cron_entry_runs_the_backup_daily_and_the_drill_monthly():
    entry = render_backup_cron("/srv/aiia/bin/backup.sh", "/srv/aiia/logs/backup.log",
                               "03:30", 1, "05:10")
    lines = [line for line in entry.splitlines() if line and line[0].isdigit()]
    assert lines == [
        "30 3 * * * root /srv/aiia/bin/backup.sh run >> /srv/aiia/logs/backup.log 2>&1",
        "10 5 1 * * root /srv/aiia/bin/backup.sh drill >> /srv/aiia/logs/backup.log 2>&1"]


def test_the_platform_installs_the_backup_with_every_recipient(keys):
    config = stack_config("prod")
    config["aiia:platform"]["backup"] = {"recipients": [keys["path"]], "time": "02:15"}
    # The nightly integrity check (02:30 by default) moves out of the backup's hour with it.
    config["aiia:host"]["provision"]["integrity_check_time"] = "01:00"
    files = host_files(run_program("prod", config=config))
    fingerprint = parse("prod", with_backup(recipients=[keys["path"]])).platform.backup \
        .keys[0].fingerprint
    assert files[f"/srv/aiia/backup/keys/operator-{fingerprint}.asc"] == keys["good"]
    job = files["/srv/aiia/bin/backup-job.sh"]
    assert f"/keys/operator-{fingerprint}.asc" in job and "/keys/drill.asc" in job
    assert "15 2 * * * root /srv/aiia/bin/backup.sh run" in files["/etc/cron.d/aiia-backup"]
    script = files["/srv/aiia/bin/backup.sh"]
    assert "--memory 64m --memory-swap 64m" in script


def test_the_cron_entry_waits_for_the_signing_key_that_every_backup_needs():
    run = run_program("prod")
    key = run.named("platform-backup-signing-key")
    assert key.urn in run.named("platform-backup-cron").dependencies
    # The key backup.sh signs with is the one the key script makes, under the same identity.
    script = host_files(run)["/srv/aiia/bin/backup.sh"]
    assert 'signing_key="$root/backup/signing/id_ed25519"' in script
    assert f"signer={backup_signer('aiia')}" in script
    assert f"-C {backup_signer('aiia')} -f /srv/aiia/backup/signing/id_ed25519" in \
        key.plain["create"]


def test_a_restore_connects_as_a_role_no_environment_can_have():
    # Environment names are lower-case letters and digits: no environment's role (prefix_env)
    # has a second underscore, so dropping the restore role never drops an environment's.
    role = restore_role("aiia")
    assert role == "aiia_restore_role"
    assert not ENVIRONMENT_NAME_RE.match(role.removeprefix("aiia_"))
    job = host_files(run_program("prod"))["/srv/aiia/bin/backup-job.sh"]
    assert f"restore_role={role}" in job
    assert "declare -A roles=([prod]=aiia_prod [staging]=aiia_staging )" in job
