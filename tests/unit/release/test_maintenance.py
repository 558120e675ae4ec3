"""components/release/maintenance.py and the settings it reads: an environment's maintenance
switch, owned by the stack that releases it (issue #27 item 4)."""

import copy

from tests.harness.program import prod_outputs_for_staging, run_program, stack_config
from tests.harness.settings import problems_of


def switch_of(run, environment: str):
    return run.named(f"app-{environment}-maintenance-install")


def test_off_by_default_and_the_platform_seeds_it_off_without_owning_it(prod):
    switch = switch_of(prod, "prod")
    assert "geo $aiia_maintenance_prod {\n    default 0;\n}" in switch.plain["stdin"]
    assert "/srv/aiia/nginx/maintenance/prod.conf" in switch.plain["create"]
    assert "-s reload" in switch.plain["create"]  # nginx -t, then a graceful reload
    seed = prod.named("platform-nginx-maintenance-prod-install")
    assert "default 0;" in seed.plain["stdin"]
    assert "-s reload" not in seed.plain["create"]  # only if absent: the release owns it
    # The site reads the switch's variables: nginx.conf's include and the seed come first.
    by_urn = {r.urn: r.name for r in prod.resources}
    site = prod.named("platform-nginx-site-prod")
    assert {"platform-nginx-main-install", "platform-nginx-maintenance-prod-install"} <= {
        by_urn[d] for d in site.dependencies}


def test_on_answers_503_but_to_the_allowed_addresses_and_the_page_comes_first():
    config = copy.deepcopy(stack_config("staging"))
    config["aiia:releases"]["staging"].update(
        maintenance=True, maintenance_allow=["203.0.113.7", "198.51.100.0/24"],
        maintenance_retry_after_seconds=300)
    run = run_program("staging", config=config,
                      stack_outputs={"eduaiia/aiia/prod": prod_outputs_for_staging()})
    switch = switch_of(run, "staging")
    assert ("geo $aiia_maintenance_staging {\n    default 1;\n    203.0.113.7/32 0;\n"
            "    198.51.100.0/24 0;\n}") in switch.plain["stdin"]
    assert "default 300;" in switch.plain["stdin"]
    page = run.named("app-staging-maintenance-page-install")
    assert "/srv/aiia/www/staging/maintenance/aiia-maintenance.html" in page.plain["create"]
    assert "staging-api.eduaiia.com" in page.plain["stdin"]
    by_urn = {r.urn: r.name for r in run.resources}
    assert "app-staging-maintenance-page-install" in {
        by_urn[d] for d in run.named("app-staging-maintenance").dependencies}


def test_the_operators_page_from_the_repository():
    page = "tests/unit/release/maintenance-page.html"
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:releases"]["prod"].update(maintenance=True, maintenance_page=page)
    run = run_program("prod", config=config)
    stdin = run.named("app-prod-maintenance-page-install").plain["stdin"]
    assert "We are moving to a bigger home" in stdin


def test_bad_maintenance_settings_are_refused_naming_the_key_and_the_fix():
    def bad(raw):
        raw["releases"]["prod"].update(maintenance_allow=["203.0.113.300", "office"],
                                       maintenance_page="../outside.html",
                                       maintenance_retry_after_seconds=0)

    problems = problems_of(bad)
    assert "aiia:releases.prod.maintenance_allow: '203.0.113.300' is not an address or a " \
        "network (CIDR)" in problems
    assert "'office' is not an address" in problems
    assert "aiia:releases.prod.maintenance_page='../outside.html' must be an .html file " \
        "inside the repository" in problems
    assert "aiia:releases.prod.maintenance_retry_after_seconds=0 must be between 1 and " \
        "86400" in problems

    def missing(raw):
        raw["releases"]["prod"]["maintenance_page"] = "pages/maintenance.html"

    assert "no such file in the repository" in problems_of(missing)

    def not_a_list(raw):
        raw["releases"]["prod"]["maintenance_allow"] = "203.0.113.7"

    assert "must be a list of addresses or networks" in problems_of(not_a_list)
