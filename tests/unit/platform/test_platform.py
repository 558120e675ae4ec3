"""components/platform/platform.py and context.py: what the platform declares across its
services (memory limits, private secret files, protected volumes, root's file access)."""

import copy

import pytest

from tests.harness.program import (
    prod_outputs_for_staging,
    run_program,
    service_of,
    stack_config,
)


def test_memory_limits_are_the_configured_ones(prod):
    config = stack_config("prod")["aiia:platform"]
    limits = {service_of(c): c.plain["memory"] for c in prod.containers().values()}
    assert limits["postgres"] == 120
    assert limits["pgbouncer"] == 16
    assert limits["redis"] == 48
    assert limits["nginx"] == 32
    assert limits["app"] == config["environments"]["prod"]["app_memory_mb"]


def test_secret_files_are_private(prod):
    commands = {r.name: r.plain for r in prod.resources if r.type.startswith("command:")}
    for name in ("platform-pgbouncer-userlist-install", "platform-redis-config-install"):
        assert "chmod 0600" in commands[name]["create"]
    # Read by PostgreSQL's entrypoint (uid 999) on first start, by nobody else.
    password = commands["platform-postgres-superuser-password-install"]["create"]
    assert "chmod 0400" in password and "999:999" in password


def test_stateful_volumes_are_protected(prod):
    protected = {r.plain["name"] for r in prod.of_type("docker:index/volume:Volume")
                 if r.protect}
    assert protected == {"aiia-postgres-data", "aiia-letsencrypt"}


def test_an_unprivileged_local_stack_gives_root_back_its_file_access(monkeypatch):
    # A developer's `pulumi up -s local` prepares the host directories as the developer:
    # the containers whose root writes there get DAC_OVERRIDE back, and only they.
    monkeypatch.setattr("os.getuid", lambda: 1000)
    monkeypatch.setattr("os.getgid", lambda: 1000)
    run = run_program("local")
    with_override = {service_of(container) for container in run.containers().values()
                     if "DAC_OVERRIDE" in container.plain["capabilities"].get("adds", [])}
    assert with_override == {"nginx", "dashboard-collector"}


def test_the_platform_checks_its_containers_run_whenever_one_is_new(prod):
    """Issue #28 item 1: after a start that failed behind its id, the next `up` must not be
    green with the service stopped (tests/unit/harness/test_replay.py shows it would be)."""
    check = prod.named("platform-running")
    containers = {r.plain["name"]: r for r in prod.containers().values()
                  if service_of(r) in ("postgres", "pgbouncer", "redis", "nginx")}
    assert sorted(containers) == ["aiia-nginx", "aiia-pgbouncer", "aiia-postgres", "aiia-redis"]
    # Its triggers are their ids (the mocks' `<resource name>-id`): a new container re-runs it.
    assert check.plain["triggers"] == [f"{containers[name].name}-id" for name in sorted(containers)]
    assert {c.urn for c in containers.values()} <= set(check.dependencies)
    script = check.plain["create"]
    # Each held to its task limit (review L7): PostgreSQL's from its connections (50).
    assert [line for line in script.splitlines() if line.startswith("check ")] == [
        "check aiia-nginx 128", "check aiia-pgbouncer 128", "check aiia-postgres 164",
        "check aiia-redis 128"]


def test_a_stack_whose_last_update_owned_the_platform_is_refused_owner_false():
    # Issue #28 item 3: `pulumi up` would delete every platform resource but the protected
    # ones, then fail (tests/unit/harness/test_replay.py pins how upstream does it).
    prod = run_program("prod")
    config = copy.deepcopy(stack_config("staging"))
    references = {"eduaiia/aiia/prod": prod_outputs_for_staging(),
                  # its own last update: the platform's outputs (as prod's stack exports them)
                  "organization/aiia/staging": prod.stack_outputs}
    with pytest.raises(ValueError, match=r"aiia:platform\.owner=false, but the last update "
                       r"of stack staging owns the platform.*pulumi config rm -s staging "
                       r"--path aiia:platform\.owner"):
        run_program("staging", config=config, stack_outputs=references)
    # A stack that never owned it (its last outputs: a release's) goes on.
    references["organization/aiia/staging"] = {"staging_release": "r1"}
    run = run_program("staging", config=config, stack_outputs=references)
    assert run.named("previous-staging").type == "pulumi:pulumi:StackReference"
