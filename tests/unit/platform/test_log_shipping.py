"""components/platform/log_shipping.py: what the trail's shipping puts on the host — its
script and a cron entry every minute — and that the entry is installed only after the keys it
encrypts and sends with exist. What the script does is run for real in
tests/rendered/test_log_shipping.py."""

import copy

from tests.harness.program import host_files, run_program, stack_config

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def with_off_host() -> dict:
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["backup"]["off_host"] = {
        "host": "backup.example.net", "port": 2222, "path": "/srv/aiia-backups",
        "host_key": HOST_KEY}
    return config


def test_the_tick_runs_every_minute_after_the_keys_it_uses_exist():
    run = run_program("prod", config=with_off_host())
    cron = host_files(run)["/etc/cron.d/aiia-ship-logs"]
    assert "* * * * * root /srv/aiia/bin/ship-logs.sh tick >> /srv/aiia/logs/ship-logs.log 2>&1" \
        in cron.splitlines()
    waits_for = run.named("platform-log-shipping-cron").dependencies
    for key in ("platform-backup-drill-key", "platform-backup-off-host-key",
                "platform-backup-off-host-known-hosts-install",
                "platform-log-shipping-script-install"):
        assert run.named(key).urn in waits_for, key


def test_without_an_off_host_target_the_script_sends_nothing_and_says_why():
    script = host_files(run_program("prod"))["/srv/aiia/bin/ship-logs.sh"]
    assert "ssh " not in script and "journalctl --cursor-file" not in script
    assert "off_host is not set: nothing is shipped" in script
