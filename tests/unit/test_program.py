"""The whole program under Pulumi's mocks, per stack file: what `pulumi up` would declare."""

import copy
import re

import pytest

from components.platform.outputs import OUTPUT_KEYS
from tests.harness.program import (
    contains_secret,
    is_secret,
    prod_outputs_for_staging,
    run_program,
    stack_config,
)
from tests.harness.replay import duration_ns, go_duration

CONTAINER = "docker:index/container:Container"
PLATFORM_SERVICES = {"postgres", "pgbouncer", "redis", "nginx"}


@pytest.fixture(scope="module")
def prod():
    return run_program("prod")


@pytest.fixture(scope="module")
def local():
    return run_program("local")


def release_container(run, name_prefix: str):
    """The one container of a release (its name ends in the generation of its inputs)."""
    matches = [c for name, c in run.containers().items() if name.startswith(name_prefix)]
    assert len(matches) == 1, (name_prefix, list(run.containers()))
    return matches[0]


@pytest.fixture(scope="module")
def staging():
    return run_program("staging",
                       stack_outputs={"eduaiia/aiia/prod": prod_outputs_for_staging()})


def service_of(container) -> str:
    labels = {label["label"]: label["value"] for label in container.plain["labels"]}
    return labels["aiia.service"]


@pytest.mark.parametrize("stack_fixture", ["prod", "local"])
def test_every_platform_service_runs_with_limits_health_and_restart(stack_fixture, request):
    run = request.getfixturevalue(stack_fixture)
    containers = run.containers()
    services = {service_of(container) for container in containers.values()}
    assert services >= PLATFORM_SERVICES
    network = run.named("platform-network").plain["name"]
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
        assert [n["name"] for n in inputs["networks_advanced"]] == [network], name


def test_memory_limits_are_the_configured_ones(prod):
    config = stack_config("prod")["aiia:platform"]
    limits = {service_of(c): c.plain["memory"] for c in prod.containers().values()}
    assert limits["postgres"] == 120
    assert limits["pgbouncer"] == 16
    assert limits["redis"] == 64
    assert limits["nginx"] == 32
    assert limits["app"] == config["environments"]["prod"]["app_memory_mb"]


@pytest.mark.parametrize("stack_fixture", ["prod", "local", "staging"])
def test_only_nginx_publishes_ports_and_only_80_and_443(stack_fixture, request):
    run = request.getfixturevalue(stack_fixture)
    for name, container in run.containers().items():
        ports = container.plain.get("ports") or []
        if service_of(container) == "nginx":
            assert sorted(port["internal"] for port in ports) == [80, 443]
        else:
            assert ports == [], f"{name} must not publish a host port"


def test_local_nginx_binds_loopback_only(local):
    nginx = next(c for c in local.containers().values() if service_of(c) == "nginx")
    assert {port["ip"] for port in nginx.plain["ports"]} == {"127.0.0.1"}


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


def test_prod_exports_what_staging_reads(prod):
    assert set(OUTPUT_KEYS) <= set(prod.exports)


def test_staging_reads_the_platform_from_prod(staging):
    references = staging.of_type("pulumi:pulumi:StackReference")
    assert [r.plain["name"] for r in references] == ["eduaiia/aiia/prod"]
    types = {r.type for r in staging.resources}
    assert "aiia:platform:Platform" not in types
    app = release_container(staging, "aiia-app-staging-2026-11-26-1-")
    assert is_secret(app.inputs["envs"])
    env = dict(item.split("=", 1) for item in app.plain["envs"])
    assert env["DATABASE_PASSWORD_FILE"] == "/run/secrets/aiia/database_password"
    assert env["DATABASE_HOST"] == "aiia-pgbouncer"
    assert env["REDIS_URL"] == "redis://staging@aiia-redis:6379/0"
    # The passwords prod made for staging reach staging's files.
    files = {r.name: r for r in staging.resources if r.type == "command:remote:Command"}
    assert files["app-staging-secret-database_password-install"].plain["stdin"] \
        == "from-prod-staging-db"
    assert files["app-staging-secret-redis_password-install"].plain["stdin"] \
        == "from-prod-staging-redis"
    assert env["PORT"] == "8001"
    assert app.plain["memory"] == 80
    # staging declares nothing of prod's.
    assert not [name for name in staging.containers() if "prod" in name]


def test_app_container_contract(prod):
    app = release_container(prod, "aiia-app-prod-2026-11-26-1-")
    env = dict(item.split("=", 1) for item in app.plain["envs"])
    assert env["PORT"] == "8000"
    assert env["ALLOWED_HOSTS"] == "api.eduaiia.com"
    assert env["CACHE_KEY_PREFIX"] == "prod"
    assert env["RELEASE"] == "2026.11.26-1"
    assert app.plain["healthcheck"]["tests"] == ["CMD", "python3", "/app/healthcheck.py"]
    assert app.plain["image"].startswith("sha256:")


def test_release_waits_for_migration_and_switch_waits_for_healthy_container(prod):
    by_urn = {r.urn: r for r in prod.resources}
    app = prod.named("app-prod-app-2026-11-26-1")
    assert "app-prod-migrate-2026-11-26-1" in {by_urn[d].name for d in app.dependencies}
    switch = prod.named("app-prod-upstream-install")
    assert "app-prod-app-2026-11-26-1" in {by_urn[d].name for d in switch.dependencies}
    create = switch.plain["create"]
    assert "nginx -c /etc/aiia-nginx/nginx.conf -t" in create
    assert "-s reload" in create
    assert "docker restart" not in create


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


def drain_bound(run) -> str:
    """The watch's "keep the previous release until the reload + N s + drain" line."""
    script = next(r for r in run.resources
                  if r.name in ("app-prod-watch", "app-staging-watch")).plain["create"]
    lines = [line for line in script.splitlines() if line.startswith("if [ $((reloaded_at")]
    assert len(lines) == 1, script
    return lines[0]


def test_a_reload_keeps_idle_connections_and_the_release_waits_for_them(prod):
    main = prod.named("platform-nginx-main-install").plain["stdin"]
    assert "\n    keepalive_timeout 30s;\n" in main
    assert "\n    keepalive_min_timeout 30s;\n" in main  # default: as long as keepalive_timeout
    # The previous release serves until the reload + those 30 s + the 5 s drain.
    assert "reloaded_at + 30 + 5" in drain_bound(prod)


def test_keepalive_min_timeout_zero_is_nginx_default_and_the_drain_is_the_watch_s(prod):
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["nginx"] = {"keepalive_min_timeout_seconds": 0}
    changed = run_program("prod", config=config)
    main = changed.named("platform-nginx-main-install").plain["stdin"]
    directives = [line.strip() for line in main.splitlines() if not line.strip().startswith("#")]
    assert not [line for line in directives if line.startswith("keepalive_min_timeout")]
    assert "reloaded_at + 0 + 5" in drain_bound(changed)


def test_staging_keeps_its_previous_release_as_long_as_the_platform_s_nginx_says(staging):
    assert "reloaded_at + 45 + 5" in drain_bound(staging)


def test_a_platform_without_the_keep_idle_output_is_taken_as_keeping_nothing():
    outputs = prod_outputs_for_staging()
    del outputs["nginx_keep_idle_seconds"]  # a prod stack updated before it existed
    run = run_program("staging", stack_outputs={"eduaiia/aiia/prod": outputs})
    assert "reloaded_at + 0 + 5" in drain_bound(run)


def test_a_new_release_adds_resources_of_its_own_and_keeps_the_switch(prod):
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:releases"]["prod"]["release"] = "2026.11.27-1"
    next_release = run_program("prod", config=config)
    names_before = {r.name for r in prod.resources}
    names_after = {r.name for r in next_release.resources}
    assert "app-prod-app-2026-11-27-1" in names_after - names_before
    assert "app-prod-app-2026-11-26-1" in names_before - names_after
    assert "app-prod-upstream" in names_before & names_after
    assert release_container(next_release, "aiia-app-prod-2026-11-27-1-")


def test_a_bad_config_stops_the_program_before_any_resource(capsys):
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["tls"]["mode"] = "bogus"
    with pytest.raises(Exception, match="aiia:platform.tls.mode='bogus' is not a TLS mode"):
        run_program("prod", config=config)


def test_staging_with_a_prefix_other_than_prods_fails_clearly():
    config = copy.deepcopy(stack_config("staging"))
    config["aiia:prefix"] = "other"
    with pytest.raises(Exception, match="differs from the platform stack's prefix"):
        run_program("staging", config=config,
                    stack_outputs={"eduaiia/aiia/prod": prod_outputs_for_staging()})


def test_the_watch_follows_the_switch_and_knows_how_to_switch_back(local):
    by_urn = {r.urn: r for r in local.resources}
    watch = local.named("app-prod-watch")
    assert "app-prod-upstream-install" in {by_urn[d].name for d in watch.dependencies}
    script = watch.plain["create"]
    assert "for 30 s" in script  # the default watch window
    assert "previous-upstream" in script
    assert "nginx -c /etc/aiia-nginx/nginx.conf -t" in script
    assert "pulumi config set --path 'aiia:releases.prod.release'" in script


def test_the_migration_snapshots_the_serving_upstream_first(local):
    script = local.named("app-prod-migrate-local-1").plain["create"]
    assert script.index("begin_attempt\n") < script.index("previous-upstream")
    assert script.index("previous-upstream") < script.index("manage.py")


def test_the_dashboard_package_archive_is_reproducible():
    # Its digest triggers a reinstall and restart on the VPS: it must change only with the
    # package's content, not with the time it was built.
    import time

    from components.platform.dashboard import package_archive

    first = package_archive()
    time.sleep(1.1)
    assert package_archive() == first


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


def generation_after(change) -> str:
    config = copy.deepcopy(stack_config("prod"))
    secrets = None
    if change:
        secrets = change(config)
    run = run_program("prod", config=config, secrets=secrets)
    name = release_container(run, "aiia-app-prod-2026-11-26-1-").plain["name"]
    # The watch (and its drain before the old generation is removed) runs per generation.
    assert f"({name})" in run.named("app-prod-watch").plain["create"]
    return name


def test_a_config_change_to_a_release_makes_a_new_generation_beside_the_old():
    from tests.harness.program import made_up_secrets

    def rotate(key):
        def change(config):
            secrets = made_up_secrets(config)
            secrets[key] = "rotated"
            return secrets
        return change

    def grace(config):
        config["aiia:releases"]["prod"]["stop_grace_seconds"] = 25

    def memory(config):
        config["aiia:platform"]["environments"]["prod"]["app_memory_mb"] = 76

    base = generation_after(None)
    assert generation_after(None) == base  # stable: the same config, the same container
    for change in (rotate("aiia:prod_secret_key"), rotate("aiia:prod_db_password"),
                   rotate("aiia:prod_redis_password"), grace):
        assert generation_after(change) != base
    # Memory is updated in place (docker update): the same container serves on.
    assert generation_after(memory) == base


def test_the_release_container_is_created_before_the_old_one_is_deleted(prod):
    app = prod.named("app-prod-app-2026-11-26-1")
    assert app.delete_before_replace_defined and not app.delete_before_replace


def test_the_switch_refuses_a_container_that_is_not_healthy_now(prod):
    script = prod.named("app-prod-upstream-install").plain["create"]
    name = release_container(prod, "aiia-app-prod-2026-11-26-1-").plain["name"]
    precondition = script.index("refusing to switch prod")
    assert f"candidate={name}" in script
    assert precondition < script.index('mv -f "$temporary"')


def test_every_nginx_change_is_made_under_one_lock(prod):
    scripts = [r.plain["create"] for r in prod.resources
               if r.name.startswith("platform-nginx-") and r.name.endswith("-install")]
    scripts.append(prod.named("app-prod-upstream-install").plain["create"])
    for script in scripts:
        if "only_if_absent" in script or "already present" in script:
            continue
        assert "flock 9" in script and "/srv/aiia/state/nginx.lock" in script


# --- least privilege ------------------------------------------------------------------------

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


def test_postgres_runs_as_its_own_user_from_the_start(prod):
    # Its entrypoint then needs no capability to chown PGDATA and switch users.
    assert release_container(prod, "aiia-postgres").plain["user"] == "999:999"


def test_an_unprivileged_local_stack_gives_root_back_its_file_access(monkeypatch):
    # A developer's `pulumi up -s local` prepares the host directories as the developer:
    # the containers whose root writes there get DAC_OVERRIDE back, and only they.
    monkeypatch.setattr("os.getuid", lambda: 1000)
    monkeypatch.setattr("os.getgid", lambda: 1000)
    run = run_program("local")
    with_override = {service_of(container) for container in run.containers().values()
                     if "DAC_OVERRIDE" in container.plain["capabilities"].get("adds", [])}
    assert with_override == {"nginx", "dashboard-collector"}


def test_release_jobs_run_without_capabilities_on_a_read_only_root(prod):
    script = prod.named("app-prod-migrate-2026-11-26-1").plain["create"]
    assert "--cap-drop ALL" in script and "no-new-privileges:true" in script
    assert "--read-only --tmpfs /tmp:size=8m,mode=1777" in script


def test_the_app_and_its_jobs_run_as_the_configured_user_whatever_the_image_says(prod):
    assert release_container(prod, "aiia-app-prod-").plain["user"] == "10001:10001"
    script = prod.named("app-prod-migrate-2026-11-26-1").plain["create"]
    assert "--user 10001:10001" in script
    # The release owns its writable directories for that user; the platform no longer does.
    assert "chown -R 10001:10001" in script
    platform = prod.named("platform-directories").plain["create"]

    def names(text: str, path: str) -> bool:  # the path itself, not one below it
        return re.search(rf"{re.escape(path)}(?![\w/.-])", text) is not None

    assert names(platform, "/srv/aiia/www/prod")
    for directory in ("/srv/aiia/www/prod/static", "/srv/aiia/logs/prod"):
        assert names(script, directory)
        assert not names(platform, directory)


def test_another_app_user_is_a_new_generation_that_runs_as_it():
    def other_user(config):
        config["aiia:releases"]["prod"]["run_as"] = "2000:2000"

    assert generation_after(other_user) != generation_after(None)
    config = copy.deepcopy(stack_config("prod"))
    other_user(config)
    run = run_program("prod", config=config)
    assert release_container(run, "aiia-app-prod-").plain["user"] == "2000:2000"
    script = run.named("app-prod-migrate-2026-11-26-1").plain["create"]
    assert "--user 2000:2000" in script and "chown -R 2000:2000" in script


SECRET_VALUES = {"secret_key": "test-prod-django-secret-key", "database_password": "test-prod-db",
                 "redis_password": "test-prod-redis"}


def test_the_app_s_secrets_are_files_for_its_user_alone_not_variables(prod):
    app = release_container(prod, "aiia-app-prod-2026-11-26-1-").plain
    env = dict(item.split("=", 1) for item in app["envs"])
    assert {key: env[key] for key in env if key.endswith("_FILE") and key != "LOG_FILE"} == {
        "SECRET_KEY_FILE": "/run/secrets/aiia/secret_key",
        "DATABASE_PASSWORD_FILE": "/run/secrets/aiia/database_password",
        "REDIS_PASSWORD_FILE": "/run/secrets/aiia/redis_password"}
    assert not {"SECRET_KEY", "DATABASE_PASSWORD", "REDIS_PASSWORD"} & set(env)
    assert env["REDIS_URL"] == "redis://prod@aiia-redis:6379/0"
    for value in SECRET_VALUES.values():
        assert value not in repr(app["envs"])
    assert {"host_path": "/srv/aiia/secrets/prod", "container_path": "/run/secrets/aiia",
            "read_only": True} in app["volumes"]
    commands = {r.name: r for r in prod.resources if r.type == "command:remote:Command"}
    for file, value in SECRET_VALUES.items():
        install = commands[f"app-prod-secret-{file}-install"]
        assert is_secret(install.inputs["stdin"]) and install.plain["stdin"] == value
        assert "chmod 0400" in install.plain["create"]
        assert "10001:10001" in install.plain["create"]
        assert f"/srv/aiia/secrets/prod/{file}" in install.plain["create"]
    # The jobs read the same files; the env file they get holds no secret.
    migrate = commands["app-prod-migrate-2026-11-26-1"]
    assert "-v /srv/aiia/secrets/prod:/run/secrets/aiia:ro" in migrate.plain["create"]
    for value in SECRET_VALUES.values():
        assert value not in migrate.plain["stdin"]


def test_a_rotated_secret_file_is_a_new_generation():
    from tests.harness.program import made_up_secrets

    def rotate(config):
        secrets = made_up_secrets(config)
        secrets["aiia:prod_secret_key"] = "rotated"
        return secrets

    assert generation_after(rotate) != generation_after(None)


def test_secrets_as_variables_for_an_image_that_cannot_read_files():
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:releases"]["prod"]["secrets_as"] = "variables"
    run = run_program("prod", config=config)
    env = dict(item.split("=", 1) for item in
               release_container(run, "aiia-app-prod-2026-11-26-1-").plain["envs"])
    assert env["SECRET_KEY"] == "test-prod-django-secret-key"
    assert env["REDIS_URL"] == "redis://prod:test-prod-redis@aiia-redis:6379/0"
    assert not [key for key in env if key.endswith("_FILE") and key != "LOG_FILE"]
    assert not [r.name for r in run.resources if "-secret-" in r.name]


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


def test_a_change_to_the_house_rules_is_a_new_generation(monkeypatch):
    import components.release.app_release

    base = generation_after(None)
    rules = components.release.app_release.house_rules()
    monkeypatch.setattr(components.release.app_release, "house_rules",
                        lambda: {**rules, "cap_drop": ["NET_RAW"]})
    assert generation_after(None) != base


def test_redis_scripting_is_granted_per_environment_only_when_set():
    from tests.harness.program import host_files

    def acl_lines(run):
        config = next(content for path, content in host_files(run).items()
                      if path.endswith("/redis/redis.conf"))
        return {line.split()[1]: line for line in config.splitlines()
                if line.startswith("user ") and not line.startswith("user default")}

    default = acl_lines(run_program("prod"))
    assert all(line.endswith(" -@scripting") for line in default.values()), default
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:platform"]["environments"]["staging"]["redis_scripting"] = True
    granted = acl_lines(run_program("prod", config=config))
    assert granted["prod"].endswith(" -@scripting")
    assert not granted["staging"].endswith(" -@scripting")


def test_role_passwords_go_to_postgres_as_scram_verifiers():
    from components.platform.postgres import scram_verifier

    verifier = scram_verifier("aiia_prod", "s3cret-password")
    assert verifier.startswith("SCRAM-SHA-256$4096:") and "s3cret" not in verifier
    assert scram_verifier("aiia_prod", "s3cret-password") == verifier  # a stable preview
    assert scram_verifier("aiia_staging", "s3cret-password") != verifier  # salt per role
    # Outside printable ASCII PostgreSQL's SASLprep may change it: it hashes it itself.
    assert scram_verifier("aiia_prod", "pässwörd") == "pässwörd"


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


def test_a_domain_not_issued_is_a_warning_of_pulumi_up_not_a_failure(monkeypatch):
    import pulumi

    from components.platform.certbot import warn_about_failures

    warnings = []
    monkeypatch.setattr(pulumi.log, "warn", warnings.append)
    warn_about_failures(
        "2026-12-03T06:00:00Z certbot: prod.example.com: renewing if due\n"
        "2026-12-03T06:00:09Z certbot: status.example.com: NOT ISSUED; nginx keeps serving "
        "the certificate it has\n"
        "2026-12-03T06:00:10Z certbot: staging.example.com: RENEWAL FAILED; its current "
        "certificate keeps serving\n"
        "2026-12-03T06:00:11Z certbot: failed: status.example.com staging.example.com\n")
    assert warnings == ["status.example.com: NOT ISSUED; nginx keeps serving the certificate "
                        "it has",
                        "staging.example.com: RENEWAL FAILED; its current certificate keeps "
                        "serving"]
