"""End-to-end fixtures: the `local` stack replayed onto a real Docker engine.

Each module that uses `local_stack` gets a platform of its own (tests/harness/local_stack.py)
removed afterwards, even when a test fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.engine import DockerEngine
from tests.harness.local_stack import (
    DASHBOARD_IMAGE,
    LocalStack,
    build_images,
    release_tags,
    remove_everything,
    start_local_stack,
)


@pytest.fixture(scope="session")
def engine() -> DockerEngine:
    engine = DockerEngine()
    try:
        engine.request("GET", "/version")
    except OSError as error:
        pytest.fail(f"no Docker engine ({error}); tests/run.sh starts one "
                    "(tests/engine/ensure-dockerd.sh)")
    return engine


@pytest.fixture(scope="session")
def built_images(engine: DockerEngine) -> None:
    build_images()


@pytest.fixture(scope="session")
def app_images(engine: DockerEngine, built_images: None) -> dict[str, str]:
    return release_tags(engine)


@pytest.fixture(scope="session")
def dashboard_image(built_images: None) -> str:
    return DASHBOARD_IMAGE


@pytest.fixture(scope="module")
def local_stack(engine, app_images, dashboard_image) -> Iterator[LocalStack]:
    stack = start_local_stack(engine, app_images)
    try:
        yield stack
    finally:
        remove_everything(engine, stack.prefix, stack.root)
