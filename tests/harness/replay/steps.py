"""The engine's step rules: which step each declared resource gets against the state the
last update left (pulumi/pulumi `pkg/resource/deploy/step_generator.go`, `generateSteps`).

- A resource not in the state is created; one whose declared inputs equal its state is
  left as it is (`same`), unless its create left init errors: the next `pulumi up` with
  unchanged inputs issues an Update for it (`step_generator.go`: `hasInitErrors` makes an
  update step; what the provider's update does is docker_provider.py's).
- A changed input is updated in place when the provider can (a container's
  `CONTAINER_UPDATABLE`; a command: any change but its triggers, `REPLACE_ON_CHANGES`);
  otherwise the resource is replaced. A container whose changed inputs the provider cannot
  update in place is replaced **delete-before-create**: the engine uses the provider's
  answer (`PROVIDER_DELETE_BEFORE_REPLACE`) unless the program set `delete_before_replace`
  explicitly (`generateSteps`: `goal.DeleteBeforeReplace` when defined, else
  `diff.DeleteBeforeReplace`); other replacements are create-before-delete, the engine's
  default. replay.py carries the steps out.
- The state holds what the provider reads back (`read_back`, docker_provider.py), not
  what was declared; set-typed attributes (`CONTAINER_SETS`) are compared without regard
  to order (`changed_inputs`).
- `ignore_changes` (`declared_inputs`): before the diff, each ignored property of a
  resource in the state is reset to the state's value, or removed when the state has none
  (`step_generator.go`, `processIgnoreChanges`: `path.Reset(oldInputs, ignoredInputs)`);
  the step then goes on with those inputs, a replacement's create included. A resource not
  in the state is created with what the program declares.
- An input that is unknown (in a preview: derived from an output not known yet, preview.py)
  differs from any value in the state: the engine asks the provider's diff whenever the
  inputs are not equal (`step_generator.go`, `diff` and `diffResource`), and an unknown
  equals only an unknown (`sdk/go/common/resource/properties.go`,
  `PropertyValue.DeepEquals`); pulumi-command's diff (pulumi-go-provider
  `infer/resource.go`, `diff`) and the bridge's (`pkg/tfbridge/provider.go`, `Diff`) report
  it as a change, so the resource is updated or replaced as for a changed value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pulumi.runtime.rpc import contains_unknowns

from tests.harness.program import RecordedResource
from tests.harness.replay.command_provider import COMMANDS, REPLACE_ON_CHANGES
from tests.harness.replay.docker_provider import (
    CONTAINER,
    CONTAINER_SETS,
    CONTAINER_UPDATABLE,
    PROVIDER_DELETE_BEFORE_REPLACE,
)


@dataclass
class Applied:
    """One resource as it exists: its state (inputs as the provider reads them back) and
    the real values that replaced the mocks' placeholders."""

    urn: str
    type: str
    name: str
    inputs: dict
    real: dict = field(default_factory=dict)
    protect: bool = False
    pending_delete: bool = False
    init_errors: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    provider: str = ""  # the URN of the Docker provider it was made through


def _canonical_set(items: Any) -> Any:
    if not isinstance(items, list):
        return items
    return sorted(items, key=repr)


def changed_inputs(type_: str, declared: dict, state: dict) -> set[str]:
    """The top-level inputs whose declared value differs from the state's."""
    sets = CONTAINER_SETS if type_ == CONTAINER else set()
    changed = set()
    for key in set(declared) | set(state):
        new, old = declared.get(key), state.get(key)
        if contains_unknowns(new):
            same = False
        elif key in sets and isinstance(new, dict) and isinstance(old, dict):
            same = new == old  # tmpfs: a map
        elif key in sets:
            same = _canonical_set(new or []) == _canonical_set(old or [])
        else:
            same = new == old
        if not same:
            changed.add(key)
    return changed


@dataclass(frozen=True)
class Plan:
    """What the engine does with one resource: same, create, update or replace."""

    action: str
    changed: frozenset[str] = frozenset()
    delete_before_replace: bool = False


def declared_inputs(resource: RecordedResource, current: Applied | None) -> dict:
    """The inputs the engine goes on with: the program's, its ignore_changes reset to the
    state's (`processIgnoreChanges`)."""
    inputs = resource.plain
    if current is None or not resource.ignore_changes:
        return inputs
    inputs = dict(inputs)
    for name in resource.ignore_changes:
        if name in current.inputs:
            inputs[name] = current.inputs[name]
        else:
            inputs.pop(name, None)
    return inputs


def plan_step(resource: RecordedResource, current: Applied | None) -> Plan:
    if current is None:
        return Plan("create")
    changed = frozenset(changed_inputs(resource.type, declared_inputs(resource, current),
                                       current.inputs))
    if not changed:
        return Plan("update") if current.init_errors else Plan("same")
    if resource.type in COMMANDS:
        return Plan("replace" if REPLACE_ON_CHANGES in changed else "update", changed)
    if resource.type == CONTAINER and changed <= CONTAINER_UPDATABLE:
        return Plan("update", changed)
    if resource.delete_before_replace_defined:
        delete_first = resource.delete_before_replace
    else:
        delete_first = resource.type in PROVIDER_DELETE_BEFORE_REPLACE
    return Plan("replace", changed, delete_first)

