"""The app through PgBouncer in transaction mode, as it runs on the host."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.app_harness import AppServer, PgBouncer, Postgres, Response


@pytest.fixture(scope="module")
def pgbouncer(postgres: Postgres) -> Iterator[PgBouncer]:
    if shutil.which("pgbouncer") is None:
        pytest.skip("pgbouncer not found: install the Debian package pgbouncer")
    bouncer = PgBouncer(postgres).start()
    yield bouncer
    bouncer.destroy()


@pytest.fixture(scope="module")
def app_via_pgbouncer(
    app_python: Path,
    environment: dict[str, str],
    migrated: None,
    pgbouncer: PgBouncer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppServer]:
    log_path = tmp_path_factory.mktemp("app-pgbouncer") / "uvicorn.log"
    server = AppServer(
        app_python, {**environment, "DATABASE_PORT": str(pgbouncer.port)}, log_path
    ).start()
    yield server
    server.stop()


def health_until_ok(server: AppServer, seconds: float) -> Response:
    deadline = time.monotonic() + seconds
    while True:
        response = server.request("GET", "/healthz/")
        if response.status == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_health_and_notes_work_in_transaction_mode(app_via_pgbouncer: AppServer) -> None:
    assert app_via_pgbouncer.request("GET", "/healthz/").status == 200
    for index in range(5):
        created = app_via_pgbouncer.request("POST", "/api/notes/", body={"text": f"pooled {index}"})
        assert created.status == 201, created.body
    listed = app_via_pgbouncer.request("GET", "/api/notes/").json()
    assert [note["text"] for note in listed["notes"][:5]] == [
        f"pooled {i}" for i in range(4, -1, -1)
    ]


def test_a_dead_pgbouncer_fails_the_health_check_fast_then_recovers(
    app_via_pgbouncer: AppServer, pgbouncer: PgBouncer
) -> None:
    pgbouncer.stop()
    try:
        down = app_via_pgbouncer.request("GET", "/healthz/")
    finally:
        pgbouncer.start()

    assert down.status == 503
    assert down.json()["checks"]["database"] != "ok"
    assert down.json()["checks"]["cache"] == "ok"
    assert down.seconds < 3
    assert app_via_pgbouncer.request("GET", "/healthz/").status == 200


def test_postgres_down_behind_pgbouncer_fails_within_three_seconds_then_recovers(
    app_via_pgbouncer: AppServer, postgres: Postgres
) -> None:
    postgres.stop()
    try:
        down = app_via_pgbouncer.request("GET", "/healthz/")
    finally:
        postgres.start()

    assert down.status == 503
    assert down.json()["checks"]["database"] != "ok"
    assert down.seconds < 3
    # PgBouncer itself waits server_login_retry before it tries the server again.
    assert health_until_ok(app_via_pgbouncer, 10).status == 200
