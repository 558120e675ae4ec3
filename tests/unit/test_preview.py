"""What `pulumi preview` shows for a change, and what the `pulumi up` after it does.

The plans come from the replay's model of the engine's preview and of the providers' diffs
(tests/harness/replay/preview.py: `preview`, the program run as a dry run in which the
outputs of what is created or replaced are unknown; `update_steps`, the `up` after it), run
on the program under the mocks. docs/runbooks.md ("What restarts a platform container") is
written from these cases and from the gaps measured by bench/restarts.py.
"""

import copy

import pytest

from components.settings.platform import ImageSettings
from tests.harness.local_stack import NEWER_PATCH_RELEASES
from tests.harness.program import ProgramRun, run_program, stack_config
from tests.harness.replay import CONTAINER, preview, update_steps

# The platform services a release waits for: `ready` (components/platform/platform.py) is
# derived from their containers' ids, and the ids of the commands that check them.
RELEASE_WAITS_FOR = {"pgbouncer", "redis", "nginx"}


@pytest.fixture(scope="module", params=["prod", "local"])
def before(request):
    return request.param, run_program(request.param)


def changed(plans: dict) -> dict[str, str]:
    return {name: plan.action for name, plan in plans.items() if plan.action != "same"}


def with_image(stack: str, service: str, reference: str) -> dict:
    config = copy.deepcopy(stack_config(stack))
    config["aiia:platform"].setdefault("images", {})[service] = reference
    return config


def release_steps_after_ready(run: ProgramRun) -> set[str]:
    """Each release's commands whose inputs are derived from the platform's `ready`: its
    migration, the switch's install, the watch, and the health route and maintenance
    switch written into nginx."""
    names = set()
    for resource in run.resources:
        if resource.name.startswith("app-") and (
                "-migrate-" in resource.name or resource.name.endswith(
                    ("-upstream-install", "-watch", "-health-route-install",
                     "-maintenance-install"))):
            names.add(resource.name)
    return names


def test_nothing_changed_previews_no_step(before):
    stack, run = before
    assert changed(preview(run, stack)) == {}


@pytest.mark.parametrize("service", sorted(NEWER_PATCH_RELEASES))
def test_an_image_bump_restarts_that_container_alone(before, service):
    stack, run = before
    newer = NEWER_PATCH_RELEASES[service]
    assert getattr(ImageSettings(), service) != newer
    config = with_image(stack, service, newer)
    plans = preview(run, stack, config=config)
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
    # The commands whose triggers are the container's id are replaced, to run again for the
    # new one: the check that every platform container runs, and the one that joins the
    # service to the environments' networks. A release's steps: the next test.
    replaced_with_it = {"platform-running"} | (
        {f"platform-{service}-networks"} if service in RELEASE_WAITS_FOR else set())
    steps = {name: action for name, action in changed(plans).items()
             if not name.startswith("app-")}
    assert {name for name in list(steps) if name in follows and steps.pop(name)} == follows
    assert steps == {f"platform-{service}-image": "replace",
                     f"platform-{service}-container": "replace",
                     **dict.fromkeys(replaced_with_it, "replace")}
    containers = {name: action for name, action in changed(plans).items()
                  if run.named(name).type == CONTAINER}
    assert containers == {f"platform-{service}-container": "replace"}
    restart = plans[f"platform-{service}-container"]
    assert restart.delete_before_replace, "pulumi-docker stops the old container first"
    assert restart.changed == {"image"}
    # The up restarts that container alone too.
    up = update_steps(run, run_program(stack, config=config))
    assert {name: action for name, action in changed(up).items()
            if run.named(name).type == CONTAINER} == containers


@pytest.mark.parametrize("service", sorted(RELEASE_WAITS_FOR))
def test_a_bump_of_what_releases_wait_for_previews_their_steps_as_updates(before, service):
    stack, run = before
    config = with_image(stack, service, NEWER_PATCH_RELEASES[service])
    waiting = release_steps_after_ready(run)
    assert {name.split("-")[1] for name in waiting} == set(
        stack_config(stack)["aiia:releases"])
    steps = changed(preview(run, stack, config=config))
    # `ready` is derived from the new container's id, unknown in a preview, so every input
    # derived from it is unknown and pulumi-command's diff shows an update (`~`) ...
    assert {name: steps.get(name) for name in waiting} == dict.fromkeys(waiting, "update")
    assert {name for name in steps if name.startswith("app-")} == waiting
    # ... which the up does not carry out: by then `ready` is true again, as before.
    up = update_steps(run, run_program(stack, config=config))
    assert {name: up[name].action for name in waiting} == dict.fromkeys(waiting, "same")


def test_a_postgres_bump_previews_no_release_step(before):
    # A release waits for PostgreSQL only through the check that every platform container
    # runs (`platform-running`), which the bump replaces: pulumi-command's preview of a
    # create gives it a new id, known, so `ready` stays known.
    stack, run = before
    config = with_image(stack, "postgres", NEWER_PATCH_RELEASES["postgres"])
    steps = changed(preview(run, stack, config=config))
    assert steps["platform-running"] == "replace"
    assert not [name for name in steps if name.startswith("app-")]


def test_a_memory_change_is_an_update_in_place(before):
    stack, run = before
    config = copy.deepcopy(stack_config(stack))
    config["aiia:platform"].setdefault("redis", {})["memory_mb"] = 40
    plans = preview(run, stack, config=config)
    containers = {name: action for name, action in changed(plans).items()
                  if run.named(name).type == CONTAINER}
    assert containers == {"platform-redis-container": "update"}
    # An update keeps the container's id and the provider's preview of it its outputs: no
    # release step waits on it.
    assert not [name for name in changed(plans) if name.startswith("app-")]
