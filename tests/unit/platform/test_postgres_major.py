"""The PostgreSQL major under the mocks: a stack made on 15 is refused the new default image
before any resource is declared, and the switch of an upgrade (make pg-upgrade's commit)
replaces the server container alone, on the new major's folder, after the volume's check."""

import copy

import pulumi
import pytest

from tests.harness.program import run_program, stack_config
from tests.harness.replay import preview


def made_on_15(stack: str, image: str | None) -> dict:
    config = copy.deepcopy(stack_config(stack))
    platform = config["aiia:platform"]
    platform.get("postgres", {}).pop("data_major", None)
    images = platform.setdefault("images", {})
    if image is None:
        images.pop("postgres", None)
    else:
        images["postgres"] = image
    return config


@pytest.mark.parametrize("stack", ["prod", "local"])
def test_a_stack_made_on_15_is_refused_the_default_17_at_preview(stack):
    with pytest.raises(pulumi.RunError, match=(
            r"aiia:platform.images.postgres='postgres:17.12-trixie' is PostgreSQL 17, but this "
            r"stack's data directory is PostgreSQL 15 \(aiia:platform.postgres.data_major is "
            r"unset.*`make pg-upgrade STACK=" + stack + " TO=postgres:17.12-trixie`")):
        run_program(stack, config=made_on_15(stack, None))


def test_the_switch_replaces_the_server_alone_on_the_new_folder():
    before = run_program("prod", config=made_on_15("prod", "postgres:15.20-bookworm"))
    server = before.named("platform-postgres-container")
    assert "PGDATA=/var/lib/postgresql/data/pgdata" in server.inputs["envs"]
    switched = copy.deepcopy(stack_config("prod"))  # what make pg-upgrade commits: 17 and 17
    plans = preview(before, "prod", config=switched)
    steps = {name: plan.action for name, plan in plans.items() if plan.action != "same"}
    containers = {name for name in steps if name.endswith("-container")}
    assert containers == {"platform-postgres-container"}
    assert steps["platform-postgres-container"] == "replace"
    assert plans["platform-postgres-container"].changed == {"image", "envs"}
    assert "platform-postgres-data-major" in steps
    after = run_program("prod", config=switched).named("platform-postgres-container")
    assert "PGDATA=/var/lib/postgresql/data/pgdata-17" in after.inputs["envs"]
    # The server waits for the volume's check (which fails over another major's data).
    assert before.named("platform-postgres-data-major").urn in after.dependencies
