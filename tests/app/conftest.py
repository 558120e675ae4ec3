"""Fixtures that run the reference app (app/) for real against PostgreSQL and Redis."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.app_harness import (
    POSTGRES_BIN,
    AppServer,
    Postgres,
    Redis,
    app_environment,
    ensure_app_venv,
    manage,
)


def require_program(path: str, package: str) -> None:
    if shutil.which(path) is None:
        pytest.fail(f"{path} not found: install the Debian package {package}")


@pytest.fixture(scope="session")
def app_python() -> Path:
    """The python of a venv holding app/requirements.txt (cached between runs)."""
    return ensure_app_venv()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    require_program(str(POSTGRES_BIN / "initdb"), "postgresql-15")
    server = Postgres().create()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis() -> Iterator[Redis]:
    require_program("redis-server", "redis-server")
    server = Redis().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def environment(postgres: Postgres, redis: Redis) -> dict[str, str]:
    """The app's environment as the deploy sets it, pointing at the test services."""
    return app_environment(
        database_host="127.0.0.1",
        database_port=postgres.port,
        postgres=postgres,
        redis_url=redis.url,
    )


@pytest.fixture(scope="session")
def migrated(app_python: Path, environment: dict[str, str]) -> None:
    result = manage(app_python, environment, "migrate", "--noinput")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def django_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LOG_FILE of `app_server`."""
    return tmp_path_factory.mktemp("app-log") / "django.log"


@pytest.fixture(scope="module")
def app_server(
    app_python: Path, environment: dict[str, str], migrated: None, django_log: Path
) -> Iterator[AppServer]:
    server = AppServer(
        app_python, {**environment, "LOG_FILE": str(django_log)}, django_log.parent / "uvicorn.log"
    ).start()
    yield server
    server.stop()
