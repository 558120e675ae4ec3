"""components/platform/nginx.py: nginx's container, its config and how it changes."""

import copy

from tests.harness.program import run_program, service_of, stack_config


def test_local_nginx_binds_loopback_only(local):
    nginx = next(c for c in local.containers().values() if service_of(c) == "nginx")
    assert {port["ip"] for port in nginx.plain["ports"]} == {"127.0.0.1"}


def test_nginx_config_change_reloads_and_never_touches_the_container(prod):
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["nginx"] = {"general_rate_per_second": 150}
    changed = run_program("prod", config=config)
    before = prod.containers()["aiia-nginx"].plain
    after = changed.containers()["aiia-nginx"].plain
    assert before == after
    main_before = prod.named("platform-nginx-main-install").plain
    main_after = changed.named("platform-nginx-main-install").plain
    assert main_before["stdin"] != main_after["stdin"]
    assert "rate=150r/s" in main_after["stdin"]


def test_every_nginx_change_is_made_under_one_lock(prod):
    scripts = [r.plain["create"] for r in prod.resources
               if r.name.startswith("platform-nginx-") and r.name.endswith("-install")]
    scripts.append(prod.named("app-prod-upstream-install").plain["create"])
    for script in scripts:
        if "only_if_absent" in script or "already present" in script:
            continue
        # Waited on with a bound (issue #28 item 6), never for ever.
        assert "flock -w 120 9" in script and "/srv/aiia/state/nginx.lock" in script
