"""components/host/connection.py: how files and commands reach the VPS."""

from tests.harness.program import TEST_HOST_KEY


def test_every_remote_command_pins_the_vps_host_key(prod):
    commands = [r for r in prod.resources if r.type == "command:remote:Command"]
    assert len(commands) > 40
    assert {r.plain["connection"]["host_key"] for r in commands} == {TEST_HOST_KEY}
