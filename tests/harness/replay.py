"""Test scaffolding: replay what the program declared (under mocks) onto a real Docker engine.

Production always goes through the Pulumi engine; nothing here is used by it. This exists
because the Pulumi CLI and its provider plugins cannot run on our machines, so the tests
show that what the program declares works by creating it for real:

- networks, volumes and images (upstream names mapped to the stand-ins under tests/images),
- containers, with every pulumi-docker `Container` input the program uses mapped to the
  Docker Engine API; an input the replay does not understand fails by name,
- `command.local` commands, run for real with their stdin.

Between two runs of the program (before/after a config change) it applies the difference
the way Pulumi does: creates and updates in dependency order, a changed input that
pulumi-docker cannot update in place replaces the resource (create-before-delete unless
`delete_before_replace`), and deletions of resources the program no longer declares (and
of replaced ones) come last, only when every create and update succeeded. When an update
fails, the replaced resources stay pending deletion and the *next* apply deletes them
first, before anything else (pulumi/pulumi#9979).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.harness.engine import DockerEngine, EngineError
from tests.harness.program import ProgramRun, RecordedResource

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
LOCAL_COMMAND = "command:local:Command"
SKIPPED_TYPES = ("pulumi:providers:", "pulumi:pulumi:StackReference")

# pulumi-docker (terraform-provider-docker) updates these container inputs in place;
# every other change replaces the container.
CONTAINER_UPDATABLE = {"memory", "memory_swap", "restart", "cpu_shares", "max_retry_count",
                       "wait", "wait_timeout", "destroy_grace_seconds", "must_run"}
CONTAINER_INPUTS = {
    "name", "image", "command", "entrypoints", "envs", "memory", "memory_swap", "healthcheck",
    "wait", "wait_timeout", "restart", "must_run", "networks_advanced", "mounts", "volumes",
    "ports", "user", "capabilities", "security_opts", "log_driver", "log_opts", "labels",
    "stop_signal", "stop_timeout", "destroy_grace_seconds", "read_only", "tmpfs", "uploads",
    "working_dir", "max_retry_count", "group_adds", "hostname",
}
COMMAND_INPUTS = {"create", "update", "delete", "stdin", "triggers", "interpreter",
                  "environment", "dir"}
IMAGE_INPUTS = {"name", "keep_locally", "pull_triggers", "force_remove"}
NETWORK_INPUTS = {"name", "driver", "ipam_configs", "internal", "attachable", "labels"}
VOLUME_INPUTS = {"name", "driver", "labels"}


class ReplayError(Exception):
    pass


@dataclass
class Applied:
    """One resource as it exists on the engine: its inputs (as the program declared them)
    and the real values that replaced the mocks' placeholders."""

    urn: str
    type: str
    name: str
    inputs: dict
    real: dict = field(default_factory=dict)
    protect: bool = False
    pending_delete: bool = False


def _duration_ns(value: str | None) -> int:
    if not value:
        return 0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    if not match:
        raise ReplayError(f"duration {value!r} not understood")
    scale = {"ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}[match.group(2)]
    return int(float(match.group(1)) * scale)


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


def _ordered(resources: list[RecordedResource]) -> list[RecordedResource]:
    """Dependency order, keeping the program's registration order where it is free."""
    by_urn = {resource.urn: resource for resource in resources}
    done: set[str] = set()
    ordered: list[RecordedResource] = []

    def visit(resource: RecordedResource, path: tuple[str, ...]) -> None:
        if resource.urn in done:
            return
        if resource.urn in path:
            raise ReplayError(f"dependency cycle through {resource.name}")
        for dependency in resource.dependencies:
            if dependency in by_urn:
                visit(by_urn[dependency], (*path, resource.urn))
        done.add(resource.urn)
        ordered.append(resource)

    for resource in resources:
        visit(resource, ())
    return ordered


class Replay:
    """Applies program runs to the engine one after another, like successive `pulumi up`s."""

    def __init__(self, engine: DockerEngine, image_map: dict[str, str],
                 log: Callable[[str], None] = print):
        self.engine = engine
        self.image_map = image_map
        self.log = log
        self.state: dict[str, Applied] = {}
        self.substitutions: dict[str, str] = {}
        # (action, resource name, monotonic start, monotonic end) of every step, in order.
        self.events: list[tuple[str, str, float, float]] = []

    # ----------------------------------------------------------------- the update

    def apply(self, run: ProgramRun) -> None:
        """One `pulumi up` of `run`; raises (like a failed update) when a step fails."""
        for applied in [a for a in self.state.values() if a.pending_delete]:
            self._delete(applied)
        resources = [r for r in run.resources
                     if r.custom and not r.type.startswith(SKIPPED_TYPES)]
        declared = {resource.urn for resource in resources}
        replaced: list[Applied] = []
        try:
            for resource in _ordered(resources):
                self._converge(resource, replaced)
        except Exception:
            for applied in replaced:
                applied.pending_delete = True
            raise
        for applied in replaced:
            self._delete(applied)
        undeclared = [a for a in self.state.values() if a.urn not in declared]
        for applied in reversed(undeclared):
            self._delete(applied)

    def _converge(self, resource: RecordedResource, replaced: list[Applied]) -> None:
        inputs = resource.plain
        current = self.state.get(resource.urn)
        if current and current.inputs == inputs:
            return
        if current is None:
            self._create(resource, inputs)
            return
        changed = {key for key in set(inputs) | set(current.inputs)
                   if inputs.get(key) != current.inputs.get(key)}
        if self._updatable(resource.type, changed):
            self._update(resource, current, inputs, changed)
            return
        self.log(f"replace {resource.name}: {', '.join(sorted(changed))} changed")
        if resource.delete_before_replace:
            self._delete(current)
            self._create(resource, inputs)
            return
        old_urn = f"{resource.urn}#replaced#{len(replaced)}"
        self.state[old_urn] = Applied(urn=old_urn, type=current.type, name=current.name,
                                      inputs=current.inputs, real=current.real,
                                      protect=current.protect)
        replaced.append(self.state[old_urn])
        del self.state[resource.urn]
        self._create(resource, inputs)

    @staticmethod
    def _updatable(type_: str, changed: set[str]) -> bool:
        if type_ == LOCAL_COMMAND:
            return True  # the program always sets `update`; triggers then update too
        if type_ == CONTAINER:
            return changed <= CONTAINER_UPDATABLE
        return False

    # ----------------------------------------------------------------- steps

    def _create(self, resource: RecordedResource, inputs: dict) -> None:
        real_inputs = _substitute(inputs, self.substitutions)
        creators = {CONTAINER: self._create_container, IMAGE: self._create_image,
                    NETWORK: self._create_network, VOLUME: self._create_volume,
                    LOCAL_COMMAND: self._run_command}
        if resource.type not in creators:
            raise ReplayError(f"{resource.name}: resource type {resource.type} is not "
                              "understood by the replay")
        self.log(f"create {resource.name}")
        started = time.monotonic()
        try:
            real = creators[resource.type](resource, real_inputs, "create")
        finally:
            self.events.append(("create", resource.name, started, time.monotonic()))
        self.state[resource.urn] = Applied(urn=resource.urn, type=resource.type,
                                           name=resource.name, inputs=inputs, real=real,
                                           protect=resource.protect)
        self._learn(resource, real)

    def _update(self, resource: RecordedResource, current: Applied, inputs: dict,
                changed: set[str]) -> None:
        self.log(f"update {resource.name}: {', '.join(sorted(changed))}")
        started = time.monotonic()
        real_inputs = _substitute(inputs, self.substitutions)
        if resource.type == LOCAL_COMMAND:
            try:
                current.real = self._run_command(resource, real_inputs, "update")
            finally:
                self.events.append(("update", resource.name, started, time.monotonic()))
        else:
            self.events.append(("update", resource.name, started, started))
            self.engine.request("POST", f"/containers/{current.real['name']}/update", {
                "Memory": real_inputs["memory"] * 1024 * 1024,
                "MemorySwap": real_inputs.get("memory_swap", 0) * 1024 * 1024,
                "RestartPolicy": self._restart_policy(real_inputs),
            })
        current.inputs = inputs

    def _delete(self, applied: Applied) -> None:
        if applied.protect:
            raise ReplayError(f"{applied.name} is protected and cannot be deleted "
                              "(as `pulumi up` would refuse)")
        self.log(f"delete {applied.name}")
        started = time.monotonic()
        if applied.type == CONTAINER:
            grace = int(applied.inputs.get("destroy_grace_seconds") or 0)
            self.engine.stop(applied.real["name"], grace)
            self.engine.remove_container(applied.real["name"])
        elif applied.type == NETWORK:
            self.engine.remove_network(applied.real["name"])
        elif applied.type == VOLUME:
            self.engine.remove_volume(applied.real["name"])
        elif applied.type == LOCAL_COMMAND and applied.inputs.get("delete"):
            self._run_script(applied.name, applied.inputs["delete"], None,
                             applied.inputs.get("interpreter"))
        self.state.pop(applied.urn, None)
        self.events.append(("delete", applied.name, started, time.monotonic()))

    def _learn(self, resource: RecordedResource, real: dict) -> None:
        """Remember which real value stands for each placeholder the mocks produced."""
        for key in ("image_id", "ip_address"):
            mock_value = real.get(f"mock_{key}")
            if mock_value and real.get(key):
                self.substitutions[mock_value] = real[key]

    # ----------------------------------------------------------------- per type

    def _create_image(self, resource: RecordedResource, inputs: dict, _action: str) -> dict:
        _check_inputs(resource, inputs, IMAGE_INPUTS)
        name = inputs["name"]
        local_name = self.image_map.get(name, name)
        image = self.engine.image(local_name)
        if image is None:
            raise ReplayError(f"{resource.name}: image {local_name!r} (for {name!r}) is not on "
                              "the engine; build it with tests/images/build-standins.sh or the "
                              "app image build")
        from tests.harness.program import mock_image_id

        return {"name": local_name, "image_id": image["Id"], "mock_image_id": mock_image_id(name)}

    def _create_network(self, resource: RecordedResource, inputs: dict, _action: str) -> dict:
        _check_inputs(resource, inputs, NETWORK_INPUTS)
        subnets = [config["subnet"] for config in inputs.get("ipam_configs") or []]
        self.engine.create_network(inputs["name"], inputs.get("driver", "bridge"), subnets)
        return {"name": inputs["name"]}

    def _create_volume(self, resource: RecordedResource, inputs: dict, _action: str) -> dict:
        _check_inputs(resource, inputs, VOLUME_INPUTS)
        self.engine.create_volume(inputs["name"])
        return {"name": inputs["name"]}

    def _run_command(self, resource: RecordedResource, inputs: dict, action: str) -> dict:
        _check_inputs(resource, inputs, COMMAND_INPUTS)
        script = inputs.get(action) or inputs["create"]
        output = self._run_script(resource.name, script, inputs.get("stdin"),
                                  inputs.get("interpreter"), inputs.get("environment"),
                                  inputs.get("dir"))
        return {"stdout": output}

    def _run_script(self, name: str, script: str, stdin: str | None,
                    interpreter: list[str] | None, environment: dict | None = None,
                    directory: str | None = None) -> str:
        command = [*(interpreter or ["/bin/sh", "-c"]), script]
        result = subprocess.run(command, input=stdin or "", capture_output=True, text=True,
                                timeout=600, env={**os.environ, **(environment or {})},
                                cwd=directory, check=False)
        if result.returncode != 0:
            raise ReplayError(f"{name}: command failed ({result.returncode})\n"
                              f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}")
        return result.stdout

    @staticmethod
    def _restart_policy(inputs: dict) -> dict:
        restart = inputs.get("restart") or "no"
        policy = {"Name": restart}
        if restart == "on-failure":
            policy["MaximumRetryCount"] = inputs.get("max_retry_count") or 0
        return policy

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
                "Interval": _duration_ns(health.get("interval")),
                "Timeout": _duration_ns(health.get("timeout")),
                "Retries": health.get("retries") or 0,
                "StartPeriod": _duration_ns(health.get("start_period")),
            }
        config = {key: value for key, value in config.items() if value is not None}
        self._refuse_name_clash(name)
        self.engine.create_container(name, config)
        for network in networks[1:]:
            self.engine.request("POST", f"/networks/{network['name']}/connect",
                                {"Container": name,
                                 "EndpointConfig": {"Aliases": network.get("aliases") or []}})
        for upload in inputs.get("uploads") or []:
            self.engine.put_file(name, upload["file"], upload["content"].encode(),
                                 int(upload.get("permissions", "0644"), 8))
        if inputs.get("must_run", True):
            self.engine.start(name)
        if inputs.get("wait"):
            try:
                self.engine.wait_healthy(name, float(inputs.get("wait_timeout") or 60))
            except EngineError as error:
                # Like pulumi-docker: the resource exists (tainted) and the update fails.
                self.state[resource.urn] = Applied(urn=resource.urn, type=CONTAINER,
                                                   name=resource.name, inputs=resource.plain,
                                                   real={"name": name})
                raise ReplayError(f"{resource.name}: {error}") from error
        details = self.engine.container(name) or {}
        addresses = [network.get("IPAddress") for network in
                     details.get("NetworkSettings", {}).get("Networks", {}).values()]
        from tests.harness.program import mock_ip_address

        return {"name": name, "id": details.get("Id"),
                "ip_address": addresses[0] if addresses else "",
                "mock_ip_address": mock_ip_address(resource.name)}

    def _refuse_name_clash(self, name: str) -> None:
        """Docker refuses a second container of one name; so does this, by name."""
        if self.engine.container(name) is not None:
            raise ReplayError(f"a container named {name} already exists; creating another "
                              "of the same name fails (as it would under Pulumi)")

    # ----------------------------------------------------------------- queries

    def container_name(self, resource_name: str) -> str:
        for applied in self.state.values():
            if applied.name == resource_name and applied.type == CONTAINER:
                return applied.real["name"]
        raise KeyError(resource_name)
