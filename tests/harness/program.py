"""Test scaffolding: run the Pulumi program under Pulumi's own mocks and record everything.

Every resource the program registers is recorded in declaration order with its inputs
(secrets keep their secret marker), parent, dependencies and options, so unit tests
assert on what `pulumi up` would be asked to do, and the e2e replay can create it on a
real Docker engine. This is not how production runs: production always goes through the
Pulumi engine.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import runpy
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[2]
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def reveal(value: Any) -> Any:
    """The plain value behind secret markers, recursively."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {key: reveal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [reveal(item) for item in value]
    return value


def snake_case(value: Any) -> Any:
    """Wire names (camelCase) to the Python SDK's argument names, recursively; whole numbers
    back to int (Pulumi's wire format carries every number as a double)."""
    if isinstance(value, dict):
        return {re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower(): snake_case(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [snake_case(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def contains_secret(value: Any) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(contains_secret(item) for item in value)
    return False


@dataclass
class RecordedResource:
    type: str
    name: str
    urn: str
    inputs: dict
    parent: str
    dependencies: list[str]
    protect: bool
    delete_before_replace: bool
    custom: bool
    outputs: dict = field(default_factory=dict)
    # The program set delete_before_replace explicitly (True or False); otherwise the
    # engine takes the provider's answer.
    delete_before_replace_defined: bool = False
    # The URN of the explicit provider the resource was registered with ("" for none).
    provider: str = ""
    # The program's ignore_changes, as the Python argument names (networks_advanced, …).
    ignore_changes: list[str] = field(default_factory=list)

    @property
    def plain(self) -> dict:
        """Inputs with secrets revealed and Python argument names (memory_swap, …)."""
        return snake_case(reveal(self.inputs))


# What the engine answers a registration in a preview: (the resource as registered, the
# id and outputs the mocks gave it) → (id, outputs). An empty id and an output left out are
# unknown to the program (the Python SDK's `_resolve_outputs` in a dry run);
# tests/harness/replay/preview.py answers as the engine and the providers do.
PreviewAnswer = Callable[[RecordedResource, str, dict], tuple[str, dict]]


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: _Mocks, preview: PreviewAnswer | None = None):
        super().__init__(mocks)
        self.recorded: list[RecordedResource] = []
        self._mocks = mocks
        self._preview = preview

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        recorded = RecordedResource(
            type=request.type, name=request.name, urn=response.urn,
            inputs=rpc.deserialize_properties(request.object),
            parent=request.parent, dependencies=list(request.dependencies),
            protect=bool(request.protect), delete_before_replace=request.deleteBeforeReplace,
            delete_before_replace_defined=request.deleteBeforeReplaceDefined,
            custom=request.custom, provider=request.provider.rsplit("::", 1)[0],
            ignore_changes=[snake_case({name: None}).popitem()[0]
                            for name in request.ignoreChanges],
            outputs=self.resources[response.urn].state if response.urn in self.resources
            else {},
        )
        self.recorded.append(recorded)
        if self._preview is None or not request.custom:
            return response
        id_, outputs = self._preview(recorded, response.id, recorded.outputs)
        # Serialized as MockMonitor.RegisterResource serializes the mocks' state.
        return resource_pb2.RegisterResourceResponse(
            urn=response.urn, id=id_, object=_sync_await(rpc.serialize_properties(outputs, {})))

    def ReadResource(self, request):  # noqa: N802 - gRPC method name (StackReference reads)
        response = super().ReadResource(request)
        self.recorded.append(RecordedResource(
            type=request.type, name=request.name, urn=response.urn,
            inputs=rpc.deserialize_properties(request.properties), parent=request.parent,
            dependencies=list(request.dependencies), protect=False,
            delete_before_replace=False, custom=True,
        ))
        return response


def mock_image_id(image_name: str) -> str:
    return "sha256:" + hashlib.sha256(f"mock-image:{image_name}".encode()).hexdigest()


def mock_ip_address(resource_name: str) -> str:
    """A placeholder address from the benchmarking range 198.18.0.0/15, stable per name, so
    two runs of the program agree on it and the replay can swap in the real one."""
    digest = hashlib.sha256(f"mock-ip:{resource_name}".encode()).digest()
    return f"198.18.{digest[0]}.{digest[1] % 253 + 1}"


def mock_subnet(resource_name: str) -> str:
    """A placeholder for a subnet Docker picks, from the same benchmarking range, stable per
    name; the replay swaps in the real one."""
    digest = hashlib.sha256(f"mock-subnet:{resource_name}".encode()).digest()
    return f"198.18.{digest[0]}.0/24"


class _Mocks(pulumi.runtime.Mocks):
    """Outputs a provider would compute: ids, image ids, container addresses. Deterministic,
    so that the same program and config give the same inputs (as Pulumi's state would)."""

    def __init__(self, stack_outputs: dict[str, dict] | None = None):
        self.stack_outputs = stack_outputs or {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        if args.typ == "docker:index/remoteImage:RemoteImage":
            outputs["image_id"] = mock_image_id(args.inputs["name"])
            outputs["repo_digest"] = ""
        elif args.typ == "docker:index/network:Network" and not args.inputs.get("ipamConfigs"):
            # Docker picks the subnet of a network that names none; the provider reads it back.
            outputs["ipamConfigs"] = [{"subnet": mock_subnet(args.name)}]
        elif args.typ == "docker:index/container:Container":
            outputs["network_datas"] = [{"ip_address": mock_ip_address(args.name),
                                         "network_name": ""}]
        elif args.typ == "pulumi:pulumi:StackReference":
            outputs["outputs"] = self.stack_outputs.get(args.inputs["name"], {})
            outputs["secretOutputNames"] = []
        elif args.typ in ("command:local:Command", "command:remote:Command"):
            outputs["stdout"] = ""
            outputs["stderr"] = ""
            if "-password-salt" in args.name:
                # What the dashboard's salt commands print (16 random bytes in hex; the
                # shared account's, or one per operator: -password-salt-<name>), fixed per
                # name as a stack's state keeps it after its first run.
                outputs["stdout"] = hashlib.sha256(f"mock-salt:{args.name}".encode()) \
                    .hexdigest()[:32]
        return [f"{args.name}-id", outputs]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


# The VPS's identity and the operator's keys are the operator's to set (host.ssh.host_key,
# host.provision.admin_ssh_keys, platform.backup.recipients): the committed stack files
# leave them out and preview refuses them until they are set. Tests pin these made-up keys
# (their private halves thrown away).
TEST_HOST_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJzU1bEQVo+zNLuRYVMlFJjJRP9p3cSiGgC9bpxo"
                 "UkDz vps-test-host-key")
# The operator's GPG public key the backups are encrypted to (platform.backup.recipients).
TEST_BACKUP_KEY = (ROOT / "tests" / "harness" / "test-operator-key.asc").read_text()
TEST_ADMIN_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKpU3KyVcrB3fvZ8X0LdwVcyXArq5JP3rzROFss"
                  "bIn51 operator@test")


def stack_config(stack: str, pin_test_identity: bool = True) -> dict[str, Any]:
    """The committed Pulumi.<stack>.yaml config values; for an ssh host, with the made-up
    VPS identity above where the file leaves it to the operator."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config = copy.deepcopy(dict(document.get("config") or {}))
    host = config.get("aiia:host") or {}
    if pin_test_identity and host.get("kind") == "ssh":
        host.setdefault("ssh", {}).setdefault("host_key", TEST_HOST_KEY)
        platform = config.get("aiia:platform") or {}
        if platform.get("owner", True):
            host.setdefault("provision", {}).setdefault("admin_ssh_keys", [TEST_ADMIN_KEY])
            backup = platform.setdefault("backup", {})
            if not backup.get("recipients"):
                backup["recipients"] = [TEST_BACKUP_KEY]
    return config


def made_up_secrets(config: dict[str, Any]) -> dict[str, str]:
    """Made-up values for every secret the config needs (never real ones)."""
    platform = config.get("aiia:platform") or {}
    secrets = {}
    if str(platform.get("owner", True)).lower() == "true":  # the others read them from it
        secrets = {"aiia:postgres_password": "test-postgres-superuser",
                   "aiia:dashboard_password": "test-dashboard-password"}
        # Each operator's password in place of the shared account's.
        for name in (platform.get("dashboard") or {}).get("operators") or ():
            secrets.pop("aiia:dashboard_password", None)
            secrets[f"aiia:dashboard_password_{name}"] = f"test-dashboard-password-{name}"
    for env in (platform.get("environments") or {}):
        secrets[f"aiia:{env}_db_password"] = f"test-{env}-db"
        secrets[f"aiia:{env}_redis_password"] = f"test-{env}-redis"
    for env in (config.get("aiia:releases") or {}):
        secrets[f"aiia:{env}_secret_key"] = f"test-{env}-django-secret-key"
        # An environment's stack holds its own database and Redis passwords, the same values
        # as the platform's stack.
        secrets[f"aiia:{env}_db_password"] = f"test-{env}-db"
        secrets[f"aiia:{env}_redis_password"] = f"test-{env}-redis"
    return secrets


def prod_outputs_for_staging() -> dict:
    """What prod exports, as a StackReference hands it to staging."""
    return {
        "prefix": "aiia", "network_name": "aiia", "nginx_container": "aiia-nginx",
        "pgbouncer_host": "aiia-pgbouncer", "pgbouncer_port": 6432,
        "postgres_host": "aiia-postgres", "postgres_port": 5432,
        "redis_host": "aiia-redis", "redis_port": 6379, "root_dir": "/srv/aiia",
        "environments": {
            "staging": {"domain": "staging-api.eduaiia.com", "port": 8001, "app_memory_mb": 80,
                        "database_name": "aiia_staging", "database_user": "aiia_staging",
                        "redis_user": "staging", "network": "aiia-staging"},
        },
        "dashboard_uid": 10002.0,
        "ready": True,
        "health_start_interval": "1s",  # prod's host: Debian 13 (host.system's default)
        "nginx_keep_idle_seconds": 45.0,  # a StackReference's numbers arrive as floats
    }


@dataclass
class ProgramRun:
    resources: list[RecordedResource]
    exports: dict[str, Any]
    # The stack's outputs as `pulumi stack output` (and a StackReference) would give them:
    # resolved, a secret one keeping its secret marker.
    stack_outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [resource for resource in self.resources if resource.type == type_]

    def named(self, name: str) -> RecordedResource:
        matches = [resource for resource in self.resources if resource.name == name]
        assert matches, f"no resource named {name}; have {[r.name for r in self.resources]}"
        return matches[0]

    def containers(self) -> dict[str, RecordedResource]:
        return {resource.plain["name"]: resource
                for resource in self.of_type("docker:index/container:Container")}


def run_program(stack: str, config: dict[str, Any] | None = None,
                secrets: dict[str, str] | None = None,
                stack_outputs: dict[str, dict] | None = None,
                program: Callable[[], None] | None = None,
                preview: PreviewAnswer | None = None) -> ProgramRun:
    """Run __main__.py (or `program`) for `stack` under mocks and record what it declares: as
    `pulumi up` runs it (every output known), or, given `preview`, as `pulumi preview` does
    (a dry run, each registration answered by `preview`)."""
    config = stack_config(stack) if config is None else config
    secrets = made_up_secrets(config) if secrets is None else secrets
    mocks = _Mocks(stack_outputs)
    monitor = _RecordingMonitor(mocks, preview)
    # The organization as the engine names it (a file backend's is "organization").
    pulumi.runtime.set_mocks(mocks, project="aiia", stack=stack, preview=preview is not None,
                             monitor=monitor, organization="organization")
    values = {key: value if isinstance(value, str) else json.dumps(value)
              for key, value in {**config, **secrets}.items()}
    pulumi.runtime.set_all_config(values, secret_keys=list(secrets))
    exports: dict[str, Any] = {}
    stack_outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def run():
        original_export = pulumi.export

        def record_export(name: str, value: Any) -> None:
            exports[name] = value
            output = pulumi.Output.from_input(value)

            async def resolve() -> None:
                resolved = await output.future(with_unknowns=True)
                stack_outputs[name] = {SIG_KEY: SECRET_SIG, "value": resolved} \
                    if await output.is_secret() else resolved

            # An output of its own, so that the test runner awaits it with the program's.
            pulumi.Output.from_input(resolve())
            original_export(name, value)

        pulumi.export = record_export
        try:
            if program is None:
                runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
            else:
                program()
        finally:
            pulumi.export = original_export

    run()
    return ProgramRun(resources=monitor.recorded, exports=exports, stack_outputs=stack_outputs)


def host_files(run: ProgramRun) -> dict[str, str]:
    """Every file the program places on the host: path → content (secrets revealed)."""
    files = {}
    for resource in run.resources:
        if not resource.type.startswith("command:") or not resource.name.endswith("-install"):
            continue
        inputs = resource.plain
        match = re.search(r"^target=(.+)$", inputs["create"], re.MULTILINE)
        assert match, f"{resource.name}: no target in its install script"
        files[shlex.split(match.group(1))[0]] = inputs["stdin"]
    return files


def host_scripts(run: ProgramRun) -> dict[str, str]:
    """Every script the program runs on the host: resource name → bash source."""
    return {resource.name: resource.plain["create"] for resource in run.resources
            if resource.type.startswith("command:")}


def release_container(run: ProgramRun, name_prefix: str) -> RecordedResource:
    """The one container of a release (its name ends in the generation of its inputs)."""
    matches = [c for name, c in run.containers().items() if name.startswith(name_prefix)]
    assert len(matches) == 1, (name_prefix, list(run.containers()))
    return matches[0]


def service_of(container: RecordedResource) -> str:
    """The service a container runs (its `aiia.service` label: postgres, app, …)."""
    labels = {label["label"]: label["value"] for label in container.plain["labels"]}
    return labels["aiia.service"]
