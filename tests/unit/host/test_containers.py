"""components/host/containers.py: every health check's start_interval, where the host's engine
takes it and nowhere else."""

from __future__ import annotations

from tests.harness.program import (
    ProgramRun,
    prod_outputs_for_staging,
    run_program,
    stack_config,
)

CONTAINER = "docker:index/container:Container"


def health_checks(run: ProgramRun) -> dict[str, dict]:
    return {resource.name: resource.plain["healthcheck"] for resource in run.of_type(CONTAINER)}


def test_on_debian_13_every_health_check_probes_each_second_while_it_starts(prod):
    checks = health_checks(prod)
    assert len(checks) >= 5 and any(name.startswith("app-prod-") for name in checks)
    for name, check in checks.items():
        assert check["start_interval"] == "1s", name
        # It applies during the start period only: each is longer than a start takes.
        assert check["start_period"] not in ("0s", None), name


def test_on_debian_12_no_health_check_names_start_interval_and_generations_keep_their_names(
        prod):
    """The field is left out (not sent as "0s"), so Debian 12's engine is asked nothing new,
    and a release's generation there keeps the name it had before start_interval existed."""
    config = stack_config("prod")
    config["aiia:host"]["system"] = "debian-12"
    bookworm = run_program("prod", config=config)
    for name, check in health_checks(bookworm).items():
        assert "start_interval" not in check, name
    app = [r.plain["name"] for r in bookworm.of_type(CONTAINER) if r.name.startswith("app-")]
    on_13 = [r.plain["name"] for r in prod.of_type(CONTAINER) if r.name.startswith("app-")]
    # The generation names the health check: a new one on Debian 13, the old one on 12.
    assert app != on_13
    assert app == ["aiia-app-prod-2026-11-26-1-" + GENERATION_WITHOUT_START_INTERVAL]


# prod's release generation as the program named it before start_interval (main at 8d7ac63).
GENERATION_WITHOUT_START_INTERVAL = "308bbbd9"


def test_a_release_follows_the_platform_stack_s_host(staging):
    """staging reads the platform's health_start_interval through the StackReference."""
    (check,) = health_checks(staging).values()
    assert check["start_interval"] == "1s"
    outputs = {**prod_outputs_for_staging(), "health_start_interval": None}
    (check,) = health_checks(run_program("staging", stack_outputs={
        "eduaiia/aiia/prod": outputs})).values()
    assert "start_interval" not in check


def test_a_local_stack_leaves_it_out_unless_its_docker_takes_it(local):
    assert all("start_interval" not in check for check in health_checks(local).values())
    config = stack_config("local")
    config["aiia:host"]["docker_api_version"] = "1.45"
    newer = run_program("local", config=config)
    assert {check["start_interval"] for check in health_checks(newer).values()} == {"1s"}
