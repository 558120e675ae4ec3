"""The replay applies program runs like successive `pulumi up`s (no engine: a fake one).

One test per behaviour the replay imitates; each names the upstream source it follows
(the full list is in the module docstrings of tests/harness/replay/, what is not modelled
at the top of its __init__.py)."""

import sys
import threading

import pulumi
import pulumi_docker as docker
import pytest
from pulumi.output import Unknown
from pulumi_command import local

from tests.harness.engine import DialStdioEngine, EngineError, dial_stdio_command
from tests.harness.program import ProgramRun, RecordedResource, mock_ip_address, run_program
from tests.harness.replay import (
    Applied,
    Interrupted,
    Plan,
    Replay,
    ReplayError,
    duration_ns,
    go_duration,
    plan_step,
    preview,
    read_back,
    update_steps,
)
from tests.harness.replay.docker_provider import container_config

CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"


class FakeEngine:
    def __init__(self, unhealthy=(), api_version=None, failing_start=()):
        self.api_version = api_version  # what the provider's client negotiated
        self.calls: list[tuple[str, str]] = []
        self.containers: dict[str, dict] = {}
        self.unhealthy = set(unhealthy)
        self.failing_start = set(failing_start)
        self.waited: list[str] = []
        self._lock = threading.Lock()

    def _call(self, *call):
        with self._lock:
            self.calls.append(call)

    def image(self, reference):
        return {"Id": f"sha256:{reference}"}

    def container(self, name):
        return self.containers.get(name)

    def create_container(self, name, config):
        self._call("create", name)
        self.containers[name] = {"Id": name, "Config": config, "NetworkSettings": {
            "Networks": {"n": {"IPAddress": f"10.0.0.{len(self.containers) + 2}"}}}}
        return name

    def start(self, name):
        self._call("start", name)
        if name in self.failing_start:
            raise EngineError(f"Bind for 0.0.0.0:443 failed: port is already allocated ({name})")

    def wait_healthy(self, name, timeout):
        self.waited.append(name)
        if name in self.unhealthy:
            raise EngineError(f"container {name} not healthy")

    def stop(self, name, grace):
        self._call("stop", name)

    def remove_container(self, name):
        self._call("remove", name)
        self.containers.pop(name, None)

    def request(self, method, url, body=None, **_):
        self._call("update", url)

    def negotiate(self):
        self.request("GET", "/_ping")
        return "1.45"


def container(name, urn=None, dependencies=(), delete_before_replace=None, ignore_changes=(),
              **inputs):
    plain = {"name": name, "image": "img", "memory": 64, "memorySwap": 64, "wait": True,
             **inputs}
    return RecordedResource(type=CONTAINER, name=name, urn=urn or f"urn:{name}", inputs=plain,
                            parent="", dependencies=list(dependencies), protect=False,
                            delete_before_replace=bool(delete_before_replace),
                            delete_before_replace_defined=delete_before_replace is not None,
                            custom=True, ignore_changes=list(ignore_changes))


def command(name, script, dependencies=(), update=None, **inputs):
    return RecordedResource(type=COMMAND, name=name, urn=f"urn:{name}",
                            inputs={"create": script, **({"update": update} if update else {}),
                                    "interpreter": ["/bin/bash", "-c"], **inputs},
                            parent="", dependencies=list(dependencies), protect=False,
                            delete_before_replace=False, custom=True)


def run(*resources):
    return ProgramRun(resources=list(resources), exports={})


def quiet_replay(engine, **kwargs):
    return Replay(engine, {}, log=lambda _: None, **kwargs)


def test_dependencies_come_first_whatever_the_registration_order(tmp_path):
    marker = tmp_path / "order"
    replay = quiet_replay(FakeEngine())
    replay.apply(run(
        command("second", f"echo second >> {marker}", dependencies=["urn:first"]),
        command("first", f"echo first >> {marker}"),
    ))
    assert marker.read_text().split() == ["first", "second"]


def test_a_child_waits_for_what_its_component_parent_depends_on(tmp_path):
    # sdk/python/lib/pulumi/runtime/resource.py: a child is registered once its parent's
    # URN is known, and a component's registration first waits for its depends_on. A
    # HostFile(depends_on=[x]) therefore holds back its install command.
    marker = tmp_path / "order"
    component = RecordedResource(type="aiia:host:File", name="file", urn="urn:file",
                                 inputs={}, parent="", dependencies=["urn:first"],
                                 protect=False, delete_before_replace=False, custom=False)
    child = command("file-install", f"echo child >> {marker}")
    child.parent = "urn:file"
    first = command("first", f"sleep 0.5; echo first >> {marker}")
    quiet_replay(FakeEngine()).apply(run(component, child, first))
    assert marker.read_text().split() == ["first", "child"]


def test_independent_steps_run_at_the_same_time(tmp_path):
    # step_executor.go: a worker pool. Each command waits for the other's marker, which
    # only works if both run at once (run one after the other, the first times out).
    a, b = tmp_path / "a", tmp_path / "b"
    wait_for = "for _ in $(seq 50); do [ -e {0} ] && exit 0; sleep 0.1; done; exit 1"
    replay = quiet_replay(FakeEngine())
    replay.apply(run(command("one", f"touch {a}; " + wait_for.format(b)),
                     command("two", f"touch {b}; " + wait_for.format(a))))
    # With one worker the same program fails: the replay is what makes them concurrent.
    a.unlink()
    b.unlink()
    serial = quiet_replay(FakeEngine(), parallel=1)
    with pytest.raises(ReplayError, match="command failed"):
        serial.apply(run(command("one", f"touch {a}; " + wait_for.format(b)),
                         command("two", f"touch {b}; " + wait_for.format(a))))


def test_after_a_failed_step_no_new_step_starts(tmp_path):
    marker = tmp_path / "ran"
    replay = quiet_replay(FakeEngine(), parallel=1)
    with pytest.raises(ReplayError, match="first: command failed"):
        replay.apply(run(command("first", "exit 3"),
                         command("later", f"touch {marker}")))
    assert not marker.exists()


def test_an_unknown_container_input_fails_by_name():
    replay = quiet_replay(FakeEngine())
    with pytest.raises(ReplayError, match="sysctls not understood"):
        replay.apply(run(container("c", sysctls={"net.core.somaxconn": "1024"})))


def test_memory_is_updated_in_place():
    # resourceDockerContainerUpdate handles memory/memory_swap with `docker update`.
    engine = FakeEngine()
    replay = quiet_replay(engine)
    replay.apply(run(container("c")))
    engine.calls.clear()
    replay.apply(run(container("c", memory=96, memorySwap=96)))
    assert engine.calls == [("update", "/containers/c/update")]


def test_a_container_is_replaced_delete_before_create():
    # pulumi-docker provider/resources.go: docker_container DeleteBeforeReplace: true.
    engine = FakeEngine()
    replay = quiet_replay(engine)
    replay.apply(run(container("c")))
    engine.calls.clear()
    replay.apply(run(container("c", envs=["SECRET=rotated"])))
    assert engine.calls[:3] == [("stop", "c"), ("remove", "c"), ("create", "c")]


def test_an_explicit_create_before_delete_keeps_the_old_container_until_the_end():
    # step_generator.go: the program's delete_before_replace=False overrides the provider.
    engine = FakeEngine()
    replay = quiet_replay(engine)
    replay.apply(run(container("c-1", urn="urn:c", delete_before_replace=False)))
    engine.calls.clear()
    replay.apply(run(container("c-2", urn="urn:c", delete_before_replace=False,
                               envs=["SECRET=rotated"])))
    assert engine.calls.index(("start", "c-2")) < engine.calls.index(("stop", "c-1"))
    # The same container name cannot be created beside itself.
    with pytest.raises(ReplayError, match="already exists"):
        replay.apply(run(container("c-2", urn="urn:c", delete_before_replace=False,
                                   envs=["SECRET=again"])))


def test_an_ignored_input_keeps_its_state_value_even_through_a_replacement():
    # step_generator.go processIgnoreChanges: an ignored property is reset to the state's
    # value before the diff, and the step goes on with it (a replacement's create too).
    engine = FakeEngine()
    replay = quiet_replay(engine)
    old_networks = [{"name": "shared"}]
    new_networks = [{"name": "own", "ipv4Address": "10.1.0.2"}, {"name": "shared"}]
    replay.apply(run(container("c", networksAdvanced=old_networks,
                               ignore_changes=["networks_advanced"])))
    engine.calls.clear()
    replay.apply(run(container("c", networksAdvanced=new_networks,
                               ignore_changes=["networks_advanced"])))
    assert engine.calls == []  # no step: the change is ignored
    replay.apply(run(container("c", image="newer", networksAdvanced=new_networks,
                               ignore_changes=["networks_advanced"])))
    config = engine.containers["c"]["Config"]
    assert config["HostConfig"]["NetworkMode"] == "shared"  # the state's networks
    # Without ignore_changes the same change replaces it (delete first).
    engine.calls.clear()
    replay.apply(run(container("c", image="newer", networksAdvanced=new_networks)))
    assert engine.calls[:3] == [("stop", "c"), ("remove", "c"), ("create", "c")]
    # ... on its fixed address (terraform-provider-docker: ipv4_address → IPAMConfig).
    config = engine.containers["c"]["Config"]
    assert config["NetworkingConfig"]["EndpointsConfig"]["own"]["IPAMConfig"] == {
        "IPv4Address": "10.1.0.2"}


def test_undeclared_resources_are_deleted_last_and_only_after_success():
    engine = FakeEngine()
    replay = quiet_replay(engine)
    replay.apply(run(container("app-a")))
    replay.apply(run(container("app-b")))
    assert engine.calls.index(("start", "app-b")) < engine.calls.index(("remove", "app-a"))
    engine.calls.clear()
    engine.unhealthy.add("app-c")
    with pytest.raises(ReplayError):
        replay.apply(run(container("app-c")))
    assert ("remove", "app-b") not in engine.calls
    replay.apply(run(container("app-b")))
    assert ("create", "app-b") not in engine.calls
    assert ("remove", "app-c") in engine.calls


def test_a_failed_health_gate_is_skipped_by_the_next_up_which_never_reads_it_back():
    # resourceDockerContainerCreate sets the id before its wait; the engine keeps the
    # container with init errors; with unchanged inputs the next up is an Update, and the
    # provider's update never waits for health (pulumi/pulumi#21458). Nor does it read the
    # container back (terraform-provider-docker v4.5.0 resource_docker_container_funcs.go:
    # Update ends in `return nil`, line 1076; only Create ends in the Read, line 673, which
    # alone sets network_data, line 807): the address stays unknown.
    engine = FakeEngine(unhealthy={"app-c"})
    replay = quiet_replay(engine)
    with pytest.raises(ReplayError, match="not healthy"):
        replay.apply(run(container("app-c")))
    assert replay.state["urn:app-c"].init_errors
    engine.calls.clear()
    engine.waited.clear()
    replay.apply(run(container("app-c")))
    assert engine.calls == [("update", "/containers/app-c/update")]
    assert engine.waited == []  # no health gate this time
    assert not replay.state["urn:app-c"].init_errors
    assert "ip_address" not in replay.state["urn:app-c"].real  # never read back
    # So a step that takes the container's address (its network_datas) never runs: for real,
    # the program's apply would get null network_datas.
    switch = command("switch", f"echo {mock_ip_address('app-c')}", dependencies=["urn:app-c"])
    with pytest.raises(ReplayError, match="unknown output"):
        replay.apply(run(container("app-c"), switch))
    assert engine.calls == [("update", "/containers/app-c/update")]


def test_a_container_that_fails_to_start_is_kept_and_the_next_up_never_starts_it():
    # resourceDockerContainerCreate sets the id right after ContainerCreate, before the
    # network connects, uploads and ContainerStart: a start failure is an init error, the
    # next up an Update, and the provider's update starts a container only when must_run
    # turns true (resource_docker_container_funcs.go) - so that up is green with it stopped,
    # which the program's platform check (components/platform/running.py) turns into a failure.
    engine = FakeEngine(failing_start={"nginx"})
    replay = quiet_replay(engine)
    with pytest.raises(ReplayError, match="port is already allocated"):
        replay.apply(run(container("nginx")))
    assert replay.state["urn:nginx"].init_errors
    engine.calls.clear()
    engine.failing_start.clear()
    replay.apply(run(container("nginx")))
    assert engine.calls == [("update", "/containers/nginx/update")]  # no start
    assert not replay.state["urn:nginx"].init_errors


def test_pending_deletions_of_a_failed_update_wait_for_the_end_of_the_next_one():
    # pulumi/pulumi#11027 (closed #9979): condemned resources are deleted at the end.
    engine = FakeEngine(unhealthy={"new"})
    replay = quiet_replay(engine)
    replay.apply(run(container("old", urn="urn:app", delete_before_replace=False)))
    with pytest.raises(ReplayError):
        replay.apply(run(container("new", urn="urn:app", delete_before_replace=False)))
    assert ("remove", "old") not in engine.calls
    engine.calls.clear()
    engine.unhealthy.clear()
    replay.apply(run(container("new", urn="urn:app", delete_before_replace=False),
                     command("other", "true")))
    assert engine.calls[-2:] == [("stop", "old"), ("remove", "old")]


def test_healthcheck_durations_are_read_back_canonical():
    # resourceDockerContainerRead stores time.Duration.String(): "60s" reads back "1m0s",
    # so a container declared with "60s" differs from state on every run and is replaced.
    engine = FakeEngine()
    replay = quiet_replay(engine)
    declared = {"tests": ["CMD", "true"], "interval": "60s", "timeout": "5s", "retries": 3}
    replay.apply(run(container("c", healthcheck=declared)))
    engine.calls.clear()
    replay.apply(run(container("c", healthcheck=declared)))
    assert ("remove", "c") in engine.calls
    canonical = {**declared, "interval": "1m0s"}
    replay.apply(run(container("c", healthcheck=canonical)))
    engine.calls.clear()
    replay.apply(run(container("c", healthcheck=canonical)))
    assert engine.calls == []


def test_a_start_interval_is_sent_in_nanoseconds_and_left_out_when_unset():
    # terraform-provider-docker v4.5.0 createContainerConfig → HealthConfig.StartInterval,
    # `json:",omitempty"`: "0s" (the schema default) and an unset one send nothing.
    check = {"tests": ["CMD", "true"], "interval": "10s", "timeout": "5s", "retries": 3,
             "start_period": "30s"}
    for declared, sent in ((None, None), ("0s", None), ("1s", 1_000_000_000),
                           ("500ms", 500_000_000)):
        health = {**check, **({"start_interval": declared} if declared else {})}
        config = container_config({"image": "img", "healthcheck": health})
        assert config["Healthcheck"].get("StartInterval") == sent, declared
        assert config["Healthcheck"]["Interval"] == 10_000_000_000


def test_a_declared_network_mode_is_the_containers_and_otherwise_its_first_network():
    # resourceDockerContainerCreate: hostConfig.NetworkMode from network_mode when set (the
    # local Docker proxy's "none": no network at all).
    assert container_config({"image": "img", "network_mode": "none"})["HostConfig"][
        "NetworkMode"] == "none"
    assert container_config({"image": "img", "networks_advanced": [{"name": "aiia"}]})[
        "HostConfig"]["NetworkMode"] == "aiia"


@pytest.mark.parametrize("api_version", ["1.41", "1.43"])
def test_the_providers_client_refuses_a_start_interval_below_api_1_44(api_version):
    # docker/docker v28.5.2 client/container_create.go: NewVersionError("1.44", "specify
    # health-check start interval") before the request; the provider fails before SetId, so
    # nothing is created and nothing is in the state.
    engine = FakeEngine(api_version=api_version)
    replay = quiet_replay(engine)
    health = {"tests": ["CMD", "true"], "interval": "10s", "start_interval": "1s"}
    with pytest.raises(ReplayError, match=(
            'Unable to create container: "specify health-check start interval" requires API '
            f"version 1.44, but the Docker daemon API version is {api_version}")):
        replay.apply(run(container("c", healthcheck=health)))
    assert engine.calls == [] and "urn:c" not in replay.state
    # The same check without the field goes through on that engine.
    del health["start_interval"]
    replay.apply(run(container("c", healthcheck=health)))
    assert ("create", "c") in engine.calls


@pytest.mark.parametrize("api_version", ["1.44", "1.45", "1.51", None])
def test_an_engine_of_api_1_44_or_later_is_sent_the_start_interval(api_version):
    engine = FakeEngine(api_version=api_version)
    health = {"tests": ["CMD", "true"], "interval": "10s", "start_interval": "1s"}
    quiet_replay(engine).apply(run(container("c", healthcheck=health)))
    assert engine.containers["c"]["Config"]["Healthcheck"]["StartInterval"] == 1_000_000_000


def test_a_start_interval_is_read_back_canonical():
    # resourceDockerContainerRead: "start_interval": StartInterval.String().
    declared = {"tests": ["CMD", "true"], "start_interval": "1000ms"}
    assert read_back(CONTAINER, {"healthcheck": declared})["healthcheck"][
        "start_interval"] == "1s"


@pytest.mark.parametrize(("declared", "read_back"), [
    ("0s", "0s"), ("5s", "5s"), ("60s", "1m0s"), ("90s", "1m30s"), ("1m", "1m0s"),
    ("1.5s", "1.5s"), ("500ms", "500ms"), ("3600s", "1h0m0s"), ("1h2m3s", "1h2m3s"),
])
def test_go_duration_strings(declared, read_back):
    assert go_duration(duration_ns(declared)) == read_back


def test_set_attributes_ignore_order():
    # schema.TypeSet (labels, envs, …) in resource_docker_container.go: order is no diff.
    engine = FakeEngine()
    replay = quiet_replay(engine)
    labels = [{"label": "a", "value": "1"}, {"label": "b", "value": "2"}]
    replay.apply(run(container("c", labels=labels, envs=["A=1", "B=2"])))
    engine.calls.clear()
    replay.apply(run(container("c", labels=labels[::-1], envs=["B=2", "A=1"])))
    assert engine.calls == []


def test_a_command_is_replaced_only_when_its_triggers_change(tmp_path):
    # pulumi-command v1.2.1: replaceOnChanges ["triggers[*]"]; any other change updates.
    log = tmp_path / "log"
    replay = quiet_replay(FakeEngine())

    def step(script, triggers):
        return command("c", f"echo create {script} >> {log}",
                       update=f"echo update {script} >> {log}",
                       delete=f"echo delete $(cat) >> {log}", stdin=f"stdin-{script}",
                       triggers=triggers)

    replay.apply(run(step("one", ["t1"])))
    replay.apply(run(step("two", ["t1"])))
    replay.apply(run(step("three", ["t2"])))
    # The replacement's old command is deleted at the end, with the stdin of its state.
    assert log.read_text().split("\n")[:-1] == [
        "create one", "update two", "create three", "delete stdin-two"]


def test_a_command_without_update_runs_create_again(tmp_path):
    log = tmp_path / "log"
    replay = quiet_replay(FakeEngine())
    replay.apply(run(command("c", f"echo {{1}} >> {log}".replace("{1}", "first"))))
    replay.apply(run(command("c", f"echo second >> {log}")))
    assert log.read_text().split() == ["first", "second"]


def test_stdin_is_attached_only_when_not_empty(tmp_path):
    # With no stdin the command must not block reading one (a closed stdin reads EOF).
    marker = tmp_path / "read"
    replay = quiet_replay(FakeEngine())
    replay.apply(run(command("c", f"cat > {marker}")))
    assert marker.read_text() == ""


def test_a_protected_resource_no_longer_declared_is_kept_and_the_rest_deleted_first():
    # pulumi/pulumi pkg/resource/deploy: DeleteStep.Apply returns deleteProtectedError
    # (step.go:648), which cancelDueToError always continues past (step_executor.go:442-449);
    # the later delete antichains leave out what an errored step depends on
    # (deployment_executor.go:514-543); the update fails at the end.
    engine = FakeEngine()
    replay = quiet_replay(engine)
    protected = container("data", dependencies=["urn:base"])
    protected.protect = True
    replay.apply(run(container("base"), protected, container("other"),
                     container("app", dependencies=["urn:data"])))
    engine.calls.clear()
    with pytest.raises(ReplayError, match="data: cannot be deleted because it is protected"):
        replay.apply(run())
    assert {call[1] for call in engine.calls if call[0] == "remove"} == {"app", "other"}
    assert set(replay.state) == {"urn:data", "urn:base"}


def test_an_interrupted_create_is_created_again_and_clashes_until_cleared_and_removed():
    # An interrupted update leaves a pending CREATE, not a resource in the state: the next up
    # warns (deployment_executor.go printPendingOperationsWarning) and creates it again; the
    # fixed name clashes. `pulumi refresh --clear-pending-creates` (operations/refresh.go)
    # drops the operation, `docker rm -f` the half-created container, and the up goes on.
    engine = FakeEngine()
    logged = []
    replay = Replay(engine, {}, log=logged.append)
    replay.apply(run(container("redis", image="redis-7")))
    replay.interrupt.add("redis")
    with pytest.raises(Interrupted, match="interrupted while creating redis"):
        replay.apply(run(container("redis", image="redis-8")))  # delete-before-create
    assert "urn:redis" not in replay.state and "redis" in engine.containers
    assert replay.pending_operations == {"urn:redis": ("creating", "redis")}
    with pytest.raises(ReplayError, match="a container named redis already exists"):
        replay.apply(run(container("redis", image="redis-8")))
    assert any("redis, interrupted while creating" in line for line in logged)
    assert replay.clear_pending_creates() == ["redis"]
    engine.remove_container("redis")  # docker rm -f, the runbook's step
    replay.apply(run(container("redis", image="redis-8")))
    assert replay.state["urn:redis"].inputs["image"] == "redis-8"
    assert not replay.pending_operations


# ------------------------------------------------------------ Docker providers and ssh://

PROVIDER = "pulumi:providers:docker"


def provider(name="docker", dependencies=(), **inputs):
    return RecordedResource(type=PROVIDER, name=name, urn=f"urn:provider:{name}",
                            inputs=inputs, parent="", dependencies=list(dependencies),
                            protect=False, delete_before_replace=False, custom=True)


def test_a_docker_resource_waits_for_its_provider_and_what_the_provider_depends_on(tmp_path):
    # sdk/python/lib/pulumi/runtime/resource.py `_prepare_resource` awaits the provider
    # reference, known once the provider was registered after its depends_on (in the program:
    # the host's preflight, so no Docker step runs before the host has Docker).
    marker = tmp_path / "preflight"
    engine = FakeEngine()
    pinged_after_preflight = []
    original = engine.request

    def request(method, url, body=None, **kwargs):
        if url == "/_ping":
            pinged_after_preflight.append(marker.exists())
        return original(method, url, body, **kwargs)

    engine.request = request
    app = container("app")
    app.provider = "urn:provider:docker"
    quiet_replay(engine).apply(run(
        app, provider(dependencies=["urn:preflight"]),
        command("preflight", f"sleep 0.3; touch {marker}")))
    assert pinged_after_preflight == [True]
    assert ("create", "app") in engine.calls


def test_the_ssh_docker_host_runs_the_system_ssh_as_dockers_connection_helper_does():
    # docker/cli cli/connhelper/connhelper.go (addSSHTimeout, disablePseudoTerminalAllocation)
    # and cli/connhelper/ssh/ssh.go (Spec.Args), with the provider's ssh_opts first.
    assert dial_stdio_command("ssh://deploy@127.0.0.1:2222", ["-o", "BatchMode=yes"]) == [
        "ssh", "-o", "BatchMode=yes", "-o ConnectTimeout=30", "-T", "-l", "deploy",
        "-p", "2222", "--", "127.0.0.1", "docker", "system", "dial-stdio"]
    assert dial_stdio_command("ssh://vps/run/docker.sock", ["-o", "ConnectTimeout=5", "-T"]) == [
        "ssh", "-o", "ConnectTimeout=5", "-T", "--", "vps", "docker",
        "--host=unix:///run/docker.sock", "system", "dial-stdio"]
    with pytest.raises(ValueError, match="no password"):
        dial_stdio_command("ssh://deploy:secret@vps", [])


def test_an_engine_over_a_command_speaks_http_on_its_stdin_and_stdout():
    # commandconn: the command's stdin and stdout are the connection (here a tiny server in
    # place of `docker system dial-stdio`, which answers one request and exits).
    answer = ("import sys; sys.stdin.buffer.readline(); "
              "sys.stdout.buffer.write(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n"
              "Connection: close\\r\\n\\r\\nOK'); sys.stdout.flush()")
    assert DialStdioEngine([sys.executable, "-c", answer]).request("GET", "/_ping") == b"OK"


def test_a_provider_whose_ssh_fails_fails_the_update_before_any_docker_step():
    # terraform-provider-docker providerConfigure: the client is pinged first; ssh's own
    # words (a refused connection, a host key it does not accept) reach the error.
    engine = FakeEngine()
    app = container("app")
    app.provider = "urn:provider:docker"
    unreachable = provider(host="ssh://deploy@127.0.0.1:1",
                           ssh_opts='["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]')
    with pytest.raises(ReplayError, match="Error pinging Docker server.*Connection refused"):
        quiet_replay(engine).apply(run(app, unreachable))
    assert engine.calls == []


def test_a_provider_input_the_replay_does_not_model_fails_by_name():
    with pytest.raises(ReplayError, match="registry_auth"):
        quiet_replay(FakeEngine()).apply(run(provider(registry_auth=[{"address": "r"}])))


# ----------------------------------------------------------------- preview
# tests/harness/replay/preview.py: the program runs as a dry run; what a create or replace
# makes is unknown to what derives from it until the up.

def server_and_dependents(image: str, memory: int = 64, check_script: str = "echo check"):
    """A program: a container, and what derives from its outputs."""
    def program():
        server = docker.Container("server", name="server", image=image, memory=memory,
                                  memory_swap=memory)
        # Like the platform's `ready`: true once the container exists, whatever its id.
        ready = pulumi.Output.all(server.id).apply(lambda _: True)
        local.Command("migrate", create=ready.apply(lambda _: "echo migrate"))
        check = local.Command("check", create=check_script, triggers=[server.id])
        local.Command("by-name", create=server.name.apply(lambda name: f"echo {name}"))
        local.Command("after-check", create=check.id.apply(lambda _: "echo after"))
        local.Command("reads-check", create=check.stdout.apply(lambda out: f"echo {out}"))
        docker.Container("client", name="client", image="client", memory=64, memory_swap=64,
                         envs=server.network_datas.apply(
                             lambda networks: ["SERVER=" + networks[0]["ip_address"]]))
        docker.Container("sized", name="sized", image="sized", memory_swap=64,
                         memory=server.id.apply(lambda _: 64))
    return program


def record(program):
    return run_program("test", config={}, program=program)


def previewed(before, program) -> dict[str, str]:
    return {name: plan.action for name, plan in
            preview(before, "test", config={}, program=program).items()}


def test_a_preview_leaves_a_replaced_containers_id_and_addresses_unknown_to_its_dependents():
    # pulumi-terraform-bridge provider.go `Provider.Create`: a preview returns the plan's
    # state, whose id (provider2.go `v2InstanceState2.ID`: "" while unknown) and computed
    # attributes are unknown; the Python SDK resolves them unknown, and every apply over them.
    # pulumi-go-provider `diff` and the bridge's `Provider.Diff` see the unknown as a change.
    before = record(server_and_dependents("server:1"))
    steps = previewed(before, server_and_dependents("server:2"))
    assert steps["server"] == "replace"
    assert steps["migrate"] == "update"  # its script derives from the unknown id
    assert steps["check"] == "replace"   # triggers: replaceOnChanges ["triggers[*]"]
    assert steps["by-name"] == "same"    # the name mirrors an input: known
    assert steps["client"] == "replace"  # envs: the provider cannot change them in place
    assert steps["sized"] == "update"    # memory: updated in place (`docker update`)


def test_a_replaced_command_has_a_known_id_and_unknown_output_in_a_preview():
    # pulumi-command commandController.go `Command.Create`: in a preview an id from
    # `resource.NewUniqueHex` and no run; pulumi-go-provider `markComputed`: its stdout,
    # which mirrors no input, is computed.
    before = record(server_and_dependents("server:1"))
    steps = previewed(before, server_and_dependents("server:2"))
    assert steps["after-check"] == "same"
    assert steps["reads-check"] == "update"


def test_an_update_previews_a_commands_output_unknown_and_a_containers_outputs_known():
    # pulumi-command `Command.Update` in a preview returns the prior outputs, which
    # `markComputed` makes computed once an input changed; the bridge's `Provider.Update`
    # returns the plan over the prior state, its computed attributes as they were.
    before = record(server_and_dependents("server:1"))
    steps = previewed(before, server_and_dependents("server:1", memory=80,
                                                    check_script="echo checked"))
    assert steps["server"] == "update"
    assert steps["check"] == "update"
    assert steps["reads-check"] == "update"
    assert {name: steps[name] for name in ("migrate", "client", "sized", "after-check")} == \
        dict.fromkeys(("migrate", "client", "sized", "after-check"), "same")


def test_an_unknown_input_is_a_change_whatever_the_state_holds():
    # sdk/go/common/resource/properties.go `PropertyValue.DeepEquals`: an unknown equals
    # only an unknown; the triggers of a command are replaceOnChanges.
    state = Applied("urn:c", COMMAND, "c", command("c", "echo", triggers=["a"]).plain)
    unknown_script = command("c", Unknown(), triggers=["a"])
    unknown_trigger = command("c", "echo", triggers=[Unknown()])
    assert plan_step(unknown_script, state) == Plan("update", frozenset({"create"}))
    assert plan_step(unknown_trigger, state) == Plan("replace", frozenset({"triggers"}))


def test_the_up_after_the_preview_leaves_what_came_out_equal_unchanged(tmp_path):
    # The up registers each resource once the outputs it reads are known: `migrate`'s
    # script is what it was, so the up does not run it, although the preview showed it.
    marker = tmp_path / "migrated"

    def program(image):
        def declare():
            server = docker.Container("server", name="server", image=image, memory=64,
                                      memory_swap=64)
            ready = pulumi.Output.all(server.id).apply(lambda _: True)
            local.Command("migrate", create=ready.apply(lambda _: f"echo >> {marker}"))
        return declare

    before, after = record(program("server:1")), record(program("server:2"))
    assert previewed(before, program("server:2"))["migrate"] == "update"
    assert update_steps(before, after)["migrate"] == Plan("same")
    replay = quiet_replay(FakeEngine())
    replay.apply(before)
    replay.apply(after)
    assert marker.read_text().count("\n") == 1
    assert [(action, name) for action, name, *_ in replay.events][-2:] == [
        ("delete", "server"), ("create", "server")]
