"""components/release/app_release.py: a release under the mocks (its container, migration,
switch, watch and generations; the app's user and secrets)."""

import copy
import re

import pytest

from tests.harness.program import (
    is_secret,
    prod_outputs_for_staging,
    release_container,
    run_program,
    stack_config,
)
from tests.harness.replay import dependency_graph


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
    # The switch (a HostFile) depends on the container; its install command is registered
    # only once its parent is, which waits for that (tests/harness/replay/schedule.py).
    component = prod.named("app-prod-upstream")
    assert "app-prod-app-2026-11-26-1" in {by_urn[d].name for d in component.dependencies}
    switch = prod.named("app-prod-upstream-install")
    assert switch.parent == component.urn
    graph = dependency_graph([r for r in prod.resources if r.custom], prod.resources)
    assert app.urn in graph[switch.urn]
    create = switch.plain["create"]
    assert "nginx -c /etc/aiia-nginx/nginx.conf -t" in create
    assert "-s reload" in create
    assert "docker restart" not in create


def drain_bound(run) -> str:
    """The watch's "keep the previous release until the reload + N s + drain" line."""
    script = next(r for r in run.resources
                  if r.name in ("app-prod-watch", "app-staging-watch")).plain["create"]
    lines = [line for line in script.splitlines() if line.startswith("if [ $((reloaded_at")]
    assert len(lines) == 1, script
    return lines[0]


def test_a_reload_keeps_idle_connections_and_the_release_waits_for_them(prod):
    main = prod.named("platform-nginx-main-install").plain["stdin"]
    assert "\n    keepalive_timeout 10s;\n" in main
    assert "\n    keepalive_min_timeout 10s;\n" in main  # default: as long as keepalive_timeout
    # The previous release serves until the reload + those 10 s + the 5 s drain.
    assert "reloaded_at + 10 + 5" in drain_bound(prod)


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


def test_staging_with_a_prefix_other_than_prods_fails_clearly():
    config = copy.deepcopy(stack_config("staging"))
    config["aiia:prefix"] = "other"
    with pytest.raises(Exception, match="differs from the platform stack's prefix"):
        run_program("staging", config=config,
                    stack_outputs={"eduaiia/aiia/prod": prod_outputs_for_staging()})


def test_a_release_in_another_stack_may_not_run_as_the_dashboards_uid():
    # The platform's stack checks its own releases at preview; another stack's release is
    # checked against the dashboard_uid the platform exports (review M2).
    config = copy.deepcopy(stack_config("staging"))
    config["aiia:releases"]["staging"]["run_as"] = "10002:10002"
    with pytest.raises(Exception, match="shares 10002 with the dashboard's account"):
        run_program("staging", config=config,
                    stack_outputs={"eduaiia/aiia/prod": prod_outputs_for_staging()})


def test_a_release_runs_on_its_environments_network_and_an_older_platforms_shared_one():
    run = run_program("staging",
                      stack_outputs={"eduaiia/aiia/prod": prod_outputs_for_staging()})
    container = release_container(run, "aiia-app-staging-2026-11-26-1-").plain
    assert [n["name"] for n in container["networks_advanced"]] == ["aiia-staging"]
    # A platform stack of an earlier program (one network for everything) is still served.
    outputs = prod_outputs_for_staging()
    del outputs["environments"]["staging"]["network"]
    del outputs["dashboard_uid"]
    run = run_program("staging", stack_outputs={"eduaiia/aiia/prod": outputs})
    container = release_container(run, "aiia-app-staging-2026-11-26-1-").plain
    assert [n["name"] for n in container["networks_advanced"]] == ["aiia"]


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


def test_the_health_gate_waits_as_long_as_the_stack_says(prod):
    """releases.<env>.health_gate_seconds is the container's wait_timeout: 60 s by default,
    longer for an app that starts slowly, and the same container name either way."""
    import copy

    from tests.harness.program import release_container, run_program, stack_config

    default = release_container(prod, "aiia-app-prod-2026-11-26-1-")
    assert default.plain["wait"] is True and default.plain["wait_timeout"] == 60
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:releases"]["prod"]["health_gate_seconds"] = 180
    slow = release_container(run_program("prod", config=config), "aiia-app-prod-2026-11-26-1-")
    assert slow.plain["wait_timeout"] == 180
    assert slow.plain["name"] == default.plain["name"]


def test_the_task_limit_is_set_before_the_switch_and_changes_no_container(prod):
    """releases.<env>.pids_limit (review L7): the switch's precondition holds the web
    container and each process to it; a new value re-runs that step alone, with the same
    containers (it is not one of their inputs)."""
    import copy

    from tests.harness.program import release_container, run_program, stack_config

    switch = prod.named("app-prod-upstream-install").plain["create"]
    assert 'docker update --pids-limit 256 "$candidate"' in switch
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:releases"]["prod"]["pids_limit"] = 1024
    raised = run_program("prod", config=config)
    assert 'docker update --pids-limit 1024 "$candidate"' in \
        raised.named("app-prod-upstream-install").plain["create"]
    name = "aiia-app-prod-2026-11-26-1-"
    assert release_container(raised, name).plain["name"] == \
        release_container(prod, name).plain["name"]


def test_the_release_container_is_created_before_the_old_one_is_deleted(prod):
    app = prod.named("app-prod-app-2026-11-26-1")
    assert app.delete_before_replace_defined and not app.delete_before_replace


def test_the_switch_refuses_a_container_that_is_not_healthy_now(prod):
    script = prod.named("app-prod-upstream-install").plain["create"]
    name = release_container(prod, "aiia-app-prod-2026-11-26-1-").plain["name"]
    precondition = script.index("refusing to switch prod")
    assert f"candidate={name}" in script
    assert precondition < script.index('mv -f "$temporary"')


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


def test_a_change_to_the_house_rules_is_a_new_generation(monkeypatch):
    import components.release.app_release

    base = generation_after(None)
    rules = components.release.app_release.house_rules()
    monkeypatch.setattr(components.release.app_release, "house_rules",
                        lambda: {**rules, "cap_drop": ["NET_RAW"]})
    assert generation_after(None) != base


# --- migrations (issue #27 item 3) ------------------------------------------------------------


def env_files(migrate) -> tuple[dict[str, str], dict[str, str]]:
    """The app's and the migrations' environment files on the migrate command's stdin."""
    app, migrations = migrate.plain["stdin"].split("# --- migrate ---\n")
    return tuple(dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
                 for text in (app, migrations))


def test_migrations_reach_postgresql_directly_with_a_lock_and_a_statement_timeout(prod):
    migrate = prod.named("app-prod-migrate-2026-11-26-1")
    app, migrations = env_files(migrate)
    assert (app["DATABASE_HOST"], app["DATABASE_PORT"]) == ("aiia-pgbouncer", "6432")
    assert "PGOPTIONS" not in app
    # Transaction-mode PgBouncer cannot carry a session's settings; PostgreSQL can.
    assert (migrations["DATABASE_HOST"], migrations["DATABASE_PORT"]) == ("aiia-postgres",
                                                                          "5432")
    assert migrations["PGOPTIONS"] == "-c lock_timeout=5s -c statement_timeout=600s"
    assert {key: value for key, value in migrations.items()
            if not key.startswith(("DATABASE_HOST", "DATABASE_PORT", "PGOPTIONS"))} == {
        key: value for key, value in app.items()
        if not key.startswith(("DATABASE_HOST", "DATABASE_PORT"))}
    script = migrate.plain["create"]
    # On the data network for the migrations alone; collectstatic stays on the environment's.
    assert "docker network connect aiia " in script
    assert 'if ! grep -q "due to lock timeout"' in script
    assert "attempts=3\n" in script
    assert 'run collectstatic "$env_file"' in script


def test_the_migrations_limits_are_config_and_bounded():
    config = copy.deepcopy(stack_config("staging"))
    config["aiia:releases"]["staging"].update(migrate_lock_timeout_seconds=2,
                                              migrate_statement_timeout_seconds=3600,
                                              migrate_attempts=5)
    run = run_program("staging", config=config,
                      stack_outputs={"eduaiia/aiia/prod": prod_outputs_for_staging()})
    migrate = run.named("app-staging-migrate-2026-11-26-1")
    _, migrations = env_files(migrate)
    assert migrations["DATABASE_HOST"] == "aiia-postgres"
    assert migrations["PGOPTIONS"] == "-c lock_timeout=2s -c statement_timeout=3600s"
    # staging's release on its own network, its migrations joining prod's data network.
    assert "--network aiia-staging" in migrate.plain["create"]
    assert "docker network connect aiia " in migrate.plain["create"]
    assert "attempts=5\n" in migrate.plain["create"]
    from tests.harness.settings import problems_of

    def too_long(raw):
        raw["releases"]["prod"]["migrate_lock_timeout_seconds"] = 0

    assert "aiia:releases.prod.migrate_lock_timeout_seconds=0 must be between 1 and 60" in \
        problems_of(too_long)


def test_a_platform_that_exports_no_postgres_host_is_upped_first():
    outputs = prod_outputs_for_staging()
    del outputs["postgres_host"], outputs["postgres_port"]
    with pytest.raises(Exception, match="exports no postgres_host .* `pulumi up` the "
                                        "platform's stack first"):
        run_program("staging", stack_outputs={"eduaiia/aiia/prod": outputs})
