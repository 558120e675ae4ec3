"""Test scaffolding: replay what the program declared (under mocks) onto a real Docker engine.

Production always goes through the Pulumi engine; nothing here is used by it. This exists
because the Pulumi CLI and its provider plugins cannot run on our machines, so the tests
show that what the program declares works by creating it for real: networks, volumes and
images (upstream names mapped to the stand-ins under tests/images), containers (every
pulumi-docker `Container` input the program uses mapped to the Docker Engine API; an input
the replay does not understand fails by name) and `command.local` commands, run for real.

Between two runs of the program it applies the difference the way `pulumi up` does. Each
behaviour names the upstream source it follows (pinned versions: pulumi 3.272,
pulumi-docker 5.2.0 wrapping kreuzwerker/terraform-provider-docker, pulumi-command 1.2.1)
in the docstring of the module that imitates it;
`tests/unit/harness/test_replay.py` pins each one.

- replay.py: the engine's update (`Replay`): steps carried out, create-before-delete
  replacements and pending deletions, init errors, protected resources.
- steps.py: the step each resource gets (pulumi/pulumi `step_generator.go`): `plan_step`,
  `changed_inputs`, `declared_inputs` (`ignore_changes`).
- preview.py: `pulumi preview` (`preview`: the program run as a dry run, the outputs of what
  it creates or replaces unknown to what derives from them) and the steps of the `up` after
  it (`update_steps`).
- schedule.py: the dependency graph and the parallel run (`step_executor.go`).
- docker_provider.py: pulumi-docker / terraform-provider-docker: the provider's client
  (`ssh://`), containers, images, networks, volumes, what is updated in place, read-back.
- command_provider.py: pulumi-command's local and remote (ssh) commands.
- errors.py: `ReplayError`, `InitError`, an input not understood failing by name.

What it does not model (so the tests cannot see it):
- the new id a create or replacement gives a resource in an `up`: the mocks give it the
  same id in every run (`<name>-id`) and the replay does not put the real one in its place,
  so a command whose `triggers` hold a container's id (`platform-running`,
  `platform-<service>-networks`) is `same` in an `up` that replaces the container, where
  Pulumi replaces it (a preview, preview.py, shows it replaced: the id is unknown there);
- read-back drift other than the healthcheck durations and set ordering above: default
  values the provider fills in, environment variables that come from the image, a
  container changed by hand, `pulumi refresh`;
- the engine's dependent replacements around a delete-before-replace
  (`calculateDependentReplacements`): no resource of this program depends on a container
  in a way that would be replaced with it (the dependents are commands, updated in place);
- of Docker over `ssh://`: the Go client's keep-alive reuse of a dial-stdio connection
  (here each API request dials anew; with the program's ControlMaster both ride one SSH
  connection), a change of the provider's configuration replacing what it made, and
  `registry_auth` (image pulls are not modelled; it fails by name);
- of remote commands: the provider keeping every SSH connection open until it exits, and
  `environment` (sent with `Setenv`, which sshd drops unless `AcceptEnv` names it); custom
  timeouts, `retainOnDelete`, aliases, imports and `pulumi cancel` (an interrupted
  create is: replay.py); `pulumi refresh` beyond `--clear-pending-creates`;
- the provider's own image pull: stand-ins are on the engine already, or the Replay's
  `pull(engine, image)` (the registry's stand-in) brings one there in the `RemoteImage`
  step (which keeps the pull in a step of its own, before the containers that take its
  `image_id`); registries, credentials and digests are not modelled.
"""

from tests.harness.replay.command_provider import LOCAL_COMMAND, REMOTE_COMMAND
from tests.harness.replay.docker_provider import (
    CONTAINER,
    DOCKER_PROVIDER,
    IMAGE,
    NETWORK,
    VOLUME,
    duration_ns,
    go_duration,
    read_back,
)
from tests.harness.replay.errors import Interrupted, ReplayError
from tests.harness.replay.preview import preview, update_steps
from tests.harness.replay.replay import Replay
from tests.harness.replay.schedule import dependency_graph
from tests.harness.replay.steps import Applied, Plan, changed_inputs, plan_step

__all__ = [
    "CONTAINER", "DOCKER_PROVIDER", "IMAGE", "LOCAL_COMMAND", "NETWORK", "REMOTE_COMMAND",
    "Interrupted",
    "VOLUME", "Applied", "Plan", "Replay", "ReplayError", "changed_inputs", "dependency_graph",
    "duration_ns", "go_duration", "plan_step", "preview", "read_back", "update_steps",
]
