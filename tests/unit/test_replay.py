"""The replay applies program runs like successive `pulumi up`s (no engine: a fake one)."""

import pytest

from tests.harness.engine import EngineError
from tests.harness.program import ProgramRun, RecordedResource
from tests.harness.replay import Replay, ReplayError

CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"


class FakeEngine:
    def __init__(self, unhealthy=()):
        self.calls: list[tuple[str, str]] = []
        self.containers: dict[str, dict] = {}
        self.unhealthy = set(unhealthy)

    def image(self, reference):
        return {"Id": f"sha256:{reference}"}

    def container(self, name):
        return self.containers.get(name)

    def create_container(self, name, config):
        self.calls.append(("create", name))
        self.containers[name] = {"Id": name, "Config": config, "NetworkSettings": {
            "Networks": {"n": {"IPAddress": "10.0.0.2"}}}}
        return name

    def start(self, name):
        self.calls.append(("start", name))

    def wait_healthy(self, name, timeout):
        if name in self.unhealthy:
            raise EngineError(f"container {name} not healthy")

    def stop(self, name, grace):
        self.calls.append(("stop", name))

    def remove_container(self, name):
        self.calls.append(("remove", name))
        self.containers.pop(name, None)

    def request(self, method, url, body=None, **_):
        self.calls.append(("update", url))


def container(name, urn=None, dependencies=(), **inputs):
    plain = {"name": name, "image": "img", "memory": 64, "memorySwap": 64, "wait": True,
             **inputs}
    return RecordedResource(type=CONTAINER, name=name, urn=urn or f"urn:{name}", inputs=plain,
                            parent="", dependencies=list(dependencies), protect=False,
                            delete_before_replace=False, custom=True)


def command(name, script, dependencies=()):
    return RecordedResource(type=COMMAND, name=name, urn=f"urn:{name}",
                            inputs={"create": script, "update": script,
                                    "interpreter": ["/bin/bash", "-c"]},
                            parent="", dependencies=list(dependencies), protect=False,
                            delete_before_replace=False, custom=True)


def run(*resources):
    return ProgramRun(resources=list(resources), exports={})


def test_dependencies_come_first_whatever_the_registration_order(tmp_path):
    marker = tmp_path / "order"
    engine = FakeEngine()
    replay = Replay(engine, {}, log=lambda _: None)
    replay.apply(run(
        command("second", f"echo second >> {marker}", dependencies=["urn:first"]),
        command("first", f"echo first >> {marker}"),
    ))
    assert marker.read_text().split() == ["first", "second"]


def test_an_unknown_container_input_fails_by_name():
    replay = Replay(FakeEngine(), {}, log=lambda _: None)
    with pytest.raises(ReplayError, match="sysctls not understood"):
        replay.apply(run(container("c", sysctls={"net.core.somaxconn": "1024"})))


def test_in_place_update_versus_replacement():
    engine = FakeEngine()
    replay = Replay(engine, {}, log=lambda _: None)
    replay.apply(run(container("c")))
    replay.apply(run(container("c", memory=96, memorySwap=96)))
    assert ("update", "/containers/c/update") in engine.calls
    engine.calls.clear()
    # A changed command replaces; the same container name makes create-before-delete clash,
    # as it would under Pulumi.
    with pytest.raises(ReplayError, match="already exists"):
        replay.apply(run(container("c", memory=96, memorySwap=96, command=["x"])))


def test_undeclared_resources_are_deleted_last_and_only_after_success():
    engine = FakeEngine()
    replay = Replay(engine, {}, log=lambda _: None)
    replay.apply(run(container("app-a")))
    replay.apply(run(container("app-b")))
    assert engine.calls.index(("start", "app-b")) < engine.calls.index(("remove", "app-a"))
    engine.calls.clear()
    # A failed update (unhealthy new release) deletes nothing.
    engine.unhealthy.add("app-c")
    with pytest.raises(ReplayError):
        replay.apply(run(container("app-c")))
    assert ("remove", "app-b") not in engine.calls
    # The next update with the previous value keeps app-b and removes the failed one.
    replay.apply(run(container("app-b")))
    assert ("create", "app-b") not in engine.calls
    assert ("remove", "app-c") in engine.calls


def test_replaced_resources_of_a_failed_update_are_deleted_first_next_time():
    engine = FakeEngine()
    replay = Replay(engine, {}, log=lambda _: None)
    replay.apply(run(container("old", urn="urn:app")))
    engine.unhealthy.add("new")
    with pytest.raises(ReplayError):
        replay.apply(run(container("new", urn="urn:app")))
    assert ("remove", "old") not in engine.calls  # pending deletion
    engine.calls.clear()
    engine.unhealthy.clear()
    replay.apply(run(container("old", urn="urn:app")))
    # pulumi/pulumi#9979: the pending deletion runs first, before anything else.
    assert engine.calls[:2] == [("stop", "old"), ("remove", "old")]


def test_a_protected_resource_is_never_deleted():
    replay = Replay(FakeEngine(), {}, log=lambda _: None)
    protected = container("data")
    protected.protect = True
    replay.apply(run(protected))
    with pytest.raises(ReplayError, match="protected"):
        replay.apply(run())
