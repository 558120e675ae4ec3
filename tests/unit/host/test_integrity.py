"""components/host/integrity.py: the nightly file-integrity check the host declares (its
files run by both releases' AIDE and systemd: tests/rendered/test_integrity.py; on the VPS
stand-in: tests/e2e/test_vps.py)."""

from components.host.integrity import (
    BASELINE_UNIT,
    CHECK_UNIT,
    CONFIG_PATH,
    SCRIPT_PATH,
    SUMMARY_PATH,
)
from tests.harness.program import host_files
from tests.unit.host.test_provision import ancestors


def test_aide_comes_with_the_packages_and_the_baseline_waits_for_the_provisioned_host(prod):
    assert " aide " in prod.named("host-packages").plain["create"]
    baseline = prod.named("host-integrity-baseline")
    assert prod.named("host-preflight").urn in ancestors(prod, baseline)
    assert f"systemctl start {BASELINE_UNIT}" in baseline.plain["create"]
    files = host_files(prod)
    assert {CONFIG_PATH, SCRIPT_PATH, "/etc/systemd/system/aiia-integrity@.service",
            "/etc/systemd/system/aiia-integrity.timer"} <= set(files)
    assert f"Unit={CHECK_UNIT}" in files["/etc/systemd/system/aiia-integrity.timer"]
    assert "OnCalendar=*-*-* 02:30:00" in files["/etc/systemd/system/aiia-integrity.timer"]
    assert "MemoryMax=64M" in files["/etc/systemd/system/aiia-integrity@.service"]


def test_a_new_baseline_is_taken_when_what_is_watched_changes_and_only_then(prod):
    import copy

    from tests.harness.program import run_program, stack_config

    config = copy.deepcopy(stack_config("prod"))
    config["aiia:host"]["root_dir"] = "/srv/elsewhere"
    moved = run_program("prod", config=config)
    before = prod.named("host-integrity-baseline").plain["triggers"]
    assert moved.named("host-integrity-baseline").plain["triggers"] != before
    assert run_program("prod").named("host-integrity-baseline").plain["triggers"] == before


def test_the_dashboard_reads_the_summary_where_the_check_writes_it():
    from dashboard.integrity import SUMMARY

    assert str(SUMMARY) == SUMMARY_PATH
