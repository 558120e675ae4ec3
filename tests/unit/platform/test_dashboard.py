"""components/platform/dashboard.py: the status dashboard's package and config on the host (the
dashboard itself: tests/unit/dashboard/)."""

import copy

import pulumi
import pytest

from tests.harness.program import run_program, stack_config


def test_the_dashboard_package_archive_is_reproducible():
    # Its digest triggers a reinstall and restart on the VPS: it must change only with the
    # package's content, not with the time it was built.
    import time

    from components.platform.dashboard import package_archive

    first = package_archive()
    time.sleep(1.1)
    assert package_archive() == first


def test_the_dashboard_watches_the_renewal_job_only_where_an_acme_ca_issues():
    import json

    from dashboard.config import parse_config
    from tests.harness.program import host_files

    def dashboard_config(run):
        content = next(content for path, content in host_files(run).items()
                       if path.endswith("/dashboard/config.json"))
        return parse_config(json.loads(content))

    assert dashboard_config(run_program("prod")).certbot_state_file.as_posix() == \
        "/srv/aiia/state/certbot.json"
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["tls"] = {"mode": "self_signed"}
    assert dashboard_config(run_program("prod", config=config)).certbot_state_file is None


def test_the_servers_sandbox_hides_every_private_directory_of_the_host(prod):
    from components.platform.dashboard import PRIVATE_DIRS
    from tests.harness.program import host_files

    unit = host_files(prod)["/etc/systemd/system/aiia-dashboard.service"]
    (line,) = [line for line in unit.splitlines() if line.startswith("InaccessiblePaths=")]
    hidden = {path.lstrip("-") for path in line.split("=", 1)[1].split()}
    assert {f"/srv/aiia/{directory}" for directory in PRIVATE_DIRS} <= hidden
    for directory in ("postgres", "secrets", "pgbouncer", "redis", "backup"):
        assert directory in PRIVATE_DIRS  # the review's list (M2)


def test_the_dashboards_account_gets_a_fixed_uid_apart_from_the_data_owners(prod):
    script = prod.named("platform-dashboard-prerequisites").plain["create"]
    assert "useradd --system --uid \"$uid\"" in script and "uid=10002" in script
    for uid in (999, 70, 500):  # the data owners', and any in the system range
        config = copy.deepcopy(stack_config("prod"))
        config["aiia:platform"].setdefault("dashboard", {})["uid"] = uid
        with pytest.raises(pulumi.RunError, match=f"platform.dashboard.uid={uid} must be a "
                                                  "fixed uid between 1000 and 59999"):
            run_program("prod", config=config)
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:releases"]["prod"]["run_as"] = "10002:10002"
    with pytest.raises(pulumi.RunError, match="releases.prod.run_as='10002:10002' shares "
                                              "10002 with the dashboard's account"):
        run_program("prod", config=config)
