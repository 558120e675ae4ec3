"""The backup scripts with an off-host target (no shipped stack has one) are shellcheck-clean
too, and the target's host key is what ssh is told to trust, alone."""

import pytest

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
