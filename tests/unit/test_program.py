"""The whole program under Pulumi's mocks, per stack file: what holds for every container and
every wing (the house rules, secrets kept secret, the stack outputs, the Docker provider).
What one wing declares is tested beside it: tests/unit/host/, platform/, release/."""

import copy
import json

import pulumi
import pytest

from components.platform.outputs import OUTPUT_KEYS
from tests.harness.program import (
    contains_secret,
    is_secret,
    made_up_secrets,
    release_container,
    run_program,
    service_of,
    stack_config,
)
from tests.harness.replay import duration_ns, go_duration

PLATFORM_SERVICES = {"postgres", "pgbouncer", "redis", "nginx"}


@pytest.mark.parametrize("stack_fixture", ["prod", "local"])
def test_every_platform_service_runs_with_limits_health_and_restart(stack_fixture, request):
    run = request.getfixturevalue(stack_fixture)
    containers = run.containers()
    services = {service_of(container) for container in containers.values()}
    assert services >= PLATFORM_SERVICES
    for name, container in containers.items():
        inputs = container.plain
        assert inputs["memory"] > 0, name
        assert inputs["memory_swap"] == inputs["memory"], f"{name}: swap must equal memory"
        assert inputs["healthcheck"]["tests"][0] in ("CMD", "CMD-SHELL"), name
        assert inputs["wait"] is True, name
        assert inputs["restart"] == "unless-stopped", name
        assert inputs["log_driver"] == "json-file", name
        assert inputs["log_opts"] == {"max-size": "10m", "max-file": "3"}, name
        assert "no-new-privileges:true" in inputs["security_opts"], name


@pytest.mark.parametrize("stack_fixture", ["prod", "local", "staging"])
def test_each_container_is_on_the_networks_it_needs_and_no_other(stack_fixture, request):
    """Review M7: an environment's network holds its releases and what they use (nginx,
    PgBouncer, Redis); PostgreSQL is on the data network alone, with PgBouncer; the
    dashboard's port is on the status network, with nginx at a fixed address."""
    run = request.getfixturevalue(stack_fixture)
    prefix = "aiia-local" if stack_fixture == "local" else "aiia"
    envs = [f"{prefix}-prod", f"{prefix}-staging"]
    status = f"{prefix}-status"
    expected = {
        "postgres": [prefix], "pgbouncer": [prefix, *envs], "redis": envs,
        "nginx": [status, *envs], "dashboard": [status], "dashboard-collector": [status],
        "dashboard-docker-proxy": [],  # the local stack's: a unix socket, no network
    }
    networks = {}
    for name, container in run.containers().items():
        attached = [network["name"] for network in
                    container.plain.get("networks_advanced") or []]
        service = service_of(container)
        if service == "app":
            environment = name.removeprefix(f"{prefix}-app-").split("-")[0]
            assert attached == [f"{prefix}-{environment}"], name
        else:
            networks[service] = attached
    assert networks == {service: expected[service] for service in networks}
    if stack_fixture != "staging":
        base = "172.31.1" if stack_fixture == "local" else "172.30.1"
        status_address = run.containers()[f"{prefix}-nginx"].plain["networks_advanced"][0]
        assert status_address == {"name": status, "ipv4_address": f"{base}.2"}
        # The gateway (a VPS's dashboard listens there) is named: with an ip_range, Docker
        # would take the range's first address instead.
        assert run.named("platform-network-status").plain["ipam_configs"] == [
            {"subnet": f"{base}.0/27", "ip_range": f"{base}.16/28", "gateway": f"{base}.1"}]


@pytest.mark.parametrize("stack_fixture", ["prod", "local", "staging"])
def test_only_nginx_publishes_ports_and_only_80_and_443(stack_fixture, request):
    run = request.getfixturevalue(stack_fixture)
    for name, container in run.containers().items():
        ports = container.plain.get("ports") or []
        if service_of(container) == "nginx":
            assert sorted(port["internal"] for port in ports) == [80, 443]
        else:
            assert ports == [], f"{name} must not publish a host port"


def test_secrets_stay_secrets(prod):
    containers = prod.containers()
    for container in containers.values():
        if service_of(container) == "app":
            assert is_secret(container.inputs["envs"]), "env holding passwords must be secret"
    # PostgreSQL's superuser password is a file, not a variable `docker inspect` shows.
    postgres = release_container(prod, "aiia-postgres").plain
    assert "POSTGRES_PASSWORD_FILE=/etc/postgresql/aiia/superuser-password" in postgres["envs"]
    assert not any(env.startswith("POSTGRES_PASSWORD=") for env in postgres["envs"])
    commands = {r.name: r for r in prod.resources if r.type.startswith("command:")}
    for name in ("platform-pgbouncer-userlist-install", "platform-redis-config-install",
                 "platform-postgres-superuser-password-install",
                 "platform-postgres-init-databases", "app-prod-migrate-2026-11-26-1"):
        assert is_secret(commands[name].inputs["stdin"]), f"{name} stdin must be secret"
    # No plain input anywhere carries a secret value in clear text.
    for resource in prod.resources:
        if contains_secret(resource.inputs):
            continue
        text = repr(resource.inputs)
        for secret in ("test-postgres-superuser", "test-prod-db", "test-staging-redis",
                       "test-prod-django-secret-key"):
            assert secret not in text, f"{resource.name} holds {secret} in the clear"


def test_prod_exports_what_staging_reads(prod):
    assert set(OUTPUT_KEYS) <= set(prod.exports)


def test_staging_reads_the_platform_from_prod(staging):
    references = staging.of_type("pulumi:pulumi:StackReference")
    # The platform's stack, and its own last outputs (components/platform/ownership.py).
    assert sorted(r.plain["name"] for r in references) == \
        ["eduaiia/aiia/prod", "organization/aiia/staging"]
    types = {r.type for r in staging.resources}
    assert "aiia:platform:Platform" not in types
    app = release_container(staging, "aiia-app-staging-2026-11-26-1-")
    assert is_secret(app.inputs["envs"])
    env = dict(item.split("=", 1) for item in app.plain["envs"])
    assert env["DATABASE_PASSWORD_FILE"] == "/run/secrets/aiia/database_password"
    assert env["DATABASE_HOST"] == "aiia-pgbouncer"
    assert env["REDIS_URL"] == "redis://staging@aiia-redis:6379/0"
    # Staging's passwords come from staging's own config (made_up_secrets), not from prod.
    files = {r.name: r for r in staging.resources if r.type == "command:remote:Command"}
    assert files["app-staging-secret-database_password-install"].plain["stdin"] \
        == "test-staging-db"
    assert files["app-staging-secret-redis_password-install"].plain["stdin"] \
        == "test-staging-redis"
    assert env["PORT"] == "8001"
    assert app.plain["memory"] == 80
    # staging declares nothing of prod's.
    assert not [name for name in staging.containers() if "prod" in name]


def test_the_platform_stack_exports_no_secret(prod):
    """Review M8: a StackReference hands its reader every output of the stack it names, so
    any secret output of prod's, per environment or not, is staging's token's to read."""
    made_up = made_up_secrets(stack_config("prod"))
    assert set(OUTPUT_KEYS) <= set(prod.stack_outputs)
    for key, value in prod.stack_outputs.items():
        assert not contains_secret(value), f"output {key} is a secret"
        text = json.dumps(value, default=str)
        for secret_key, secret in made_up.items():
            assert secret not in text, f"output {key} holds {secret_key}"


def test_staging_needs_its_own_passwords_and_none_of_prods():
    config = stack_config("staging")
    secrets = made_up_secrets(config)
    assert set(secrets) == {"aiia:staging_secret_key", "aiia:staging_db_password",
                            "aiia:staging_redis_password"}
    with pytest.raises(pulumi.RunError, match="aiia:staging_db_password is missing"):
        run_program("staging", config=config, secrets={
            key: value for key, value in secrets.items() if "db_password" not in key})


def test_a_bad_config_stops_the_program_before_any_resource(capsys):
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["tls"]["mode"] = "bogus"
    with pytest.raises(pulumi.RunError, match="aiia:platform.tls.mode='bogus' is not a TLS mode"):
        run_program("prod", config=config)


@pytest.mark.parametrize("stack_fixture", ["prod", "local"])
def test_every_healthcheck_duration_is_declared_as_the_provider_reads_it_back(
        stack_fixture, request):
    # terraform-provider-docker reads durations back as Go's time.Duration.String(); any
    # other spelling ("60s" for "1m0s") differs from state on every `pulumi up`, and a
    # healthcheck change replaces the container (delete first).
    run = request.getfixturevalue(stack_fixture)
    for name, container in run.containers().items():
        health = container.plain.get("healthcheck") or {}
        for key in ("interval", "timeout", "start_period"):
            if key in health:
                assert health[key] == go_duration(duration_ns(health[key])), (name, key)


def test_a_private_registry_is_logged_in_by_the_provider_with_a_secret_password():
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:registry"] = {"address": "ghcr.io", "username": "eduaiia-deploy"}
    secrets = {**made_up_secrets(config), "aiia:registry_password": "test-registry-token"}
    run = run_program("prod", config=config, secrets=secrets)
    provider = run.named("docker")
    assert contains_secret(provider.inputs["registryAuth"]), provider.inputs["registryAuth"]
    (auth,) = json.loads(provider.plain["registry_auth"])
    assert auth["address"] == "ghcr.io" and auth["username"] == "eduaiia-deploy"
    assert "test-registry-token" in json.dumps(auth)  # revealed here; a secret in state


# --- least privilege ----------------------------------------------------------------------

# What each container's root may still do; everything else is dropped (issue #14).
CAPABILITIES_ADDED = {
    "nginx": ["CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID"],  # master: ports, workers
}


@pytest.mark.parametrize("stack_fixture", ["prod", "local", "staging"])
def test_every_container_drops_every_capability_but_the_ones_it_needs(stack_fixture, request):
    for name, container in request.getfixturevalue(stack_fixture).containers().items():
        capabilities = container.plain["capabilities"]
        assert capabilities["drops"] == ["ALL"], name
        assert capabilities.get("adds", []) == CAPABILITIES_ADDED.get(service_of(container),
                                                                       []), name


# Where each container may write besides its volumes and mounts: small tmpfs, sized.
TMPFS = {
    "nginx": {"/run": "size=1m,mode=0755"},  # its pid file
    "postgres": {"/var/run/postgresql": "size=1m,mode=1777", "/tmp": "size=8m,mode=1777"},
    "pgbouncer": {"/tmp": "size=1m,mode=1777"},
    "app": {"/tmp": "size=8m,mode=1777"},
    "dashboard-collector": {"/tmp": "size=4m,mode=1777"},
}


@pytest.mark.parametrize("stack_fixture", ["prod", "local", "staging"])
def test_every_container_has_a_read_only_root(stack_fixture, request):
    for name, container in request.getfixturevalue(stack_fixture).containers().items():
        assert container.plain["read_only"] is True, name
        assert (container.plain.get("tmpfs") or {}) == TMPFS.get(service_of(container), {}), name


def test_a_typo_in_a_top_level_key_stops_the_program_instead_of_deleting_the_release():
    # `aiia:releses` would leave prod with no release: `up` would delete the serving one.
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:releses"] = config.pop("aiia:releases")
    with pytest.raises(pulumi.RunError, match="aiia:releses is not a setting; did you mean "
                                              "'releases'"):
        run_program("prod", config=config, secrets=made_up_secrets(stack_config("prod")))


def test_a_secret_set_in_plain_text_stops_the_program():
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:prod_secret_key"] = "committed-by-mistake"
    secrets = made_up_secrets(config)
    del secrets["aiia:prod_secret_key"]
    with pytest.raises(pulumi.RunError, match="aiia:prod_secret_key is in the stack file in "
                                              "plain text"):
        run_program("prod", config=config, secrets=secrets)
