"""The Docker provider: pulumi-docker 5.2.0, wrapping kreuzwerker/terraform-provider-docker,
on the Docker Engine API.

Networks, volumes and images (upstream names mapped to the stand-ins under tests/images)
and containers: every pulumi-docker `Container` input the program uses mapped to the
Docker Engine API; an input the replay does not understand fails by name.

- The provider (`pulumi:providers:docker`, `configure`): its client follows
  terraform-provider-docker `internal/provider/config.go` `NewClient`: an `ssh://` host goes
  through docker/cli's connection helper (`cli/connhelper/connhelper.go`,
  `cli/connhelper/ssh/ssh.go`): the *system* `ssh` with the provider's `ssh_opts`,
  `-o ConnectTimeout=30` unless they set one, `-T`, then
  `-l user -p port -- host docker system dial-stdio`, HTTP spoken over its stdin and
  stdout; the identity is the one an ssh-agent would offer (`ssh_identity`). The client is
  pinged first (`providerConfigure`: "Error pinging Docker server"), so a refused host key
  or a missing docker CLI on the host fails the update before any Docker step (schedule.py
  configures it before any resource made through it).
- Replacement: pulumi-docker marks `docker_container` `DeleteBeforeReplace: true`
  (`provider/resources.go`); the engine uses that answer unless the program set
  `delete_before_replace` (steps.py). The inputs updated in place are those
  `resourceDockerContainerUpdate` handles (terraform-provider-docker
  `internal/provider/resource_docker_container_funcs.go`); every other attribute is
  `ForceNew` in `resource_docker_container.go`.
- A container whose health wait fails already has its id (`resourceDockerContainerCreate`:
  `d.SetId` before the `wait` loop), so the engine keeps it with init errors (`InitError`)
  and the update fails. The provider's update does not run the health wait
  (pulumi/pulumi#21458), and it never reads the container back: v4.5.0
  `resourceDockerContainerUpdate` ends in `return nil` (resource_docker_container_funcs.go
  line 1076), while only Create ends in `resourceDockerContainerRead` (line 673), the one
  place `network_data` is set (line 807). So the address of a container whose create
  failed after its id stays unknown on every later `up` until a `pulumi refresh`.
- Read-back (`read_back`): the state holds what the provider reads back, not what was
  declared. Healthcheck durations are read back in Go's canonical form (`"60s"` →
  `"1m0s"`, `resourceDockerContainerRead` formats `time.Duration`), so a declaration in
  another form differs from state on every run. Set-typed attributes (`CONTAINER_SETS`:
  `schema.TypeSet` in `resource_docker_container.go`) are compared without regard to order
  (steps.py).
- A health check's `start_interval` (pulumi-docker 5.2.0 `ContainerHealthcheckArgs`,
  terraform-provider-docker v4.5.0 `healthcheck.start_interval`, schema default "0s") is
  sent as `Healthcheck.StartInterval` in nanoseconds, left out when zero (`omitempty`). The
  provider's client refuses a non-zero one when the API version it negotiated is below
  1.44, before the create request (`refuse_what_the_client_cannot_send`); an engine of 1.44
  or later honours it (moby v26.1 `daemon/health.go` `monitor`: the probe interval while the
  container is starting, within its start period).
- Images: the Replay's `pull(engine, image)` (the registry's stand-in) brings an image
  missing from the provider's engine there in the `RemoteImage` step.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.engine import (
    SOCKET,
    DialStdioEngine,
    DockerEngine,
    EngineError,
    dial_stdio_command,
)
from tests.harness.program import RecordedResource, mock_image_id, mock_ip_address, mock_subnet
from tests.harness.replay.errors import InitError, ReplayError, check_inputs

MAPPED_IN = "tests/harness/replay/docker_provider.py"

CONTAINER = "docker:index/container:Container"
IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
RESOURCES = (CONTAINER, IMAGE, NETWORK, VOLUME)
DOCKER_PROVIDER = "pulumi:providers:docker"
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
    "working_dir", "max_retry_count", "group_adds", "hostname", "network_mode",
}
IMAGE_INPUTS = {"name", "keep_locally", "pull_triggers", "force_remove"}
NETWORK_INPUTS = {"name", "driver", "ipam_configs", "internal", "attachable", "labels"}
VOLUME_INPUTS = {"name", "driver", "labels"}
HEALTHCHECK_DURATIONS = ("interval", "timeout", "start_period", "start_interval")
# The Engine API version from which the provider's client sends a health check's
# StartInterval (docker/docker v28.5.2 `client/container_create.go`).
START_INTERVAL_API = "1.44"


# --------------------------------------------------------------------- read-back

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


# --------------------------------------------------------------------- the provider


def configure(resource: RecordedResource, inputs: dict, default: DockerEngine,
              ssh_identity: Path | None) -> DockerEngine:
    """A Docker provider: its client from `host` and `ssh_opts` (terraform-provider-docker
    `Config.NewClient`: an ssh:// host through docker/cli's connection helper, i.e. the
    system `ssh … docker system dial-stdio`), pinged before its first resource
    (`providerConfigure`: "Error pinging Docker server"), which negotiates the API version
    its requests name from then on (`client.WithAPIVersionNegotiation()` in `NewClient`; see
    tests/harness/engine.py `negotiated_api_version`). `default` is the engine of a
    provider that names no host (or the default socket)."""
    check_inputs(resource, inputs, PROVIDER_INPUTS, MAPPED_IN)
    host = inputs.get("host") or ""
    if host.startswith("ssh://"):
        options = inputs.get("ssh_opts") or []
        # Provider configuration reaches the plugin as strings: a list arrives as JSON.
        if isinstance(options, str):
            options = json.loads(options)
        if ssh_identity is not None:
            # What the operator's ssh-agent would offer the system ssh.
            options = [*options, "-o", f"IdentityFile={ssh_identity}",
                       "-o", "IdentitiesOnly=yes"]
        # The machine running `pulumi up` has ~/.ssh (a ControlPath may name it).
        Path(os.path.expanduser("~/.ssh")).mkdir(mode=0o700, exist_ok=True)
        try:
            engine: DockerEngine = DialStdioEngine(dial_stdio_command(host, options))
        except ValueError as error:
            raise ReplayError(f"{resource.name}: {error}") from error
    elif host in ("", f"unix://{SOCKET}"):
        engine = default
    elif host.startswith("unix://"):
        engine = DockerEngine(host.removeprefix("unix://"))
    else:
        raise ReplayError(f"{resource.name}: Docker host {host!r} not understood by the "
                          f"replay (unix:// and ssh:// are); map it in {MAPPED_IN}")
    try:
        engine.negotiate()
    except EngineError as error:
        raise ReplayError(f"{resource.name}: Error pinging Docker server: {error}") \
            from error
    return engine


# --------------------------------------------------------------------- per type


def create(engine: DockerEngine, resource: RecordedResource, inputs: dict,
           image_map: dict[str, str],
           pull: Callable[[DockerEngine, str], None] | None) -> dict:
    """Creates a resource of one of `RESOURCES`: the real values the state keeps."""
    if resource.type == IMAGE:
        return create_image(engine, resource, inputs, image_map, pull)
    creators = {CONTAINER: create_container, NETWORK: create_network, VOLUME: create_volume}
    return creators[resource.type](engine, resource, inputs)


def create_image(engine: DockerEngine, resource: RecordedResource, inputs: dict,
                 image_map: dict[str, str],
                 pull: Callable[[DockerEngine, str], None] | None) -> dict:
    check_inputs(resource, inputs, IMAGE_INPUTS, MAPPED_IN)
    name = inputs["name"]
    local_name = image_map.get(name, name)
    image = engine.image(local_name)
    if image is None and pull is not None:
        pull(engine, local_name)
        image = engine.image(local_name)
    if image is None:
        raise ReplayError(f"{resource.name}: image {local_name!r} (for {name!r}) is not on "
                          "the engine; build it with tests/images/build-standins.sh or the "
                          "app image build")
    return {"name": local_name, "image_id": image["Id"], "mock_image_id": mock_image_id(name)}


def create_network(engine: DockerEngine, resource: RecordedResource, inputs: dict) -> dict:
    check_inputs(resource, inputs, NETWORK_INPUTS, MAPPED_IN)
    configs = inputs.get("ipam_configs") or []
    engine.create_network(inputs["name"], inputs.get("driver", "bridge"),
                          [config["subnet"] for config in configs],
                          [config.get("ip_range") for config in configs],
                          [config.get("gateway") for config in configs])
    # resourceDockerNetworkRead: ipam_config is read back, the subnet Docker picked included.
    created = engine.request("GET", f"/networks/{inputs['name']}")
    subnets = [config.get("Subnet") for config in (created.get("IPAM") or {}).get("Config") or []]
    return {"name": inputs["name"], "subnet": subnets[0] if subnets else "",
            "mock_subnet": "" if configs else mock_subnet(resource.name)}


def create_volume(engine: DockerEngine, resource: RecordedResource, inputs: dict) -> dict:
    check_inputs(resource, inputs, VOLUME_INPUTS, MAPPED_IN)
    engine.create_volume(inputs["name"])
    return {"name": inputs["name"]}


def restart_policy(inputs: dict) -> dict:
    restart = inputs.get("restart") or "no"
    policy = {"Name": restart}
    if restart == "on-failure":
        policy["MaximumRetryCount"] = inputs.get("max_retry_count") or 0
    return policy


def container_facts(engine: DockerEngine, resource: RecordedResource, name: str) -> dict:
    details = engine.container(name) or {}
    addresses = [network.get("IPAddress") for network in
                 details.get("NetworkSettings", {}).get("Networks", {}).values()]
    return {"name": name, "id": details.get("Id"),
            "ip_address": addresses[0] if addresses else "",
            "mock_ip_address": mock_ip_address(resource.name)}


def _storage(inputs: dict) -> tuple[list[str], list[dict]]:
    """`volumes` as the Engine API's Binds, `mounts` as its Mounts."""
    binds, mounts = [], []
    for volume in inputs.get("volumes") or []:
        source = volume.get("host_path") or volume.get("volume_name")
        mode = "ro" if volume.get("read_only") else "rw"
        binds.append(f"{source}:{volume['container_path']}:{mode}")
    for mount in inputs.get("mounts") or []:
        mounts.append({"Type": mount.get("type", "bind"), "Source": mount.get("source"),
                       "Target": mount["target"], "ReadOnly": bool(mount.get("read_only"))})
    return binds, mounts


def _ports(inputs: dict) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """`ports` as the Engine API's ExposedPorts and PortBindings."""
    port_bindings: dict[str, list[dict]] = {}
    exposed: dict[str, dict] = {}
    for port in inputs.get("ports") or []:
        key = f"{port['internal']}/{port.get('protocol', 'tcp')}"
        exposed[key] = {}
        port_bindings.setdefault(key, []).append(
            {"HostIp": port.get("ip", "0.0.0.0"),  # noqa: S104 - as declared
             "HostPort": str(port["external"])})
    return exposed, port_bindings


def endpoint_config(network: dict) -> dict:
    """A `networks_advanced` entry as the Engine API's EndpointSettings: its aliases and a
    fixed address (`ipv4_address`: IPAMConfig.IPv4Address, as `docker run --ip`)."""
    config: dict[str, Any] = {"Aliases": network.get("aliases") or []}
    if network.get("ipv4_address"):
        config["IPAMConfig"] = {"IPv4Address": network["ipv4_address"]}
    return config


def container_config(inputs: dict) -> dict:
    """The Engine API's create body for a container's inputs (its first network is the
    NetworkMode; the others are connected after the create)."""
    health = inputs.get("healthcheck")
    networks = inputs.get("networks_advanced") or []
    binds, mounts = _storage(inputs)
    exposed, port_bindings = _ports(inputs)
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
            "RestartPolicy": restart_policy(inputs),
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
            # `network_mode` as declared (resourceDockerContainerCreate:
            # hostConfig.NetworkMode from it, "none" for a container with no network).
            "NetworkMode": inputs.get("network_mode") or (
                networks[0]["name"] if networks else "bridge"),
        },
        "NetworkingConfig": {"EndpointsConfig": {
            network["name"]: endpoint_config(network) for network in networks[:1]}},
    }
    if health:
        config["Healthcheck"] = {
            "Test": health["tests"],
            "Interval": duration_ns(health.get("interval")),
            "Timeout": duration_ns(health.get("timeout")),
            "Retries": health.get("retries") or 0,
            "StartPeriod": duration_ns(health.get("start_period")),
        }
        # terraform-provider-docker v4.5.0 `createContainerConfig` parses `start_interval`
        # (schema default "0s") into HealthConfig.StartInterval, a `json:",omitempty"` field
        # (moby/docker-image-spec `HealthcheckConfig`): an unset one is not sent at all.
        start_interval = duration_ns(health.get("start_interval"))
        if start_interval:
            config["Healthcheck"]["StartInterval"] = start_interval
    return {key: value for key, value in config.items() if value is not None}


def refuse_what_the_client_cannot_send(engine: DockerEngine, config: dict) -> None:
    """The client's own refusals, before any request: docker/docker v28.5.2
    `client/container_create.go` `ContainerCreate` fails a non-zero health-check
    StartInterval when the negotiated version is below 1.44 (`NewVersionError`, message from
    `client/errors.go`), and terraform-provider-docker wraps it ("Unable to create
    container: …", before `d.SetId`: a plain error, nothing in the state). An engine of 1.44
    or later takes it; one that is older is never asked."""
    version = engine.api_version
    start_interval = (config.get("Healthcheck") or {}).get("StartInterval")
    if start_interval and version is not None and not _api_at_least(version, START_INTERVAL_API):
        raise ReplayError(
            'Unable to create container: "specify health-check start interval" requires API '
            f"version {START_INTERVAL_API}, but the Docker daemon API version is {version}")


def _api_at_least(version: str, minimum: str) -> bool:
    def number(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))
    return number(version) >= number(minimum)


def create_container(engine: DockerEngine, resource: RecordedResource, inputs: dict) -> dict:
    """`resourceDockerContainerCreate`: create, then (after the id is set) connect, upload,
    start and the health wait; a failure after the id is an `InitError`."""
    check_inputs(resource, inputs, CONTAINER_INPUTS, MAPPED_IN)
    name = inputs["name"]
    networks = inputs.get("networks_advanced") or []
    config = container_config(inputs)
    refuse_what_the_client_cannot_send(engine, config)
    if engine.container(name) is not None:
        # Docker refuses a second container of one name; so does this, by name.
        raise ReplayError(f"a container named {name} already exists; creating another "
                          "of the same name fails (as it would under Pulumi)")
    engine.create_container(name, config)
    # `d.SetId(retContainer.ID)` comes right after ContainerCreate, before the network
    # connects, the uploads, ContainerStart and the health wait (kreuzwerker/terraform-
    # provider-docker internal/provider/resource_docker_container_funcs.go,
    # resourceDockerContainerCreate): a failure in any of them is an init error; the engine
    # keeps the container, without the outputs a read would give (its address).
    try:
        _connect_upload_start_wait(engine, name, inputs, networks)
    except EngineError as error:
        raise InitError(str(error), {"name": name}) from error
    return container_facts(engine, resource, name)


def _connect_upload_start_wait(engine: DockerEngine, name: str, inputs: dict,
                               networks: list[dict]) -> None:
    for network in networks[1:]:
        engine.request("POST", f"/networks/{network['name']}/connect",
                       {"Container": name, "EndpointConfig": endpoint_config(network)})
    for upload in inputs.get("uploads") or []:
        engine.put_file(name, upload["file"], upload["content"].encode(),
                        int(upload.get("permissions", "0644"), 8))
    if inputs.get("must_run", True):
        engine.start(name)
    if inputs.get("wait"):
        engine.wait_healthy(name, float(inputs.get("wait_timeout") or 60))


def update_container(engine: DockerEngine, resource: RecordedResource, inputs: dict,
                     real: dict) -> dict:
    """`resourceDockerContainerUpdate`: `docker update` of what it applies in place; no
    health wait (pulumi/pulumi#21458)."""
    name = real["name"]
    engine.request("POST", f"/containers/{name}/update", {
        "Memory": inputs["memory"] * 1024 * 1024,
        "MemorySwap": inputs.get("memory_swap", 0) * 1024 * 1024,
        "RestartPolicy": restart_policy(inputs),
    })
    # No read-back: v4.5.0 resourceDockerContainerUpdate returns nil after its
    # ContainerUpdate (resource_docker_container_funcs.go:1076), so what the state held (no
    # address after a failed create) is what it keeps.
    return dict(real)


def delete(engine: DockerEngine, type_: str, inputs: dict, real: dict) -> None:
    """Deletes what a resource of `type_` made (an image stays on the engine)."""
    if type_ == CONTAINER:
        grace = int(inputs.get("destroy_grace_seconds") or 0)
        engine.stop(real["name"], grace)
        engine.remove_container(real["name"])
    elif type_ == NETWORK:
        engine.remove_network(real["name"])
    elif type_ == VOLUME:
        engine.remove_volume(real["name"])
