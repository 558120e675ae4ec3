"""A real PostgreSQL 15 runs the rendered postgresql.conf and the rendered init-databases.sql."""

import pytest

from components.names import database_name, database_role
from tests.rendered.conftest import OVERRIDDEN_ON_COMMAND_LINE, tcp_psql

pytestmark = pytest.mark.rendered


def test_rendered_config_is_accepted_and_its_tuning_is_in_effect(rendered, postgres):
    tuning = rendered["prod"].settings.platform.postgres
    expected = {
        "shared_buffers": f"{tuning.shared_buffers_mb}MB",
        "max_connections": str(tuning.max_connections),
        "work_mem": f"{tuning.work_mem_mb}MB",
        "effective_cache_size": f"{tuning.effective_cache_size_mb}MB",
        "maintenance_work_mem": f"{tuning.maintenance_work_mem_mb}MB",
    }
    assert expected["max_connections"] == "50"
    shown = {name: postgres.psql(f"SHOW {name}").stdout.strip() for name in expected}
    assert shown == expected

    # The values come from the rendered file (not from defaults or the command line) ...
    sources = dict(line.split("|", 1) for line in postgres.psql(
        "SELECT name, coalesce(sourcefile, source) FROM pg_settings").stdout.splitlines())
    assert {name: sources[name] for name in expected} == dict.fromkeys(
        expected, str(postgres.config_file))
    # ... and PostgreSQL found nothing in it to reject (the file's port and listen_addresses
    # lines are reported as "could not be applied" only because the command line overrides
    # them for the test).
    rejected = [line for line in postgres.psql(
        "SELECT name, sourceline || ': ' || error FROM pg_file_settings "
        "WHERE error IS NOT NULL").stdout.splitlines()
        if line.split("|", 1)[0] not in OVERRIDDEN_ON_COMMAND_LINE]
    assert rejected == []
    assert postgres.psql("SHOW password_encryption").stdout.strip() == "scram-sha-256"


def environments(rendered):
    """(environment, database, role, password) for every environment of the prod platform."""
    prod = rendered["prod"]
    prefix = prod.settings.prefix
    return [(env.name, database_name(prefix, env.name), database_role(prefix, env.name),
             prod.secrets[f"{env.name}_db_password"])
            for env in prod.settings.platform.environments]


def test_init_databases_is_idempotent_and_separates_environments(rendered, postgres):
    init_sql = rendered["prod"].command_stdin("platform-postgres-init-databases")
    for attempt in (1, 2):
        result = postgres.run_file(init_sql)
        assert result.returncode == 0, f"run {attempt} of init-databases.sql:\n{result.stderr}"

    envs = environments(rendered)
    assert {env for env, *_ in envs} == {"prod", "staging"}
    # The script holds the verifiers, never a password (a failing statement is logged).
    for *_, password in envs:
        assert password not in init_sql
    roles = postgres.psql("SELECT rolname || ' ' || left(rolpassword, 14) || ' ' || rolsuper "
                          "FROM pg_authid WHERE rolname LIKE 'aiia_%' ORDER BY 1").stdout
    # Passwords are stored as SCRAM verifiers; the roles are no superusers; no duplicates.
    assert roles.splitlines() == [f"{role} SCRAM-SHA-256$ false" for *_, role, _ in
                                      sorted(envs, key=lambda item: item[2])]
    owners = postgres.psql("SELECT datname || ' ' || pg_get_userbyid(datdba) FROM pg_database "
                           "WHERE datname LIKE 'aiia_%' ORDER BY 1").stdout.splitlines()
    assert owners == sorted(f"{database} {role}" for _, database, role, _ in envs)

    for env, database, role, password in envs:
        # Each role logs in to its own database over TCP with its password (SCRAM: pg_hba) ...
        own = tcp_psql(postgres.port, role, password, database,
                       "SELECT current_user || '@' || current_database()")
        assert own.stdout.strip() == f"{role}@{database}"
        wrong = tcp_psql(postgres.port, role, "not-the-password", database, "SELECT 1",
                         check=False)
        assert wrong.returncode != 0
        assert "password authentication failed" in wrong.stderr
        # ... and cannot connect to any other environment's database.
        for other_env, other_database, *_ in envs:
            if other_env == env:
                continue
            refused = tcp_psql(postgres.port, role, password, other_database, "SELECT 1",
                               check=False)
            assert refused.returncode != 0, f"{role} reached {other_database}"
            assert "permission denied for database" in refused.stderr
