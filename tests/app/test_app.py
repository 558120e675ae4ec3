"""The reference app, run for real: uvicorn + Django against PostgreSQL and Redis."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.app.app_harness import (
    APP_DIR,
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_TEXT,
    UVICORN_FLAGS,
    AppServer,
    HarnessError,
    Postgres,
    Redis,
    WebSocket,
    WebSocketRejected,
    app_environment,
    free_port,
    manage,
    rss_kib,
)

RELEASE = "2026.11.26-1"


def test_health_is_ok_when_database_and_cache_answer(app_server: AppServer) -> None:
    response = app_server.request("GET", "/healthz/")

    assert response.status == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok"},
        "release": RELEASE,
        "environment": "prod",
    }
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"


def test_health_answers_whatever_the_host_header(app_server: AppServer) -> None:
    # The container health check calls http://127.0.0.1:$PORT/healthz/.
    for host in ("127.0.0.1", f"127.0.0.1:{app_server.port}", "10.0.0.5:8000"):
        assert app_server.request("GET", "/healthz/", host=host).status == 200


def test_other_paths_refuse_hosts_outside_allowed_hosts(app_server: AppServer) -> None:
    assert app_server.request("GET", "/", host="evil.example").status == 400


def test_index_names_release_and_environment(app_server: AppServer) -> None:
    response = app_server.request("GET", "/")

    assert response.status == 200
    assert response.json() == {"release": RELEASE, "environment": "prod"}


@pytest.mark.parametrize(
    ("method", "path", "host", "status"),
    [
        ("GET", "/", None, 200),
        ("GET", "/healthz/", None, 200),
        ("GET", "/api/notes/", None, 200),
        ("GET", "/no-such-page/", None, 404),
        ("DELETE", "/api/notes/", None, 405),
        ("GET", "/", "evil.example", 400),
    ],
)
def test_every_response_carries_the_release(
    app_server: AppServer, method: str, path: str, host: str | None, status: int
) -> None:
    response = app_server.request(method, path, host=host or "prod.aiia.test")

    assert response.status == status
    assert response.headers["x-release"] == RELEASE


def test_migrations_create_the_note_table(app_server: AppServer, postgres: Postgres) -> None:
    columns = postgres.psql(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'notes_note' ORDER BY column_name",
        database=postgres.database,
    )
    assert columns.split() == ["created_at", "id", "text"]
    applied = postgres.psql(
        "SELECT name FROM django_migrations WHERE app = 'notes'", database=postgres.database
    )
    assert applied == "0001_initial"


def test_models_and_migrations_agree(app_python: Path, environment: dict[str, str]) -> None:
    result = manage(app_python, environment, "makemigrations", "--check", "--dry-run")

    assert result.returncode == 0, result.stdout + result.stderr


def test_notes_are_created_and_listed(app_server: AppServer) -> None:
    created = app_server.request("POST", "/api/notes/", body={"text": "first release"})

    assert created.status == 201, created.body
    note = created.json()
    assert note["text"] == "first release"
    listed = app_server.request("GET", "/api/notes/").json()
    assert listed["notes"][0] == note


@pytest.mark.parametrize(
    "body", [b"not json", {"text": ""}, {"text": 5}, ["text"], {"text": "x" * 501}]
)
def test_notes_refuse_invalid_input(app_server: AppServer, body: object) -> None:
    response = app_server.request("POST", "/api/notes/", body=body)

    assert response.status == 400
    assert "error" in response.json()


def test_websocket_echoes_text_and_binary_and_closes_cleanly(app_server: AppServer) -> None:
    websocket = WebSocket(app_server.port, "/ws/echo/")
    websocket.send("hello")
    assert websocket.receive() == (OPCODE_TEXT, b"hello")
    websocket.send("é" * 40_000)
    assert websocket.receive() == (OPCODE_TEXT, ("é" * 40_000).encode())
    websocket.send(b"\x00\x01\xff")
    assert websocket.receive() == (OPCODE_BINARY, b"\x00\x01\xff")

    assert websocket.close(1000) == 1000


def test_websocket_messages_over_1_mib_are_refused(app_server: AppServer) -> None:
    websocket = WebSocket(app_server.port, "/ws/echo/")
    websocket.send(b"x" * (1024 * 1024 + 1))

    opcode, payload = websocket.receive()
    assert opcode == OPCODE_CLOSE
    assert int.from_bytes(payload[:2], "big") == 1009  # message too big


def test_websocket_paths_other_than_echo_are_refused(app_server: AppServer) -> None:
    with pytest.raises(WebSocketRejected) as rejected:
        WebSocket(app_server.port, "/ws/other/")

    assert rejected.value.status == 403
    # The server is still fine afterwards.
    assert app_server.request("GET", "/healthz/").status == 200


def test_one_log_line_per_request_on_stdout_and_in_log_file(
    app_server: AppServer, django_log: Path
) -> None:
    app_server.request("GET", "/api/notes/?page=log-check&token=s3cr3t-in-query")
    time.sleep(0.2)

    # The path, never the query string (review M5: it carries tokens and personal data).
    line = "GET /api/notes/ 200"
    for log in (app_server.log(), django_log.read_text()):
        assert line in log
        assert "s3cr3t-in-query" not in log and "log-check" not in log


def test_an_unwritable_log_file_falls_back_to_stdout(
    app_python: Path, environment: dict[str, str], tmp_path: Path
) -> None:
    # The deploy's migrate job gets the release's LOG_FILE but not its log volume.
    log_file = tmp_path / "no-such-directory" / "django.log"
    result = manage(app_python, {**environment, "LOG_FILE": str(log_file)}, "migrate", "--noinput")

    assert result.returncode == 0, result.stderr
    assert f"LOG_FILE={log_file} is not writable" in result.stderr
    assert not log_file.exists()


def test_healthcheck_script_follows_the_health_endpoint(
    app_server: AppServer, app_python: Path
) -> None:
    def healthcheck(port: int) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(app_python), str(APP_DIR / "healthcheck.py")],
            env={"PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=10,
        )

    assert healthcheck(app_server.port).returncode == 0
    refused = healthcheck(free_port())
    assert refused.returncode == 1
    assert "healthz" in refused.stderr


def test_collectstatic_writes_the_static_file(
    app_python: Path, environment: dict[str, str], tmp_path: Path
) -> None:
    static_root = tmp_path / "static"
    result = manage(
        app_python, {**environment, "STATIC_ROOT": str(static_root)}, "collectstatic", "--noinput"
    )

    assert result.returncode == 0, result.stderr
    collected = static_root / "notes" / "hello.txt"
    assert collected.read_text() == (APP_DIR / "notes/static/notes/hello.txt").read_text()


@pytest.mark.parametrize("missing", ["SECRET_KEY", "DATABASE_HOST", "REDIS_URL", "RELEASE"])
def test_a_missing_variable_is_named_by_manage_and_by_the_server(
    app_python: Path, environment: dict[str, str], missing: str, tmp_path: Path
) -> None:
    broken = {name: value for name, value in environment.items() if name != missing}

    migrate = manage(app_python, broken, "migrate", "--noinput")
    assert migrate.returncode != 0
    assert f"missing required environment variable(s): {missing}" in migrate.stderr
    assert "Traceback" not in migrate.stderr

    server = AppServer(app_python, broken, tmp_path / "uvicorn.log")
    with pytest.raises(HarnessError, match="exited"):
        server.start()
    assert server.process.wait(10) != 0
    assert f"missing required environment variable(s): {missing}" in server.log()


def secrets_as_files(environment: dict[str, str], redis: Redis, directory: Path) -> dict:
    """The environment as the platform sets it by default: every secret in a file of its
    own (0400), named by <NAME>_FILE; the Redis URL without its password."""
    directory.mkdir()
    values = {"SECRET_KEY": environment["SECRET_KEY"],
              "DATABASE_PASSWORD": environment["DATABASE_PASSWORD"],
              "REDIS_PASSWORD": redis.password}
    files = {}
    for name, value in values.items():
        path = directory / name.lower()
        path.write_text(value + "\n")
        path.chmod(0o400)
        files[f"{name}_FILE"] = str(path)
    plain = {key: value for key, value in environment.items() if key not in values}
    return {**plain, **files, "REDIS_URL": f"redis://{redis.user}@127.0.0.1:{redis.port}/0"}


def test_secrets_from_files_serve_and_pass_the_health_check(
    app_python: Path, environment: dict[str, str], redis: Redis, migrated: None,
    tmp_path: Path
) -> None:
    from_files = secrets_as_files(environment, redis, tmp_path / "secrets")
    assert not {"SECRET_KEY", "DATABASE_PASSWORD"} & set(from_files)
    server = AppServer(app_python, from_files, tmp_path / "uvicorn.log").start()
    try:
        response = server.request("GET", "/healthz/")
    finally:
        server.stop()
    assert response.status == 200, response.body
    assert response.json()["checks"] == {"database": "ok", "cache": "ok"}


@pytest.mark.parametrize(("change", "expected"), [
    (lambda env, d: {**env, "SECRET_KEY": "also-set"},
     "SECRET_KEY and SECRET_KEY_FILE are both set"),
    (lambda env, d: {**env, "DATABASE_PASSWORD_FILE": str(d / "absent")},
     "DATABASE_PASSWORD_FILE='{d}/absent' cannot be read (No such file or directory)"),
])
def test_a_secret_file_problem_is_named(
    app_python: Path, environment: dict[str, str], redis: Redis, tmp_path: Path, change,
    expected: str
) -> None:
    directory = tmp_path / "secrets"
    broken = change(secrets_as_files(environment, redis, directory), directory)
    result = manage(app_python, broken, "check")
    assert result.returncode != 0
    assert expected.format(d=directory) in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_value_is_named(app_python: Path, environment: dict[str, str]) -> None:
    result = manage(app_python, {**environment, "DATABASE_PORT": "pgbouncer"}, "check")

    assert result.returncode != 0
    assert "DATABASE_PORT='pgbouncer' is not an integer" in result.stderr


def test_cache_prefix_outside_the_redis_acl_fails_the_cache_check(
    app_python: Path, environment: dict[str, str], migrated: None, tmp_path: Path
) -> None:
    # The ACL user "prod" may only touch prod:* keys: staging's prefix must be refused.
    staging_prefix = {**environment, "CACHE_KEY_PREFIX": "staging"}
    server = AppServer(app_python, staging_prefix, tmp_path / "uvicorn.log").start()
    try:
        response = server.request("GET", "/healthz/")
    finally:
        server.stop()

    assert response.status == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok"
    assert "NoPermission" in checks["cache"]


def test_hung_database_and_cache_fail_the_health_check_within_three_seconds(
    app_python: Path, postgres: Postgres, tmp_path: Path
) -> None:
    # Listeners that accept TCP connections and never answer: a hung PgBouncer and Redis.
    with socket.socket() as silent_db, socket.socket() as silent_cache:
        for silent in (silent_db, silent_cache):
            silent.bind(("127.0.0.1", 0))
            silent.listen(64)
        environment = app_environment(
            database_host="127.0.0.1",
            database_port=silent_db.getsockname()[1],
            postgres=postgres,
            redis_url=f"redis://prod:pw@127.0.0.1:{silent_cache.getsockname()[1]}/0",
        )
        server = AppServer(app_python, environment, tmp_path / "uvicorn.log").start()
        try:
            response = server.request("GET", "/healthz/")
            index = server.request("GET", "/")
        finally:
            server.stop()

    assert response.status == 503
    assert response.seconds < 3
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"] != "ok"
    assert body["checks"]["cache"] != "ok"
    assert index.status == 200


def test_memory_stays_small_under_requests(app_server: AppServer) -> None:
    app_server.request("GET", "/healthz/")
    idle = rss_kib(app_server.process.pid)["VmRSS"]
    for index in range(300):
        app_server.request("GET", "/")
        app_server.request("GET", "/api/notes/")
        if index % 10 == 0:
            app_server.request("GET", "/healthz/")
            app_server.request("POST", "/api/notes/", body={"text": f"note {index}"})
    websocket = WebSocket(app_server.port, "/ws/echo/")
    for _ in range(50):
        websocket.send("x" * 1000)
        websocket.receive()
    websocket.close()

    memory = rss_kib(app_server.process.pid)
    print(
        f"\napp RSS: idle {idle / 1024:.1f} MiB, after ~700 requests "
        f"{memory['VmRSS'] / 1024:.1f} MiB, peak {memory['VmHWM'] / 1024:.1f} MiB"
    )
    # The container limit is 80 MB: leave room for the page cache and a burst.
    assert memory["VmHWM"] < 70 * 1024


# The outage tests stop and restart the shared services: keep them last.


def test_health_fails_naming_the_cache_while_redis_is_down_then_recovers(
    app_server: AppServer, redis: Redis
) -> None:
    assert app_server.request("GET", "/healthz/").status == 200
    redis.stop()
    try:
        down = app_server.request("GET", "/healthz/")
        through_nginx = app_server.request("GET", "/healthz/",
                                           headers={"X-Forwarded-For": "203.0.113.7"})
    finally:
        redis.start()
    up = app_server.request("GET", "/healthz/")

    assert down.status == 503
    assert down.headers["cache-control"] == "no-store"
    body = down.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"] != "ok"
    assert "ConnectionError" in body["checks"]["cache"]
    # Review L4: the internet (through nginx) reads that the cache failed, not its address.
    assert through_nginx.status == 503
    assert through_nginx.json()["checks"] == {"database": "ok", "cache": "fail"}
    assert down.seconds < 3
    assert up.status == 200, up.body


def test_health_fails_naming_the_database_while_postgres_is_down_then_recovers(
    app_server: AppServer, postgres: Postgres
) -> None:
    assert app_server.request("GET", "/healthz/").status == 200
    postgres.stop()
    try:
        down = app_server.request("GET", "/healthz/")
        notes = app_server.request("GET", "/api/notes/")
    finally:
        postgres.start()
    up = app_server.request("GET", "/healthz/")

    assert down.status == 503
    body = down.json()
    assert body["checks"]["cache"] == "ok"
    assert "OperationalError" in body["checks"]["database"]
    assert down.seconds < 3
    assert notes.status == 500
    assert up.status == 200, up.body
    assert app_server.request("GET", "/api/notes/").status == 200


def test_the_image_runs_uvicorn_with_the_flags_tested_here() -> None:
    # The tests start uvicorn with UVICORN_FLAGS; the image must run the same server.
    dockerfile = (APP_DIR / "Dockerfile").read_text()
    cmd = json.loads(next(line for line in dockerfile.splitlines() if line.startswith("CMD "))[4:])
    assert cmd[:2] == ["sh", "-c"]
    command = shlex.split(cmd[2])
    assert command[:3] == ["exec", "uvicorn", "aiia.asgi:application"]
    assert command[3:7] == ["--host", "0.0.0.0", "--port", "${PORT:-8000}"]  # noqa: S104
    assert command[7:] == UVICORN_FLAGS


def test_sigterm_shuts_down_cleanly_through_lifespan(
    app_python: Path, environment: dict[str, str], migrated: None, tmp_path: Path
) -> None:
    server = AppServer(app_python, environment, tmp_path / "uvicorn.log").start()
    assert server.request("GET", "/healthz/").status == 200

    # uvicorn re-raises the signal once it has shut down gracefully.
    assert server.stop() == -signal.SIGTERM
    log = server.log()
    assert "Application startup complete" in log
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
