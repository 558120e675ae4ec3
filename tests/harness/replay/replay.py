"""The engine: successive `pulumi up`s over one state (`Replay`).

`apply` runs the step `steps.plan_step` gives each declared resource, in the order and
with the concurrency of schedule.py, through the providers (docker_provider.py,
command_provider.py), then deletes what is pending deletion or no longer declared.

- Create-before-delete replacements (the engine's default, and a container whose program
  set `delete_before_replace=False`): the new resource is created, the old one is marked
  pending deletion at once (`step.go`, `CreateStep.Apply`: `s.old.Delete = true`) and
  deleted at the end of the update with every undeclared resource, in reverse dependency
  order, only if every step succeeded. Pending deletions left by a failed update are
  deleted at the end of the next successful update, not first (pulumi/pulumi#11027, which
  closed #9979). A delete-before-create replacement deletes the old resource, then creates
  the new one.
- A create that made its resource and failed after (`InitError`: a container whose health
  wait failed) leaves the resource in the state with init errors, and the update fails.
- A protected resource is never replaced: the update fails before any step
  (`step_generator.go`). One no longer declared is not deleted, but everything else
  undeclared is, except what it depends on, and only then does the update fail: pulumi/pulumi
  `pkg/resource/deploy/step.go` `DeleteStep.Apply` returns `deleteProtectedError` (line
  648 at 1b594989), which `step_executor.go` `cancelDueToError` always continues past
  (lines 442-449), and `deployment_executor.go` leaves out of the later delete antichains
  the transitive dependencies of an errored step (lines 514-543).
- An interrupted update (`interrupt`: the CLI killed while a resource is created) leaves a
  pending CREATE: the resource exists but is not in the state. The next update only warns
  (`deployment_executor.go` `printPendingOperationsWarning`) and creates it again, which a
  fixed container name makes fail ("already exists"). `clear_pending_creates` is
  `pulumi refresh --clear-pending-creates` (`pkg/cmd/pulumi/operations/refresh.go`), which
  drops them from the state and leaves the half-created resource where it is; the rest of
  a refresh (reading every resource back) is not modelled.
- The mocks' placeholders in an input (an image id, a 198.18.x.y address) are replaced by
  the real values the provider gave; an input still holding one depends on an output not
  known yet, and Pulumi would not run that step.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.engine import DockerEngine
from tests.harness.program import ProgramRun, RecordedResource
from tests.harness.replay import command_provider, docker_provider
from tests.harness.replay.command_provider import COMMANDS
from tests.harness.replay.docker_provider import CONTAINER, DOCKER_PROVIDER, read_back
from tests.harness.replay.errors import InitError, Interrupted, ReplayError
from tests.harness.replay.schedule import (
    DEFAULT_PARALLEL,
    REPLACED,
    deletion_graph,
    dependency_graph,
    run_graph,
)
from tests.harness.replay.steps import Applied, declared_inputs, plan_step

SKIPPED_TYPES = ("pulumi:providers:", "pulumi:pulumi:StackReference")


def _substitute(value: Any, substitutions: dict[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, real in substitutions.items():
            if placeholder in value:
                value = value.replace(placeholder, real)
        return value
    if isinstance(value, dict):
        return {key: _substitute(item, substitutions) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, substitutions) for item in value]
    return value


def _placeholders(value: Any) -> set[str]:
    """Mock placeholders (198.18.x.y addresses) still in a value: an unknown output."""
    if isinstance(value, str):
        return set(re.findall(r"198\.18\.\d+\.\d+", value))
    if isinstance(value, dict):
        return set().union(*(_placeholders(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_placeholders(item) for item in value))
    return set()


class Replay:
    """Applies program runs to the engine one after another, like successive `pulumi up`s."""

    def __init__(self, engine: DockerEngine, image_map: dict[str, str],
                 log: Callable[[str], None] = print, parallel: int = DEFAULT_PARALLEL,
                 ssh_identity: Path | None = None,
                 pull: Callable[[DockerEngine, str], None] | None = None):
        self.engine = engine  # a Docker provider's engine when it names no host
        # The engine of each Docker provider configured so far, by the provider's URN.
        self.engines: dict[str, DockerEngine] = {}
        # The key an ssh-agent would offer: remote commands and the Docker provider's ssh.
        self.ssh_identity = ssh_identity
        # The registry's stand-in: puts an image missing from a provider's engine there.
        self.pull = pull
        self.image_map = image_map
        self.log = log
        self._log_lock = threading.Lock()
        self.parallel = parallel
        self.state: dict[str, Applied] = {}
        self.substitutions: dict[str, str] = {}
        # (action, resource name, monotonic start, monotonic end) of every step, in order of
        # completion.
        self.events: list[tuple[str, str, float, float]] = []
        self._lock = threading.RLock()
        self._replacements = 0
        # Names of resources whose create the CLI is killed during (tests set it), and the
        # operations an interrupted update left pending: URN → (operation, resource name).
        self.interrupt: set[str] = set()
        self.pending_operations: dict[str, tuple[str, str]] = {}

    def _say(self, line: str) -> None:
        # Steps run in threads: print() writes a line and its newline separately.
        with self._log_lock:
            self.log(line)

    # ----------------------------------------------------------------- the update

    def apply(self, run: ProgramRun) -> None:
        """One `pulumi up` of `run`; raises (like a failed update) when a step fails."""
        resources = [r for r in run.resources if r.custom and (
            r.type == DOCKER_PROVIDER or not r.type.startswith(SKIPPED_TYPES))]
        graph = dependency_graph(resources, run.resources)
        by_urn = {resource.urn: resource for resource in resources}
        if self.pending_operations:
            # printPendingOperationsWarning: a warning, and the update goes on without them.
            self._say("warning: Attempting to deploy or update resources with "
                      f"{len(self.pending_operations)} pending operations from previous "
                      "deployment: " + ", ".join(f"{name}, interrupted while {operation}"
                                                 for operation, name in
                                                 self.pending_operations.values()))
        run_graph(graph, lambda urn: self._step(by_urn[urn]), self.parallel)
        self._delete_at_end({resource.urn for resource in resources})

    def _step(self, resource: RecordedResource) -> None:
        if resource.type == DOCKER_PROVIDER:
            self._configure_provider(resource)
            return
        with self._lock:
            current = self.state.get(resource.urn)
            if current and current.pending_delete:
                current = None
        plan = plan_step(resource, current)
        plain = declared_inputs(resource, current)
        if plan.action == "same":
            return
        if plan.action == "create":
            self._create(resource, plain)
        elif plan.action == "update":
            assert current is not None
            self._update(resource, current, plan.changed, plain)
        else:
            assert current is not None
            if current.protect:
                raise ReplayError(f"{resource.name} is protected and cannot be replaced "
                                  f"({', '.join(sorted(plan.changed))} changed), as "
                                  "`pulumi up` would refuse")
            order = "delete-before-create" if plan.delete_before_replace else \
                "create-before-delete"
            self._say(f"replace {resource.name} ({order}): "
                     f"{', '.join(sorted(plan.changed))} changed")
            if plan.delete_before_replace:
                self._delete(current)
            else:
                self._condemn(current)
            self._create(resource, plain)

    def _condemn(self, current: Applied) -> None:
        """The old resource of a create-before-delete replacement: pending deletion."""
        with self._lock:
            self._replacements += 1
            old_urn = f"{current.urn}{REPLACED}{self._replacements}"
            del self.state[current.urn]
            current.urn = old_urn
            current.pending_delete = True
            self.state[old_urn] = current

    def _delete_at_end(self, declared: set[str]) -> None:
        """Pending deletions and undeclared resources, dependents first."""
        doomed = {urn: applied for urn, applied in self.state.items()
                  if applied.pending_delete or urn not in declared}
        protected = sorted(applied.name for applied in doomed.values() if applied.protect)
        kept = self._kept_for_protected(doomed)
        deletable = {urn: applied for urn, applied in doomed.items() if urn not in kept}
        graph = deletion_graph({urn: applied.dependencies
                                for urn, applied in deletable.items()})
        run_graph(graph, lambda urn: self._delete(deletable[urn]), self.parallel)
        if protected:
            raise ReplayError(f"{', '.join(protected)}: cannot be deleted because it is "
                              "protected (as `pulumi up` refuses, after deleting the rest)")

    @staticmethod
    def _kept_for_protected(doomed: dict[str, Applied]) -> set[str]:
        """The protected resources among `doomed` and, transitively, what they depend on."""
        base = {urn.split(REPLACED)[0]: urn for urn in doomed}
        kept: set[str] = set()
        pending = [urn for urn, applied in doomed.items() if applied.protect]
        while pending:
            urn = pending.pop()
            if urn in kept:
                continue
            kept.add(urn)
            pending.extend(base[dependency] for dependency in doomed[urn].dependencies
                           if dependency in base)
        return kept

    # ----------------------------------------------------------------- steps

    def _timed(self, action: str, name: str, work: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return work()
        finally:
            with self._lock:
                self.events.append((action, name, started, time.monotonic()))

    def _real_inputs(self, resource: RecordedResource, plain: dict) -> dict:
        with self._lock:
            inputs = _substitute(plain, self.substitutions)
        unknown = _placeholders(inputs)
        if unknown:
            # An output the engine does not know yet (e.g. the address of a container whose
            # create failed): Pulumi would not run this step with it.
            raise ReplayError(f"{resource.name}: input depends on an unknown output "
                              f"({', '.join(sorted(unknown))}); a dependency did not finish")
        return inputs

    def _provider_create(self, resource: RecordedResource, inputs: dict) -> dict:
        """The provider's create: the real values the state keeps."""
        if resource.type in COMMANDS:
            return command_provider.run(resource, inputs, "create", self.ssh_identity,
                                        self._say)
        return docker_provider.create(self._engine(resource.provider), resource, inputs,
                                      self.image_map, self.pull)

    def _create(self, resource: RecordedResource, plain: dict) -> None:
        if resource.type not in (*docker_provider.RESOURCES, *COMMANDS):
            raise ReplayError(f"{resource.name}: resource type {resource.type} is not "
                              "understood by the replay")
        inputs = self._real_inputs(resource, plain)
        self._say(f"create {resource.name}")
        applied = Applied(urn=resource.urn, type=resource.type, name=resource.name,
                          inputs=read_back(resource.type, plain),
                          protect=resource.protect,
                          dependencies=list(resource.dependencies),
                          provider=resource.provider)
        if resource.name in self.interrupt:
            self._interrupted_create(resource, inputs)
        try:
            applied.real = self._timed("create", resource.name,
                                       lambda: self._provider_create(resource, inputs))
        except InitError as error:
            applied.real = error.real
            applied.init_errors = [str(error)]
            with self._lock:
                self.state[resource.urn] = applied
            raise ReplayError(f"{resource.name}: {error}") from error
        with self._lock:
            self.state[resource.urn] = applied
            self._learn(resource, applied.real)

    def _interrupted_create(self, resource: RecordedResource, inputs: dict) -> None:
        """The CLI killed while the provider creates `resource`: the provider's create goes
        on (the container is made), the engine records only the pending CREATE."""
        with self._lock:
            self.interrupt.discard(resource.name)
            self.pending_operations[resource.urn] = ("creating", resource.name)
        with contextlib.suppress(InitError):  # made all the same
            self._provider_create(resource, inputs)
        raise Interrupted(f"pulumi up interrupted while creating {resource.name}")

    def clear_pending_creates(self) -> list[str]:
        """`pulumi refresh --clear-pending-creates`: the pending CREATEs dropped from the
        state (what they made stays); their resource names."""
        with self._lock:
            names = [name for operation, name in self.pending_operations.values()
                     if operation == "creating"]
            self.pending_operations = {urn: operation for urn, operation
                                       in self.pending_operations.items()
                                       if operation[0] != "creating"}
        return names

    def _update(self, resource: RecordedResource, current: Applied,
                changed: frozenset[str], plain: dict) -> None:
        inputs = self._real_inputs(resource, plain)
        why = ", ".join(sorted(changed)) or "init errors of its create"
        self._say(f"update {resource.name}: {why}")
        if resource.type in COMMANDS:
            current.real = self._timed(
                "update", resource.name,
                lambda: command_provider.run(resource, inputs, "update", self.ssh_identity,
                                             self._say))
        elif resource.type == CONTAINER:
            current.real = self._timed(
                "update", resource.name,
                lambda: docker_provider.update_container(self._engine(resource.provider),
                                                         resource, inputs, current.real))
        else:
            raise ReplayError(f"{resource.name}: {resource.type} cannot be updated in place")
        with self._lock:
            current.inputs = read_back(resource.type, plain)
            current.dependencies = list(resource.dependencies)
            current.init_errors = []
            self._learn(resource, current.real)

    def _delete(self, applied: Applied) -> None:
        if applied.protect:
            raise ReplayError(f"{applied.name} is protected and cannot be deleted "
                              "(as `pulumi up` would refuse)")
        self._say(f"delete {applied.name}")

        engine = self._engine(applied.provider)

        def delete() -> None:
            if applied.type in COMMANDS:
                command_provider.delete(applied.name, applied.type, applied.inputs,
                                        applied.real, self.ssh_identity, self._say)
            else:
                docker_provider.delete(engine, applied.type, applied.inputs, applied.real)

        self._timed("delete", applied.name, delete)
        with self._lock:
            self.state.pop(applied.urn, None)

    def _learn(self, resource: RecordedResource, real: dict) -> None:
        """Remember which real value stands for each placeholder the mocks produced."""
        for key in ("image_id", "ip_address", "subnet"):
            mock_value = real.get(f"mock_{key}")
            if mock_value and real.get(key):
                self.substitutions[mock_value] = real[key]

    # ----------------------------------------------------------------- providers

    def _engine(self, provider: str) -> DockerEngine:
        """The engine of the provider a resource was made through (the default engine for a
        resource recorded without one)."""
        with self._lock:
            return self.engines.get(provider, self.engine)

    def _configure_provider(self, resource: RecordedResource) -> None:
        """A Docker provider (docker_provider.configure): its client, pinged before its
        first resource. The engine configures every provider at each update; a
        configuration is not a step, so nothing is logged."""
        inputs = self._real_inputs(resource, resource.plain)
        engine = docker_provider.configure(resource, inputs, self.engine, self.ssh_identity)
        with self._lock:
            previous = self.engines.get(resource.urn)
            if previous is not None and previous is not engine:
                # A new client per update; the record of what each health gate saw is the
                # tests' (tests/harness/engine.py `gates`) and spans the updates.
                engine.gates = {**previous.gates, **engine.gates}
            self.engines[resource.urn] = engine

    # ----------------------------------------------------------------- queries

    def container_name(self, resource_name: str) -> str:
        for applied in self.state.values():
            if applied.name == resource_name and applied.type == CONTAINER \
                    and not applied.pending_delete:
                return applied.real["name"]
        raise KeyError(resource_name)
