"""The `prod` stack on the Debian 12 VPS stand-in: provisioning and one release under load.

Debian 12 is supported while it has LTS (components/host/systems.py); Debian 13, the
recommended system, runs the whole suite (tests/e2e/test_vps.py). Here one stack of its own
runs the subset that shows a Debian 12 host still works end to end, in a few minutes of CI:
- what provisioning leaves (test_vps.py's own checks, called on this module's stand-in):
  prod served through nginx, every container held to its task limit, sshd's policy as sshd
  applies it, ufw's policy and an unlisted port unreachable, every host service running with
  its settings (journald's cap, fail2ban's ban actions, the Go collectors' settings, Docker's
  live-restore);
- the CIS-style baseline (issue #25 item 2): sshd's per-address limit, rare protocols not
  loadable, no core dumps, the first run's security updates;
- one release under the strict clients' load, dropping no request;
- a second run that changes nothing;
- the host services' memory, against host.os_reserve_mb.
What it leaves to Debian 13's suite, as the same files and scripts: bans from real traffic,
log rotation at the cap, the cron jobs, the swap file, the pinned host key, the rollback.
The files themselves are checked by Debian 12's own programs in tests/rendered/test_host.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e import test_vps as whole_suite
from tests.harness.engine import DockerEngine
from tests.harness.vps import (
    RELEASES,
    Provisioned,
    assert_a_release_drops_no_request,
    check_gaps,
    health_gates,
    prod_on_vps,
)

pytestmark = pytest.mark.e2e
VPS_IMAGE = "aiia-standin/vps:12"  # tests/images/build-standins.sh: Debian 12, LTS


@pytest.fixture(scope="module")
def provisioned(engine: DockerEngine, app_images: dict[str, str],
                tmp_path_factory) -> Iterator[Provisioned]:
    with prod_on_vps(engine, VPS_IMAGE, tmp_path_factory.mktemp("keys")) as provisioned:
        yield provisioned


# What provisioning leaves: test_vps.py's own checks, on this module's stand-in.

def test_prod_serves_the_reference_app_through_nginx(provisioned):
    whole_suite.test_prod_serves_the_reference_app_through_nginx(provisioned)


def test_every_container_is_held_to_its_task_limit_on_the_vps(provisioned):
    whole_suite.test_every_container_is_held_to_its_task_limit_on_the_vps(provisioned)


def test_sshd_enforces_the_policy_keys_only_no_root_no_password(provisioned):
    whole_suite.test_sshd_enforces_the_policy_keys_only_no_root_no_password(provisioned)


def test_ufw_shows_exactly_the_policy_and_a_port_not_allowed_is_unreachable(provisioned):
    whole_suite.test_ufw_shows_exactly_the_policy_and_a_port_not_allowed_is_unreachable(
        provisioned)


def test_every_host_service_runs_and_each_job_runs_once_by_hand(provisioned):
    whole_suite.test_every_host_service_runs_and_each_job_runs_once_by_hand(provisioned)


def test_rare_protocols_cannot_load_and_sessions_dump_no_core(provisioned):
    whole_suite.test_rare_protocols_cannot_load_and_sessions_dump_no_core(provisioned)


def test_the_first_run_leaves_no_security_update_pending(provisioned):
    whole_suite.test_the_first_run_leaves_no_security_update_pending(provisioned)


def test_a_release_of_prod_on_debian_12_drops_no_request(provisioned):
    assert_a_release_drops_no_request(provisioned, RELEASES[0], RELEASES[1])


def test_health_gates_on_debian_12_name_no_start_interval_and_wait_an_interval(provisioned):
    """Debian 12's engine (API 1.41) is never sent a start_interval (host.system:
    debian-12; the provider's client would refuse it), and the release above went through.
    Its checks are paced by `interval` from the start: the contrast with Debian 13's."""
    gates = health_gates(provisioned)
    assert any(name.startswith(f"aiia-app-prod-{RELEASES[1]}-") for name in gates), gates
    for name, details in sorted(gates.items()):
        health = details["Config"]["Healthcheck"]
        assert not health.get("StartInterval"), (name, health)
        interval = health["Interval"] / 1e9
        gaps = check_gaps(details)
        assert gaps and all(gap > interval * 0.8 for gap in gaps), (name, gaps, interval)


def test_a_second_run_changes_nothing_and_restarts_nothing(provisioned):
    whole_suite.test_a_second_run_changes_nothing_and_restarts_nothing(provisioned)


def test_one_address_holding_unauthenticated_connections_locks_nobody_else_out(provisioned):
    whole_suite.test_one_address_holding_unauthenticated_connections_locks_nobody_else_out(
        provisioned)


def test_host_services_memory_after_provisioning(provisioned):
    """After the release, as on Debian 13 after its release and rollback."""
    whole_suite.test_host_services_memory_after_provisioning(provisioned)
