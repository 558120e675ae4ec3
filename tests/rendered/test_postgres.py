"""A real PostgreSQL 15 runs the rendered postgresql.conf, pg_hba.conf and init-databases.sql."""

import signal

import pytest

from components.host.templates import render
from components.names import database_name, database_role
from components.platform.backup import scratch_database_prefix
from tests.rendered.conftest import (
    DATA_NETWORK_HERE,
    OVERRIDDEN_ON_COMMAND_LINE,
    POSTGRES_BIN,
    SERVICE_USER,
    as_service_user,
    chown_tree,
    free_port,
    rendered_hba,
    run,
    running,
    scratch_dir,
    startup,
    tcp_psql,
)

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
            # pg_hba.conf refuses it first; were it let through, CONNECT is not granted.
            assert "no pg_hba.conf entry" in refused.stderr
            granted = postgres.psql(f"SELECT has_database_privilege('{role}', "
                                    f"'{other_database}', 'CONNECT')").stdout.strip()
            assert granted == "f", f"{role} may CONNECT to {other_database}"


# --- who may connect from where (pg_hba.conf, review M7) -------------------------------------


def test_each_role_reaches_only_its_own_database_and_only_from_the_data_network(
        rendered, postgres_databases):
    port = postgres_databases.port
    data_network, elsewhere = DATA_NETWORK_HERE.split("/")[0], "127.0.0.2"
    envs = environments(rendered)
    scratch = scratch_database_prefix("aiia")
    asked = {}
    for source in (data_network, elsewhere):
        for _, _, role, _ in envs:
            for _, other_database, *_ in envs:
                asked[source, role, other_database] = startup(port, source, role, other_database)
        for database in ("postgres", *(database for _, database, *_ in envs)):
            asked[source, "postgres", database] = startup(port, source, "postgres", database)
        asked[source, f"{scratch}role", f"{scratch}prod"] = startup(
            port, source, f"{scratch}role", f"{scratch}prod")
        asked[source, f"{scratch}role", "aiia_prod"] = startup(
            port, source, f"{scratch}role", "aiia_prod")
    allowed = {key for key, answer in asked.items() if answer == "password"}
    # From the data network (PgBouncer, the backup jobs): each role to its own database, the
    # superuser anywhere, the drill's role to its scratch databases; nothing else.
    assert allowed == {
        *((data_network, role, database) for _, database, role, _ in envs),
        *((data_network, "postgres", database) for database in
          ("postgres", *(database for _, database, *_ in envs))),
        (data_network, f"{scratch}role", f"{scratch}prod"),
    }
    for key, answer in asked.items():
        if key not in allowed:
            assert answer.startswith(f'no pg_hba.conf entry for host "{key[0]}"'), (key, answer)
    # The container's own health check (pg_isready from its loopback, no role of its own)
    # still sees a server that accepts connections: an authentication refusal is an answer.
    assert run(["pg_isready", "-h", "127.0.0.1", "-p", str(port), "-U", "nobody"],
               check=False).returncode == 0


def test_a_running_server_takes_new_rules_by_a_reload_not_a_restart(rendered):
    """A server started before postgresql.conf named hba_file (an existing stack) reads
    $PGDATA/pg_hba.conf until its next start: the program's step copies the rules there and
    reloads, checked by pg_hba_file_rules first."""
    apply = [script for name, script in rendered["prod"].scripts.items()
             if name == "platform-postgres-client-rules-install"]
    assert apply, "no install step for pg_hba.conf"
    with scratch_dir("postgres-reload", owner=SERVICE_USER, mode=0o700) as directory:
        data, sockets = directory / "data", directory / "sockets"
        sockets.mkdir()
        mounted = directory / "pg_hba.conf"
        mounted.write_text(rendered_hba(rendered))
        chown_tree(directory, SERVICE_USER)
        run(as_service_user([str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                             "--auth-local=trust", "--auth-host=scram-sha-256",
                             "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]), timeout=60)
        port = free_port()
        command = as_service_user([str(POSTGRES_BIN / "postgres"), "-D", str(data),
                                   "-c", f"port={port}", "-c", "listen_addresses=127.0.0.1",
                                   "-c", f"unix_socket_directories={sockets}"])
        def accepting() -> bool:
            return run(["pg_isready", "-q", "-h", str(sockets), "-p", str(port)],
                       check=False).returncode == 0

        with running("postgres", command, port=port, log=directory / "postgres.log",
                     ready=accepting, stop_signal=signal.SIGINT) as server:
            env = {"PGHOST": str(sockets), "PGPORT": str(port)}
            envs = environments(rendered)
            (_, prod_database, _, _), (_, _, staging_role, _) = envs[0], envs[1]
            # initdb's rules: any role to any database over TCP from 127.0.0.1.
            assert startup(port, "127.0.0.1", staging_role, prod_database) == "password"
            inside_script = render("postgres/apply-hba-inside.sh.j2", mounted=str(mounted))
            result = run(as_service_user(["bash", "-euo", "pipefail", "-c", inside_script]),
                         env=env, check=False)
            assert result.returncode == 0, result.stderr
            assert "pg_hba.conf reloaded" in result.stdout
            assert startup(port, "127.0.0.1", staging_role, prod_database).startswith(
                "no pg_hba.conf entry")
            assert server.process.poll() is None  # the same postmaster: no restart
            assert (data / "pg_hba.conf").read_text() == mounted.read_text()
            # A bad file is refused and the rules in force stay.
            mounted.write_text(mounted.read_text() + "host all all 127.0.0.1/32 bogus\n")
            refused = run(as_service_user(["bash", "-euo", "pipefail", "-c", inside_script]),
                          env=env, check=False)
            assert refused.returncode != 0
            assert "has errors; the server keeps its rules" in refused.stderr
            assert "bogus" not in (data / "pg_hba.conf").read_text()


def test_the_reload_step_is_shellcheck_clean(rendered):
    from tests.rendered.test_shellcheck import shellcheck

    script = render("postgres/apply-hba-inside.sh.j2", mounted="/etc/postgresql/aiia/pg_hba.conf")
    assert shellcheck(script, "bash") == ""
