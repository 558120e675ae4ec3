"""A release whose health gate failed, deployed again once it is healthy, is switched to
(issue #28 item 2).

The first `up` of a slow starter fails its 60 s health gate: Pulumi keeps the container with
init errors and never reads it back, so its address is unknown to Pulumi from then on
(tests/unit/harness/test_replay.py pins that the replay follows terraform-provider-docker
here). The same release deployed again is an update of that container without a gate; the
switch reads the container's health and address from the engine, and points nginx at it.
"""

from __future__ import annotations

import re

import pytest

from tests.harness.replay import ReplayError

pytestmark = pytest.mark.e2e


def test_a_release_that_missed_its_gate_switches_when_deployed_again(local_stack):
    stack = local_stack
    assert stack.get("prod", "/").headers["x-release"] == "release-a"
    slow = stack.with_release("prod", "slow-start")
    with pytest.raises(ReplayError, match="not healthy"):
        stack.up(slow)
    # The gate failed: the previous release serves, and Pulumi knows no address for the new
    # container (the create never reached its read-back).
    assert stack.get("prod", "/").headers["x-release"] == "release-a"
    (applied,) = [a for a in stack.replay.state.values()
                  if a.name.startswith("app-prod-app-slow-start")]
    assert applied.init_errors and "ip_address" not in applied.real
    container = applied.real["name"]
    stack.wait_healthy(container, timeout=90)  # it was only slow

    stack.up(slow)  # the same release again: an update of the container, no gate

    assert stack.get("prod", "/").headers["x-release"] == "slow-start"
    assert "ip_address" not in stack.replay.state[applied.urn].real  # still never read back
    networks = stack.engine.container(container)["NetworkSettings"]["Networks"]
    address = networks[f"{stack.prefix}-prod"]["IPAddress"]
    upstream = (stack.root / "nginx/upstreams/prod.conf").read_text()
    assert re.search(rf"server {re.escape(address)}:\d+ max_fails=0;", upstream), upstream
    assert not any(a.name.startswith("app-prod-app-release-a")
                   for a in stack.replay.state.values())  # the previous one deleted at the end
