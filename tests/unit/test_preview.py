"""What `pulumi preview` shows for a change: which containers restart, and nothing else.

The plans come from the replay's model of the engine's step generator and of
pulumi-docker's diff (tests/harness/replay/steps.py: `preview`), run on two program runs under
the mocks. docs/runbooks.md ("What restarts a platform container") is written from these
cases and from the gaps measured by bench/restarts.py.
"""

import copy

import pytest

from components.settings.platform import ImageSettings
from tests.harness.local_stack import NEWER_PATCH_RELEASES
from tests.harness.program import run_program, stack_config
from tests.harness.replay import CONTAINER, preview


@pytest.fixture(scope="module", params=["prod", "local"])
def before(request):
    return request.param, run_program(request.param)


def changed(plans: dict) -> dict[str, str]:
    return {name: plan.action for name, plan in plans.items() if plan.action != "same"}


def with_image(stack: str, service: str, reference: str) -> dict:
    config = copy.deepcopy(stack_config(stack))
    config["aiia:platform"].setdefault("images", {})[service] = reference
    return config


def test_nothing_changed_previews_no_step(before):
    stack, run = before
    assert changed(preview(run, run_program(stack))) == {}


@pytest.mark.parametrize("service", sorted(NEWER_PATCH_RELEASES))
def test_an_image_bump_restarts_that_container_alone(before, service):
    stack, run = before
    newer = NEWER_PATCH_RELEASES[service]
    assert getattr(ImageSettings(), service) != newer
    plans = preview(run, run_program(stack, config=with_image(stack, service, newer)))
    # The pull (RemoteImage) is a step of its own, before the container's: the container is
    # stopped only once the new image is on the host.
    # The backup job runs pg_dump from PostgreSQL's own image, so its script follows a bump
    # (and the drill key's idempotent step, which names the image, runs again), as does PITR's
    # (pg_basebackup and the scratch server); the check that the data volume holds no other
    # major's cluster runs again with the new image.
    # A command's new script is an update locally and a replacement over SSH (pulumi-command).
    follows = {"platform-backup-script-install", "platform-backup-drill-key",
               "platform-pitr-script-install",
               "platform-postgres-data-major"} if service == "postgres" else set()
    steps = changed(plans)
    assert {name for name in list(steps) if name in follows and steps.pop(name)} == follows
    assert steps == {f"platform-{service}-image": "replace",
                     f"platform-{service}-container": "replace"}
    restart = plans[f"platform-{service}-container"]
    assert restart.delete_before_replace, "pulumi-docker stops the old container first"
    assert restart.changed == {"image"}


def test_a_memory_change_is_an_update_in_place(before):
    stack, run = before
    config = copy.deepcopy(stack_config(stack))
    config["aiia:platform"].setdefault("redis", {})["memory_mb"] = 40
    plans = preview(run, run_program(stack, config=config))
    containers = {name: action for name, action in changed(plans).items()
                  if run.named(name).type == CONTAINER}
    assert containers == {"platform-redis-container": "update"}
