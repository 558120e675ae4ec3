"""`pulumi preview` (`preview`) and the steps of the `pulumi up` after it (`update_steps`).

A preview is a dry run of the same deployment (pulumi/pulumi
`pkg/resource/deploy/deployment_executor.go`): the program runs, each resource gets the step
`steps.plan_step` gives it when it registers, nothing is carried out, and what no longer
registers is deleted. The program is handed back, for each resource, what its provider's
preview of that step returns (pulumi/pulumi `pkg/resource/deploy/step.go`: `CreateStep` and
`UpdateStep` call the provider with `Preview: true`; a `SameStep` keeps the state's outputs):

- create or replace, pulumi-docker (pulumi-terraform-bridge `pkg/tfbridge/provider.go`,
  `Provider.Create`: in a preview the plan's state, `diff.ProposedState`, whose id is ""
  while unknown, `pkg/tfshim/sdk-v2/provider2.go` `v2InstanceState2.ID`): the inputs as
  declared; the id and every computed output (a container's `network_data`, an image's
  `image_id`, a network's subnet) unknown.
- create or replace, pulumi-command (`provider/pkg/provider/local/commandController.go` and
  `remote/`, `Command.Create`: in a preview a new id from `resource.NewUniqueHex` and no
  run; pulumi-go-provider `infer/resource.go`, `markComputed`: on a create every output
  that does not mirror an input is computed): a new id, known; the inputs as declared;
  `stdout` and `stderr` unknown.
- update, pulumi-docker (`Provider.Update`: `ProposedState` over the prior state): the
  computed outputs keep their values. pulumi-command (`Command.Update` returns the inputs and
  the prior outputs; `markComputed`: "every output depends on every input", so once an input
  changed every output that does not mirror an input is computed): `stdout`, `stderr`
  unknown.

The Python SDK resolves an empty id and an output left out as unknown in a dry run
(`pulumi/runtime/resource.py` and `rpc.py`, `resolve_outputs`), and an `apply` or
`Output.all` over an unknown is unknown without running: every input derived from one
arrives unknown at its resource's registration. Its provider's diff then reports a change (an
unknown never equals the old value: pulumi/pulumi `sdk/go/common/resource/properties.go`,
`PropertyValue.DeepEquals`, which pulumi-go-provider's `diff` uses; the bridge's
`Provider.Diff` plans the unknown attribute as a change, `RequiresNew` for one that forces a
new resource), so `plan_step` gives that resource an update, or a replacement where the
unknown is an input the provider cannot update in place or a command's `triggers`.

In the `up` that follows, a resource registers only once the outputs it reads are known (the
SDK awaits them), so its inputs hold real values, and a dependent whose values come out equal
to its state's is `same`: `update_steps`, the step `Replay.apply` gives each resource.
"""

from __future__ import annotations

from secrets import token_hex
from typing import Any

from pulumi.runtime.rpc import contains_unknowns

from tests.harness.program import ProgramRun, RecordedResource, run_program
from tests.harness.replay.command_provider import COMMANDS
from tests.harness.replay.docker_provider import read_back
from tests.harness.replay.steps import Applied, Plan, plan_step

PROVIDER_TYPES = "pulumi:providers:"


def _state(previous: ProgramRun) -> dict[str, Applied]:
    """The state an update of `previous` that succeeded left."""
    return {resource.urn: Applied(resource.urn, resource.type, resource.name,
                                  read_back(resource.type, resource.plain))
            for resource in previous.resources if resource.custom}


def _mirrored_inputs(resource: RecordedResource, outputs: dict) -> dict:
    """The outputs that mirror a known input: all a provider's preview knows of a new
    resource."""
    return {key: value for key, value in outputs.items()
            if key in resource.inputs and resource.inputs[key] == value
            and not contains_unknowns(value)}


def previewed_outputs(resource: RecordedResource, plan: Plan, id_: str,
                      outputs: dict) -> tuple[str, dict]:
    """What the engine hands the program back for `resource` in a preview of `plan`: its id
    ("" when unknown) and the outputs known (one left out is unknown)."""
    # A SameStep keeps the state's outputs. A provider's own preview (a changed
    # configuration) is not modelled (__init__.py): its outputs stay as the mocks gave them.
    if resource.type.startswith(PROVIDER_TYPES) or plan.action == "same":
        return id_, outputs
    if resource.type in COMMANDS:
        if plan.action == "update":
            return id_, _mirrored_inputs(resource, outputs) if plan.changed else outputs
        return f"{resource.name}-{token_hex(4)}", _mirrored_inputs(resource, outputs)
    if plan.action == "update":
        return id_, outputs
    return "", _mirrored_inputs(resource, outputs)


def preview(previous: ProgramRun, stack: str, **run: Any) -> dict[str, Plan]:
    """`pulumi preview` of the program for `stack` (`run`: run_program's config, secrets,
    stack_outputs or program) against the state `previous` left: the step each resource
    gets, by name; a resource the program no longer declares is deleted."""
    state = _state(previous)
    plans: dict[str, Plan] = {}

    def answer(resource: RecordedResource, id_: str, outputs: dict) -> tuple[str, dict]:
        plan = plan_step(resource, state.get(resource.urn))
        plans[resource.urn] = plan
        return previewed_outputs(resource, plan, id_, outputs)

    current = run_program(stack, preview=answer, **run)
    for resource in current.resources:  # a read (StackReference) registers no step
        if resource.custom and resource.urn not in plans:
            plans[resource.urn] = plan_step(resource, state.get(resource.urn))
    steps = {resource.name: plans[resource.urn]
             for resource in current.resources if resource.custom}
    steps.update({applied.name: Plan("delete") for urn, applied in state.items()
                  if urn not in plans})
    return steps


def update_steps(previous: ProgramRun, current: ProgramRun) -> dict[str, Plan]:
    """The `pulumi up` of `current` (a run with every output known) against the state
    `previous` left: the step each resource gets, by name, as `Replay.apply` plans it; a
    resource the program no longer declares is deleted."""
    state = _state(previous)
    steps = {resource.name: plan_step(resource, state.pop(resource.urn, None))
             for resource in current.resources if resource.custom}
    steps.update({applied.name: Plan("delete") for applied in state.values()})
    return steps
