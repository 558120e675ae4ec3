"""components/settings/postgres.py: a server image of another major than the stack's data
directory is refused at preview, naming the key and the fix; a stack made before the major
was recorded is a stack on 15."""

import pytest

from components.settings.postgres import data_directory, image_major
from tests.harness.settings import parse, problems


def with_postgres(image: str | None = None, **postgres):
    def change(raw):
        platform = raw["platform"]
        if image is not None:
            platform.setdefault("images", {})["postgres"] = image
        platform["postgres"] = {**platform.get("postgres", {}), **postgres}
        if postgres.get("data_major", "") is None:
            del platform["postgres"]["data_major"]
    return change


def test_a_new_stack_runs_17_on_a_17_data_directory():
    platform = parse("prod").platform
    assert image_major(platform.images.postgres) == 17
    assert platform.postgres.data_major == 17
    local = parse("local").platform
    assert (image_major(local.images.postgres), local.postgres.data_major) == (17, 17)


def test_another_major_over_the_data_directory_is_refused_with_the_upgrade_command():
    message = problems("prod", with_postgres("postgres:18.1-trixie", data_major=17))
    assert ("aiia:platform.images.postgres='postgres:18.1-trixie' is PostgreSQL 18, but this "
            "stack's data directory is PostgreSQL 17 (aiia:platform.postgres.data_major=17)"
            in message)
    assert "`make pg-upgrade STACK=prod TO=postgres:18.1-trixie`" in message
    assert "set aiia:platform.images.postgres back to a PostgreSQL 17 image" in message


def test_a_stack_without_a_recorded_major_is_on_15_and_never_silently_given_17():
    """A stack file from before data_major existed: its data directory is 15 (the program
    shipped no other). The new default image (17) is refused for it, not started on it."""
    unset = with_postgres(data_major=None)

    def default_image(raw):
        unset(raw)
        raw["platform"]["images"].pop("postgres")

    message = problems("prod", default_image)
    assert "is PostgreSQL 17, but this stack's data directory is PostgreSQL 15" in message
    assert "data_major is unset: a stack made before the key existed" in message
    assert "`make pg-upgrade STACK=prod TO=postgres:17.12-trixie`" in message
    # ... and the same stack that keeps its 15 pin previews as before.
    settings = parse("prod", with_postgres("postgres:15.20-bookworm", data_major=None))
    assert settings.platform.postgres.data_major is None


def test_going_back_to_an_older_major_is_refused_without_an_upgrade_command():
    message = problems("prod", with_postgres("postgres:15.20-bookworm", data_major=17))
    assert "is PostgreSQL 15, but this stack's data directory is PostgreSQL 17" in message
    assert "never moves to an older major" in message
    assert "pg-upgrade" not in message


def test_a_digest_without_a_tag_cannot_be_checked_and_is_refused():
    message = problems("prod", with_postgres("postgres@sha256:" + "c" * 64, data_major=17))
    assert "has no version tag, so its PostgreSQL major cannot be checked" in message


@pytest.mark.parametrize("value", [3, 170])
def test_a_data_major_that_is_no_major_is_refused(value):
    message = problems("prod", with_postgres(data_major=value))
    assert f"aiia:platform.postgres.data_major={value} is not a PostgreSQL major" in message


@pytest.mark.parametrize(("reference", "major"), [
    ("postgres:17.12-trixie", 17), ("postgres:15.20-bookworm", 15),
    ("postgres:17.12-trixie@sha256:" + "d" * 64, 17),
    ("registry.example.com:5000/postgres:18.1", 18),
    ("postgres@sha256:" + "d" * 64, None), ("postgres:latest", None),
])
def test_image_major(reference, major):
    assert image_major(reference) == major


def test_each_major_has_its_own_folder_and_15_keeps_its_old_one():
    assert data_directory(15) == "pgdata"
    assert data_directory(17) == "pgdata-17"
