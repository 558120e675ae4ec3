"""components/platform/dashboard.py: the status dashboard's package and config on the host (the
dashboard itself: tests/unit/dashboard/)."""

import copy

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
