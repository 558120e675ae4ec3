"""components/settings/host.py: the host section."""

from tests.harness.settings import problems_of


def test_only_the_platform_stack_provisions_the_host():
    message = problems_of(lambda raw: raw["host"].update(provision={"admin_ssh_keys": []}),
                          stack="staging")
    assert "host.provision is set on a stack that does not provision the host" in message
    message = problems_of(lambda raw: raw["host"].update(provision={}), stack="local")
    assert "host.provision is set on a stack that does not provision the host" in message
