"""Test scaffolding: replay what the program declared (under mocks) onto a real Docker engine.

Production always goes through the Pulumi engine; nothing here is used by it. This exists
because the Pulumi CLI and its provider plugins cannot run on our machines, so the tests
show that what the program declares works by creating it for real: networks, volumes and
images (upstream names mapped to the stand-ins under tests/images), containers (every
pulumi-docker `Container` input the program uses mapped to the Docker Engine API; an input
the replay does not understand fails by name) and `command.local` commands, run for real.

Between two runs of the program it applies the difference the way `pulumi up` does. Each
behaviour below names the upstream source it follows (pinned versions: pulumi 3.272,
pulumi-docker 5.2.0 wrapping kreuzwerker/terraform-provider-docker, pulumi-command 1.2.1);
`tests/unit/test_replay.py` pins each one.

- Steps run concurrently over the dependency graph (pulumi/pulumi
  `pkg/resource/deploy/step_executor.go`: a pool of `--parallel` workers, default
  unbounded in `pkg/cmd/pulumi/operations/up.go`; the language host registers a resource
  only once the resources it depends on have completed, and once its parent is
  registered, which waited for the parent's own dependencies: `dependency_graph`).
  After a failed step no new step starts, the running ones finish, and the update fails.
- A container whose changed inputs the provider cannot update in place is replaced
  **delete-before-create**: pulumi-docker marks `docker_container` `DeleteBeforeReplace:
  true` (`provider/resources.go`) and the engine uses the provider's answer unless the
  program set `delete_before_replace` explicitly (`step_generator.go`, `generateSteps`:
  `goal.DeleteBeforeReplace` when defined, else `diff.DeleteBeforeReplace`). The inputs
  updated in place are those `resourceDockerContainerUpdate` handles
  (terraform-provider-docker `internal/provider/resource_docker_container_funcs.go`);
  every other attribute is `ForceNew` in `resource_docker_container.go`.
- Create-before-delete replacements (the engine's default, and a container whose program
  set `delete_before_replace=False`): the new resource is created, the old one is marked
  pending deletion at once (`step.go`, `CreateStep.Apply`: `s.old.Delete = true`) and
  deleted at the end of the update with every undeclared resource, in reverse dependency
  order, only if every step succeeded. Pending deletions left by a failed update are
  deleted at the end of the next successful update, not first (pulumi/pulumi#11027, which
  closed #9979).
- A container whose health wait fails already has its id (terraform-provider-docker
  `resourceDockerContainerCreate`: `d.SetId` before the `wait` loop), so the engine keeps it
  with init errors and the update fails. The next `pulumi up` with unchanged inputs issues
  an Update for it (`step_generator.go`: `hasInitErrors` makes an update step), which
  waits for nothing: the provider's update does not run the health wait
  (pulumi/pulumi#21458). Its address becomes known only then (the provider reads
  `network_data` after a successful create or update, not after a failed create).
- Read-back: the state holds what the provider reads back, not what was declared.
  Healthcheck durations are read back in Go's canonical form (`"60s"` → `"1m0s"`,
  `resourceDockerContainerRead` formats `time.Duration`), so a declaration in another
  form differs from state on every run. Set-typed attributes (labels, envs, volumes,
  mounts, ports, networks_advanced, …: `schema.TypeSet` in `resource_docker_container.go`)
  are compared without regard to order.
- `command:local:Command` (pulumi-command v1.2.1, `provider/pkg/provider/common/` and
  `local/`): only a change of `triggers` replaces (the SDK sets `replaceOnChanges:
  ["triggers[*]"]`); any other change is an update that runs `update` (or `create` when
  `update` is unset); `delete` runs with the stdin and environment stored in state; stdin
  is attached only when non-empty; the interpreter defaults to `/bin/sh -c`; the
  environment is added to the provider's own.
- `command:remote:Command` (pulumi-command v1.2.1, `remote/commandOutputs.go`,
  `remote/connection.go`): the same create/update/delete and triggers as local, each run
  over a new SSH connection with the system `ssh` (the server runs it with the user's
  shell, as a session's `Run` does); stdin attached only when non-empty; the host key
  checked only when the connection's `host_key` is set (else any key is accepted:
  `InsecureIgnoreHostKey`); a failed dial or handshake retried up to `dial_error_limit`
  times (`Dial`'s retry.Until), never a command that ran; delete runs
  with the connection and stdin of the state. A password, agent socket or bastion in the
  connection fails by name.
- A Docker provider (`pulumi:providers:docker`) is configured before any resource made
  through it: the SDK's `_prepare_resource` awaits the provider reference, known once the
  provider was registered after its own `depends_on` (here: the host's preflight). Its
  client follows terraform-provider-docker `internal/provider/config.go` `NewClient`: an
  `ssh://` host goes through docker/cli's connection helper
  (`cli/connhelper/connhelper.go`, `cli/connhelper/ssh/ssh.go`): the *system* `ssh` with
  the provider's `ssh_opts`, `-o ConnectTimeout=30` unless they set one, `-T`, then
  `-l user -p port -- host docker system dial-stdio`, HTTP spoken over its stdin and
  stdout; the identity is the one an ssh-agent would offer (`ssh_identity`). The client is
  pinged first (`providerConfigure`: "Error pinging Docker server"), so a refused host key
  or a missing docker CLI on the host fails the update before any Docker step.
- A protected resource is never deleted or replaced: the update fails
  (`step_generator.go`, "refusing to delete protected resource").
- `preview(previous, current)`: `pulumi preview` plans with the same step generation as
  an update and executes nothing (a dry run of the same deployment,
  `pkg/resource/deploy/deployment_executor.go`), so it is `plan_step` for every resource
  against the state the previous update left, and a delete for what is no longer declared.

What it does not model (so the tests cannot see it):
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
  timeouts, `retainOnDelete`, `ignore_changes`, aliases, imports, `pulumi cancel`
  and an interrupted update (its pending operations);
- the provider's own image pull: stand-ins are on the engine already, or the Replay's
  `pull(engine, image)` (the registry's stand-in) brings one there in the `RemoteImage`
  step (which keeps the pull in a step of its own, before the containers that take its
  `image_id`); registries, credentials and digests are not modelled.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.engine import (
    SOCKET,
    DialStdioEngine,
    DockerEngine,
    EngineError,
    dial_stdio_command,
)
from tests.harness.program import ProgramRun, RecordedResource, mock_image_id, mock_ip_address

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
LOCAL_COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
COMMANDS = (LOCAL_COMMAND, REMOTE_COMMAND)
DOCKER_PROVIDER = "pulumi:providers:docker"
SKIPPED_TYPES = ("pulumi:providers:", "pulumi:pulumi:StackReference")
# pulumi-docker's provider configuration the replay maps (terraform-provider-docker
# `Config`: host, ssh_opts); registry_auth, TLS material and the rest fail by name.
PROVIDER_INPUTS = {"host", "ssh_opts"}

# terraform-provider-docker `resourceDockerContainerUpdate` applies these in place (docker
# update, or state only); every other container attribute is ForceNew.
CONTAINER_UPDATABLE = {"memory", "memory_swap", "restart", "cpu_shares", "max_retry_count",
                       "wait", "wait_timeout", "destroy_grace_seconds", "must_run"}
# pulumi-docker `provider/resources.go`: docker_container is DeleteBeforeReplace.
PROVIDER_DELETE_BEFORE_REPLACE = {CONTAINER}
# schema.TypeSet attributes of docker_container: their order is not part of the state.
CONTAINER_SETS = {"envs", "labels", "volumes", "mounts", "ports", "networks_advanced",
                  "uploads", "group_adds", "security_opts", "tmpfs"}
CONTAINER_INPUTS = {
    "name", "image", "command", "entrypoints", "envs", "memory", "memory_swap", "healthcheck",
    "wait", "wait_timeout", "restart", "must_run", "networks_advanced", "mounts", "volumes",
    "ports", "user", "capabilities", "security_opts", "log_driver", "log_opts", "labels",
    "stop_signal", "stop_timeout", "destroy_grace_seconds", "read_only", "tmpfs", "uploads",
    "working_dir", "max_retry_count", "group_adds", "hostname",
}
COMMAND_INPUTS = {"create", "update", "delete", "stdin", "triggers", "interpreter",
                  "environment", "dir"}
REMOTE_COMMAND_INPUTS = {"connection", "create", "update", "delete", "stdin", "triggers"}
# pulumi-command 1.2.1 remote/connection.go: the fields the replay maps to `ssh` options;
# a password, an agent socket path or a proxy (bastion) fails by name.
CONNECTION_INPUTS = {"host", "port", "user", "host_key", "private_key", "dial_error_limit",
                     "per_dial_timeout"}
IMAGE_INPUTS = {"name", "keep_locally", "pull_triggers", "force_remove"}
NETWORK_INPUTS = {"name", "driver", "ipam_configs", "internal", "attachable", "labels"}
VOLUME_INPUTS = {"name", "driver", "labels"}
HEALTHCHECK_DURATIONS = ("interval", "timeout", "start_period")
# What `ssh` says when the connection or its handshake failed before any command ran.
DIAL_FAILURE = re.compile(r"kex_exchange_identification|Connection (reset|refused|closed) by|"
                          r"Connection timed out|ssh_exchange_identification|"
                          r"Could not resolve hostname")
DEFAULT_PARALLEL = 16


class ReplayError(Exception):
    pass


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


# --------------------------------------------------------------------- pure semantics


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                "m": 60_000_000_000, "h": 3_600_000_000_000}


def duration_ns(value: str | None) -> int:
    """A Go duration string (`time.ParseDuration`: "1m30s", "500ms", "0s") in nanoseconds."""
    if not value:
        return 0
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        raise ReplayError(f"duration {value!r} not understood")
    return round(sum(float(number) * _DURATION_NS[unit] for number, unit in parts))


def _fraction(value: int, scale: int) -> str:
    whole, rest = divmod(value, scale)
    if not rest:
        return str(whole)
    digits = str(rest).rjust(len(str(scale)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def go_duration(nanoseconds: int) -> str:
    """Go's `time.Duration.String()` (src/time/time.go): what the provider reads back."""
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < 1_000:
        return f"{nanoseconds}ns"
    if nanoseconds < 1_000_000:
        return f"{_fraction(nanoseconds, 1_000)}µs"
    if nanoseconds < 1_000_000_000:
        return f"{_fraction(nanoseconds, 1_000_000)}ms"
    hours, rest = divmod(nanoseconds, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = f"{_fraction(rest, 1_000_000_000)}s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{minutes}m{seconds}"
    return seconds


def read_back(type_: str, inputs: dict) -> dict:
    """The state the provider stores after creating or updating with `inputs`."""
    if type_ != CONTAINER or not inputs.get("healthcheck"):
        return inputs
    health = dict(inputs["healthcheck"])
    for key in HEALTHCHECK_DURATIONS:
        if key in health:
            health[key] = go_duration(duration_ns(health[key]))
    return {**inputs, "healthcheck": health}


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
        if key in sets and isinstance(new, dict) and isinstance(old, dict):
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


def plan_step(resource: RecordedResource, current: Applied | None) -> Plan:
    if current is None:
        return Plan("create")
    changed = frozenset(changed_inputs(resource.type, resource.plain, current.inputs))
    if not changed:
        return Plan("update") if current.init_errors else Plan("same")
    if resource.type in COMMANDS:
        # pulumi-command: replaceOnChanges ["triggers[*]"]; everything else updates.
        return Plan("replace" if "triggers" in changed else "update", changed)
    if resource.type == CONTAINER and changed <= CONTAINER_UPDATABLE:
        return Plan("update", changed)
    if resource.delete_before_replace_defined:
        delete_first = resource.delete_before_replace
    else:
        delete_first = resource.type in PROVIDER_DELETE_BEFORE_REPLACE
    return Plan("replace", changed, delete_first)


def preview(previous: ProgramRun, current: ProgramRun) -> dict[str, Plan]:
    """`pulumi preview` of `current` against the state `previous` left (an update that
    succeeded): the step each resource gets, by name; a resource the program no longer
    declares is deleted."""
    state = {resource.urn: Applied(resource.urn, resource.type, resource.name,
                                   read_back(resource.type, resource.plain))
             for resource in previous.resources if resource.custom}
    plans = {resource.name: plan_step(resource, state.pop(resource.urn, None))
             for resource in current.resources if resource.custom}
    plans.update({applied.name: Plan("delete") for applied in state.values()})
    return plans


def _check_inputs(resource: RecordedResource, inputs: dict, known: set[str]) -> None:
    unknown = sorted(set(inputs) - known)
    if unknown:
        raise ReplayError(f"{resource.name} ({resource.type}): input(s) {', '.join(unknown)} "
                          "not understood by the replay; map them in tests/harness/replay.py")


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


def dependency_graph(resources: list[RecordedResource],
                     everything: list[RecordedResource] = ()) -> dict[str, set[str]]:
    """urn → the urns (among `resources`) it waits for; fails on a cycle.

    A resource also waits for what its parents waited for (`everything` holds the
    components): the Python SDK registers a resource only once its parent's URN is known
    (`_prepare_resource` awaits `parent.urn`), and a component's URN is known only once its
    own registration, which waited for its `depends_on`, was answered
    (`_resolve_depends_on_urns`, which expands a component to its children: pulumi/pulumi
    #7732). So `HostFile(..., depends_on=[x])` holds back its install command too."""
    by_urn = {resource.urn: resource for resource in resources}
    all_by_urn = {resource.urn: resource for resource in (*everything, *resources)}

    def waits_for(resource: RecordedResource) -> set[str]:
        urns = {d for d in resource.dependencies if d in by_urn}
        if resource.provider in by_urn:
            # `_prepare_resource` awaits the provider reference (its URN and ID), known once
            # the provider was registered, which waited for the provider's own depends_on.
            urns.add(resource.provider)
        parent = all_by_urn.get(resource.parent)
        while parent is not None:
            if parent.urn in by_urn:
                urns.add(parent.urn)
            urns |= {d for d in parent.dependencies if d in by_urn}
            parent = all_by_urn.get(parent.parent)
        return urns

    graph = {resource.urn: waits_for(resource) for resource in resources}
    done: set[str] = set()

    def visit(urn: str, path: tuple[str, ...]) -> None:
        if urn in done:
            return
        if urn in path:
            raise ReplayError(f"dependency cycle through {by_urn[urn].name}")
        for dependency in graph[urn]:
            visit(dependency, (*path, urn))
        done.add(urn)

    for urn in graph:
        visit(urn, ())
    return graph


# --------------------------------------------------------------------- the engine


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
        self._run_graph(graph, lambda urn: self._step(by_urn[urn]))
        self._delete_at_end({resource.urn for resource in resources})

    def _run_graph(self, graph: dict[str, set[str]], step: Callable[[str], None]) -> None:
        """Each step once its dependencies succeeded, up to `parallel` at once; after a
        failure no new step starts and the first error is raised once the rest finished."""
        remaining = dict(graph)
        succeeded: set[str] = set()
        errors: list[BaseException] = []
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.parallel)) as pool:
            while True:
                if not errors:
                    ready = [urn for urn, needs in remaining.items() if needs <= succeeded]
                    for urn in ready[:max(1, self.parallel) - len(running)]:
                        del remaining[urn]
                        running[pool.submit(step, urn)] = urn
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    urn = running.pop(future)
                    if future.exception() is not None:
                        errors.append(future.exception())
                    else:
                        succeeded.add(urn)
        if errors:
            raise errors[0]

    def _step(self, resource: RecordedResource) -> None:
        if resource.type == DOCKER_PROVIDER:
            self._configure_provider(resource)
            return
        with self._lock:
            current = self.state.get(resource.urn)
            if current and current.pending_delete:
                current = None
        plan = plan_step(resource, current)
        if plan.action == "same":
            return
        if plan.action == "create":
            self._create(resource)
        elif plan.action == "update":
            assert current is not None
            self._update(resource, current, plan.changed)
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
            self._create(resource)

    def _condemn(self, current: Applied) -> None:
        """The old resource of a create-before-delete replacement: pending deletion."""
        with self._lock:
            self._replacements += 1
            old_urn = f"{current.urn}#replaced#{self._replacements}"
            del self.state[current.urn]
            current.urn = old_urn
            current.pending_delete = True
            self.state[old_urn] = current

    def _delete_at_end(self, declared: set[str]) -> None:
        """Pending deletions and undeclared resources, dependents first."""
        doomed = {urn: applied for urn, applied in self.state.items()
                  if applied.pending_delete or urn not in declared}
        for applied in doomed.values():
            if applied.protect:
                raise ReplayError(f"{applied.name} is protected and cannot be deleted "
                                  "(as `pulumi up` would refuse)")
        # Deleting in reverse: a resource waits for every doomed resource that depends on it.
        base = {urn.split("#replaced#")[0]: urn for urn in doomed}
        graph = {urn: set() for urn in doomed}
        for urn, applied in doomed.items():
            for dependency in applied.dependencies:
                if dependency in base and base[dependency] != urn:
                    graph[base[dependency]].add(urn)
        self._run_graph(graph, lambda urn: self._delete(doomed[urn]))

    # ----------------------------------------------------------------- steps

    def _timed(self, action: str, name: str, work: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return work()
        finally:
            with self._lock:
                self.events.append((action, name, started, time.monotonic()))

    def _real_inputs(self, resource: RecordedResource) -> dict:
        with self._lock:
            inputs = _substitute(resource.plain, self.substitutions)
        unknown = _placeholders(inputs)
        if unknown:
            # An output the engine does not know yet (e.g. the address of a container whose
            # create failed): Pulumi would not run this step with it.
            raise ReplayError(f"{resource.name}: input depends on an unknown output "
                              f"({', '.join(sorted(unknown))}); a dependency did not finish")
        return inputs

    def _create(self, resource: RecordedResource) -> None:
        creators = {CONTAINER: self._create_container, IMAGE: self._create_image,
                    NETWORK: self._create_network, VOLUME: self._create_volume,
                    LOCAL_COMMAND: self._run_command,
                    REMOTE_COMMAND: self._run_remote_command}
        if resource.type not in creators:
            raise ReplayError(f"{resource.name}: resource type {resource.type} is not "
                              "understood by the replay")
        inputs = self._real_inputs(resource)
        self._say(f"create {resource.name}")
        applied = Applied(urn=resource.urn, type=resource.type, name=resource.name,
                          inputs=read_back(resource.type, resource.plain),
                          protect=resource.protect,
                          dependencies=list(resource.dependencies),
                          provider=resource.provider)
        try:
            applied.real = self._timed("create", resource.name,
                                       lambda: creators[resource.type](resource, inputs,
                                                                       "create"))
        except _InitError as error:
            applied.real = error.real
            applied.init_errors = [str(error)]
            with self._lock:
                self.state[resource.urn] = applied
            raise ReplayError(f"{resource.name}: {error}") from error
        with self._lock:
            self.state[resource.urn] = applied
            self._learn(resource, applied.real)

    def _update(self, resource: RecordedResource, current: Applied,
                changed: frozenset[str]) -> None:
        inputs = self._real_inputs(resource)
        why = ", ".join(sorted(changed)) or "init errors of its create"
        self._say(f"update {resource.name}: {why}")
        if resource.type in COMMANDS:
            run = self._run_command if resource.type == LOCAL_COMMAND else \
                self._run_remote_command
            current.real = self._timed("update", resource.name,
                                       lambda: run(resource, inputs, "update"))
        elif resource.type == CONTAINER:
            def update_container() -> dict:
                name = current.real["name"]
                self._engine(resource.provider).request("POST", f"/containers/{name}/update", {
                    "Memory": inputs["memory"] * 1024 * 1024,
                    "MemorySwap": inputs.get("memory_swap", 0) * 1024 * 1024,
                    "RestartPolicy": self._restart_policy(inputs),
                })
                # The provider reads the container back after an update: its address is
                # known from now on (even if it never became healthy).
                return {**current.real, **self._container_facts(resource, name)}

            current.real = self._timed("update", resource.name, update_container)
        else:
            raise ReplayError(f"{resource.name}: {resource.type} cannot be updated in place")
        with self._lock:
            current.inputs = read_back(resource.type, resource.plain)
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
            if applied.type == CONTAINER:
                grace = int(applied.inputs.get("destroy_grace_seconds") or 0)
                engine.stop(applied.real["name"], grace)
                engine.remove_container(applied.real["name"])
            elif applied.type == NETWORK:
                engine.remove_network(applied.real["name"])
            elif applied.type == VOLUME:
                engine.remove_volume(applied.real["name"])
            elif applied.type == REMOTE_COMMAND and applied.inputs.get("delete"):
                # pulumi-command: delete runs with the connection and stdin of the state.
                stored = applied.real.get("inputs", {})
                self._ssh(applied.name, stored["connection"],
                          stored.get("delete") or applied.inputs["delete"], stored.get("stdin"))
            elif applied.type == LOCAL_COMMAND and applied.inputs.get("delete"):
                # pulumi-command: delete gets the stdin and environment of the state.
                stored = applied.real.get("inputs", {})
                self._run_script(applied.name, stored.get("delete") or applied.inputs["delete"],
                                 stored.get("stdin"), stored.get("interpreter"),
                                 stored.get("environment"), stored.get("dir"))

        self._timed("delete", applied.name, delete)
        with self._lock:
            self.state.pop(applied.urn, None)

    def _learn(self, resource: RecordedResource, real: dict) -> None:
        """Remember which real value stands for each placeholder the mocks produced."""
        for key in ("image_id", "ip_address"):
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
        """A Docker provider: its client from `host` and `ssh_opts` (terraform-provider-docker
        `Config.NewClient`: an ssh:// host through docker/cli's connection helper, i.e. the
        system `ssh … docker system dial-stdio`), pinged before its first resource
        (`providerConfigure`: "Error pinging Docker server"). The engine configures every
        provider at each update; a configuration is not a step, so nothing is logged."""
        inputs = self._real_inputs(resource)
        _check_inputs(resource, inputs, PROVIDER_INPUTS)
        host = inputs.get("host") or ""
        if host.startswith("ssh://"):
            options = inputs.get("ssh_opts") or []
            # Provider configuration reaches the plugin as strings: a list arrives as JSON.
            if isinstance(options, str):
                options = json.loads(options)
            if self.ssh_identity is not None:
                # What the operator's ssh-agent would offer the system ssh.
                options = [*options, "-o", f"IdentityFile={self.ssh_identity}",
                           "-o", "IdentitiesOnly=yes"]
            # The machine running `pulumi up` has ~/.ssh (a ControlPath may name it).
            Path(os.path.expanduser("~/.ssh")).mkdir(mode=0o700, exist_ok=True)
            try:
                engine: DockerEngine = DialStdioEngine(dial_stdio_command(host, options))
            except ValueError as error:
                raise ReplayError(f"{resource.name}: {error}") from error
        elif host in ("", f"unix://{SOCKET}"):
            engine = self.engine
        elif host.startswith("unix://"):
            engine = DockerEngine(host.removeprefix("unix://"))
        else:
            raise ReplayError(f"{resource.name}: Docker host {host!r} not understood by the "
                              "replay (unix:// and ssh:// are); map it in tests/harness/replay.py")
        try:
            engine.request("GET", "/_ping")
        except EngineError as error:
            raise ReplayError(f"{resource.name}: Error pinging Docker server: {error}") \
                from error
        with self._lock:
            self.engines[resource.urn] = engine

    # ----------------------------------------------------------------- per type

    def _create_image(self, resource: RecordedResource, inputs: dict, _action: str) -> dict:
        _check_inputs(resource, inputs, IMAGE_INPUTS)
        name = inputs["name"]
        local_name = self.image_map.get(name, name)
        engine = self._engine(resource.provider)
        image = engine.image(local_name)
        if image is None and self.pull is not None:
            self.pull(engine, local_name)
            image = engine.image(local_name)
        if image is None:
            raise ReplayError(f"{resource.name}: image {local_name!r} (for {name!r}) is not on "
                              "the engine; build it with tests/images/build-standins.sh or the "
                              "app image build")
        return {"name": local_name, "image_id": image["Id"], "mock_image_id": mock_image_id(name)}

    def _create_network(self, resource: RecordedResource, inputs: dict, _action: str) -> dict:
        _check_inputs(resource, inputs, NETWORK_INPUTS)
        subnets = [config["subnet"] for config in inputs.get("ipam_configs") or []]
        self._engine(resource.provider).create_network(
            inputs["name"], inputs.get("driver", "bridge"), subnets)
        return {"name": inputs["name"]}

    def _create_volume(self, resource: RecordedResource, inputs: dict, _action: str) -> dict:
        _check_inputs(resource, inputs, VOLUME_INPUTS)
        self._engine(resource.provider).create_volume(inputs["name"])
        return {"name": inputs["name"]}

    def _run_command(self, resource: RecordedResource, inputs: dict, action: str) -> dict:
        _check_inputs(resource, inputs, COMMAND_INPUTS)
        script = inputs.get(action) or inputs["create"]
        output = self._run_script(resource.name, script, inputs.get("stdin"),
                                  inputs.get("interpreter"), inputs.get("environment"),
                                  inputs.get("dir"))
        stored = {key: inputs.get(key) for key in
                  ("delete", "stdin", "interpreter", "environment", "dir")}
        return {"stdout": output, "inputs": stored}

    def _run_script(self, name: str, script: str, stdin: str | None,
                    interpreter: list[str] | None, environment: dict | None = None,
                    directory: str | None = None) -> str:
        command = [*(interpreter or ["/bin/sh", "-c"]), script]
        # pulumi-command local: stdin is attached only when non-empty.
        result = subprocess.run(command, input=stdin if stdin else None,
                                stdin=None if stdin else subprocess.DEVNULL,
                                capture_output=True, text=True,
                                timeout=600, env={**os.environ, **(environment or {})},
                                cwd=directory, check=False)
        if result.returncode != 0:
            raise ReplayError(f"{name}: command failed ({result.returncode})\n"
                              f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}")
        return result.stdout

    def _run_remote_command(self, resource: RecordedResource, inputs: dict,
                            action: str) -> dict:
        _check_inputs(resource, inputs, REMOTE_COMMAND_INPUTS)
        connection = inputs["connection"]
        unknown = sorted(set(connection) - CONNECTION_INPUTS)
        if unknown:
            raise ReplayError(f"{resource.name}: connection input(s) {', '.join(unknown)} not "
                              "understood by the replay; map them in tests/harness/replay.py")
        script = inputs.get(action) or inputs["create"]
        output = self._ssh(resource.name, connection, script, inputs.get("stdin"))
        stored = {key: inputs.get(key) for key in ("connection", "delete", "stdin")}
        return {"stdout": output, "inputs": stored}

    def _ssh(self, name: str, connection: dict, script: str, stdin: str | None) -> str:
        """One command over a new SSH connection, as pulumi-command 1.2.1 runs it
        (remote/commandOutputs.go: a session's `Run(cmd)`, which the server runs with the
        user's shell; stdin attached only when non-empty; the host key checked only when
        `host_key` is set, else any key accepted: connection.go's InsecureIgnoreHostKey).
        The key is the connection's `private_key`, else `self.ssh_identity` (what the agent
        would hold). Not modelled: the provider leaving the connection open afterwards."""
        host, port = connection["host"], int(connection.get("port") or 22)
        with tempfile.TemporaryDirectory(prefix="aiia-replay-ssh-") as scratch:
            options = ["-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null",
                       "-o", f"ConnectTimeout={connection.get('per_dial_timeout') or 15}",
                       "-o", "IdentitiesOnly=yes", "-p", str(port)]
            if connection.get("host_key"):
                known = Path(scratch, "known_hosts")
                address = host if port == 22 else f"[{host}]:{port}"
                known.write_text(f"{address} {connection['host_key']}\n")
                options += ["-o", "StrictHostKeyChecking=yes",
                            "-o", f"UserKnownHostsFile={known}"]
            else:
                options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
            identity = self.ssh_identity
            if connection.get("private_key"):
                identity = Path(scratch, "identity")
                identity.write_text(connection["private_key"])
                identity.chmod(0o600)
            if identity is None:
                raise ReplayError(f"{name}: no SSH key: give the connection a private_key or "
                                  "the Replay an ssh_identity")
            options += ["-i", str(identity)]
            user = connection.get("user") or "root"
            # connection.go `Dial`: a failed dial or handshake is retried (retry.Until) until
            # `dial_error_limit` dials failed; a command that ran is never retried.
            for dial in range(1, int(connection.get("dial_error_limit") or 10) + 1):
                result = subprocess.run(
                    ["ssh", *options, f"{user}@{host}", script],
                    input=stdin if stdin else None,
                    stdin=None if stdin else subprocess.DEVNULL,
                    capture_output=True, text=True, timeout=600, check=False)
                if result.returncode != 255 or not DIAL_FAILURE.search(result.stderr):
                    break
                self._say(f"{name}: dial {dial} failed ({result.stderr.strip()[-120:]})")
                time.sleep(min(dial, 5))
        if result.returncode != 0:
            raise ReplayError(f"{name}: command failed ({result.returncode}) over SSH\n"
                              f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}")
        return result.stdout

    @staticmethod
    def _restart_policy(inputs: dict) -> dict:
        restart = inputs.get("restart") or "no"
        policy = {"Name": restart}
        if restart == "on-failure":
            policy["MaximumRetryCount"] = inputs.get("max_retry_count") or 0
        return policy

    def _container_facts(self, resource: RecordedResource, name: str) -> dict:
        details = self._engine(resource.provider).container(name) or {}
        addresses = [network.get("IPAddress") for network in
                     details.get("NetworkSettings", {}).get("Networks", {}).values()]
        return {"name": name, "id": details.get("Id"),
                "ip_address": addresses[0] if addresses else "",
                "mock_ip_address": mock_ip_address(resource.name)}

    def _create_container(self, resource: RecordedResource, inputs: dict, _action: str) -> dict:
        _check_inputs(resource, inputs, CONTAINER_INPUTS)
        name = inputs["name"]
        health = inputs.get("healthcheck")
        networks = inputs.get("networks_advanced") or []
        binds, mounts = [], []
        for volume in inputs.get("volumes") or []:
            source = volume.get("host_path") or volume.get("volume_name")
            mode = "ro" if volume.get("read_only") else "rw"
            binds.append(f"{source}:{volume['container_path']}:{mode}")
        for mount in inputs.get("mounts") or []:
            mounts.append({"Type": mount.get("type", "bind"), "Source": mount.get("source"),
                           "Target": mount["target"], "ReadOnly": bool(mount.get("read_only"))})
        port_bindings: dict[str, list[dict]] = {}
        exposed: dict[str, dict] = {}
        for port in inputs.get("ports") or []:
            key = f"{port['internal']}/{port.get('protocol', 'tcp')}"
            exposed[key] = {}
            port_bindings.setdefault(key, []).append(
                {"HostIp": port.get("ip", "0.0.0.0"),  # noqa: S104 - as declared
                 "HostPort": str(port["external"])})
        capabilities = inputs.get("capabilities") or {}
        log_driver = inputs.get("log_driver") or "json-file"
        config: dict[str, Any] = {
            "Image": inputs["image"],
            "Cmd": inputs.get("command"),
            "Entrypoint": inputs.get("entrypoints"),
            "Env": inputs.get("envs") or [],
            "User": inputs.get("user") or "",
            "WorkingDir": inputs.get("working_dir") or "",
            "Hostname": inputs.get("hostname") or "",
            "Labels": {label["label"]: label["value"] for label in inputs.get("labels") or []},
            "StopSignal": inputs.get("stop_signal"),
            "StopTimeout": inputs.get("stop_timeout"),
            "ExposedPorts": exposed,
            "HostConfig": {
                "Memory": (inputs.get("memory") or 0) * 1024 * 1024,
                "MemorySwap": (inputs.get("memory_swap") or 0) * 1024 * 1024,
                "RestartPolicy": self._restart_policy(inputs),
                "LogConfig": {"Type": log_driver, "Config": inputs.get("log_opts") or {}},
                "SecurityOpt": inputs.get("security_opts") or [],
                "Binds": binds,
                "Mounts": mounts,
                "PortBindings": port_bindings,
                "CapAdd": capabilities.get("adds"),
                "CapDrop": capabilities.get("drops"),
                "ReadonlyRootfs": bool(inputs.get("read_only")),
                "Tmpfs": inputs.get("tmpfs") or {},
                "GroupAdd": inputs.get("group_adds"),
                "NetworkMode": networks[0]["name"] if networks else "bridge",
            },
            "NetworkingConfig": {"EndpointsConfig": {
                network["name"]: {"Aliases": network.get("aliases") or []}
                for network in networks[:1]}},
        }
        if health:
            config["Healthcheck"] = {
                "Test": health["tests"],
                "Interval": duration_ns(health.get("interval")),
                "Timeout": duration_ns(health.get("timeout")),
                "Retries": health.get("retries") or 0,
                "StartPeriod": duration_ns(health.get("start_period")),
            }
        config = {key: value for key, value in config.items() if value is not None}
        engine = self._engine(resource.provider)
        if engine.container(name) is not None:
            # Docker refuses a second container of one name; so does this, by name.
            raise ReplayError(f"a container named {name} already exists; creating another "
                              "of the same name fails (as it would under Pulumi)")
        engine.create_container(name, config)
        for network in networks[1:]:
            engine.request("POST", f"/networks/{network['name']}/connect",
                                {"Container": name,
                                 "EndpointConfig": {"Aliases": network.get("aliases") or []}})
        for upload in inputs.get("uploads") or []:
            engine.put_file(name, upload["file"], upload["content"].encode(),
                                 int(upload.get("permissions", "0644"), 8))
        if inputs.get("must_run", True):
            engine.start(name)
        if inputs.get("wait"):
            try:
                engine.wait_healthy(name, float(inputs.get("wait_timeout") or 60))
            except EngineError as error:
                # The id is set before the wait: the engine keeps the container, with init
                # errors and without the outputs a read would give (its address).
                raise _InitError(str(error), {"name": name}) from error
        return self._container_facts(resource, name)

    # ----------------------------------------------------------------- queries

    def container_name(self, resource_name: str) -> str:
        for applied in self.state.values():
            if applied.name == resource_name and applied.type == CONTAINER \
                    and not applied.pending_delete:
                return applied.real["name"]
        raise KeyError(resource_name)


class _InitError(Exception):
    """A create that made the resource but failed after (pulumi's `InitError`)."""

    def __init__(self, message: str, real: dict):
        super().__init__(message)
        self.real = real
