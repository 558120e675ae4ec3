"""An interrupted `pulumi up` between the delete and the create of a platform container, and
the runbook's repair (docs/runbooks.md, "An interrupted or cancelled pulumi up"; issue #28
item 4), on a replayed local stack.

Redis is replaced delete-before-create (an image bump); the CLI is killed while the new
container is created: the old one is gone, the new one exists but Pulumi's state holds only
a pending CREATE. The next `up` creates it again and clashes on its fixed name, so the outage
lasts until someone repairs it: `pulumi refresh --clear-pending-creates`, `docker rm -f` of
the half-created container, `pulumi up`.
"""

from __future__ import annotations

import copy

import pytest

from tests.harness.local_stack import NEWER_PATCH_RELEASES, image_map
from tests.harness.replay import Interrupted, ReplayError

pytestmark = pytest.mark.e2e


def test_an_interrupted_replacement_is_repaired_by_the_runbook(local_stack):
    stack = local_stack
    config = copy.deepcopy(stack.config)
    config["aiia:platform"].setdefault("images", {})["redis"] = NEWER_PATCH_RELEASES["redis"]
    stack.replay.image_map = image_map(config)
    redis = stack.container("redis")
    resource = stack.run.containers()[redis].name
    assert stack.get("prod", "/healthz/").status == 200

    stack.replay.interrupt.add(resource)
    with pytest.raises(Interrupted, match=f"interrupted while creating {resource}"):
        stack.up(config)
    # Half-created: the container exists, Pulumi's state does not have it.
    assert stack.engine.container(redis) is not None
    assert resource not in {applied.name for applied in stack.replay.state.values()}

    # Running `pulumi up` again does not repair it: the same name clashes.
    with pytest.raises(ReplayError, match=f"a container named {redis} already exists"):
        stack.up(config)

    # The runbook: clear the pending create, remove what it half-made, up again.
    assert stack.replay.clear_pending_creates() == [resource]
    stack.engine.remove_container(redis)
    stack.up(config)

    assert resource in {applied.name for applied in stack.replay.state.values()}
    stack.wait_healthy(redis, timeout=60)
    assert stack.get("prod", "/healthz/").status == 200
