"""components/settings/host.py: the host section."""

import pytest

from tests.harness.settings import parse, problems_of


def test_only_the_platform_stack_provisions_the_host():
    message = problems_of(lambda raw: raw["host"].update(provision={"admin_ssh_keys": []}),
                          stack="staging")
    assert "host.provision is set on a stack that does not provision the host" in message
    message = problems_of(lambda raw: raw["host"].update(provision={}), stack="local")
    assert "host.provision is set on a stack that does not provision the host" in message


VPS_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def test_root_is_refused_and_the_deploy_user_is_the_default():
    message = problems_of(lambda raw: raw["host"]["ssh"].update(user="root"))
    assert "aiia:host.ssh.user=root: the first `pulumi up` switches root logins off" in message
    assert "set host.ssh.user: deploy (the default)" in message

    def no_user(raw):
        del raw["host"]["ssh"]["user"]

    settings = parse("prod", no_user)
    assert settings.host.ssh.user == "deploy"
    assert settings.host.docker_host == "ssh://deploy@vps.eduaiia.com"


def test_docker_host_is_derived_from_host_ssh_and_must_agree_with_it():
    def without(raw):  # the stack files give none: it is derived
        raw["host"]["ssh"]["port"] = 2222

    assert parse("prod", without).host.docker_host == "ssh://deploy@vps.eduaiia.com:2222"
    for other in ("ssh://deploy@203.0.113.9", "ssh://admin@vps.eduaiia.com",
                  "ssh://deploy@vps.eduaiia.com:2222", "tcp://vps.eduaiia.com:2375"):
        message = problems_of(lambda raw, other=other: raw["host"].update(docker_host=other))
        assert f"aiia:host.docker_host={other!r} does not reach the machine of host.ssh " \
               "(ssh://deploy@vps.eduaiia.com)" in message
        assert "remove host.docker_host (it is derived from host.ssh)" in message


def test_the_line_ssh_keyscan_prints_is_taken_as_the_host_key():
    settings = parse("prod", lambda raw: raw["host"]["ssh"].update(
        host_key=f"vps.eduaiia.com {VPS_HOST_KEY}\n"))
    assert settings.host.ssh.host_key == VPS_HOST_KEY


def test_a_pasted_private_key_is_refused_and_called_leaked():
    private = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
               "-----END OPENSSH PRIVATE KEY-----\n")
    message = problems_of(lambda raw: raw["host"]["ssh"].update(host_key=private))
    assert "aiia:host.ssh.host_key holds a PRIVATE key" in message
    assert "Treat the private key as leaked" in message
    message = problems_of(lambda raw: raw["host"].setdefault("provision", {}).update(
        admin_ssh_keys=[private]))
    assert "aiia:host.provision.admin_ssh_keys[0] holds a PRIVATE key" in message


@pytest.mark.parametrize("root_dir", ["/srv/aiia\n* * * * * root curl x|sh #", "/srv/$(id)",
                                      "/srv/a b", "/srv/../etc", "srv/aiia"])
def test_a_root_dir_that_could_break_out_of_a_shell_or_cron_line_is_refused(root_dir):
    message = problems_of(lambda raw: raw["host"].update(root_dir=root_dir))
    assert f"aiia:host.root_dir={root_dir!r} must be an absolute path of plain names" in message


@pytest.mark.parametrize("address", ["vps.example.com;id", "vps\nexample.com", "-oProxyCommand=x"])
def test_the_ssh_host_must_be_a_host_name_or_an_address(address):
    def change(raw):
        raw["host"]["ssh"]["host"] = address

    assert f"aiia:host.ssh.host={address!r} is neither a host name nor an IP address" \
        in problems_of(change)


def test_an_ssh_host_runs_debian_13_unless_host_system_says_debian_12():
    """host.system decides what the program asks of the engine: Debian 13's docker.io (API
    1.45) takes a health check's start_interval (API 1.44), Debian 12's (1.41) does not."""
    prod = parse("prod").host
    assert (prod.system, prod.engine_api_version, prod.health_start_interval) == \
        ("debian-13", "1.45", "1s")
    bookworm = parse("prod", lambda raw: raw["host"].update(system="debian-12")).host
    assert (bookworm.engine_api_version, bookworm.health_start_interval) == ("1.41", None)
    message = problems_of(lambda raw: raw["host"].update(system="ubuntu-24.04"))
    assert "aiia:host.system='ubuntu-24.04' is not a system the program provisions; set it " \
           "to one of debian-13, debian-12" in message


def test_docker_api_version_overrides_what_the_system_says_and_must_be_quoted():
    """docker-ce on Debian 12, or an operator who wants the field left out: the engine's own
    version decides; numbers compare as numbers."""
    newer = parse("prod", lambda raw: raw["host"].update(system="debian-12",
                                                         docker_api_version="1.52")).host
    assert newer.health_start_interval == "1s"
    older = parse("prod", lambda raw: raw["host"].update(docker_api_version="1.9")).host
    assert older.health_start_interval is None
    message = problems_of(lambda raw: raw["host"].update(docker_api_version=1.45))
    assert "aiia:host.docker_api_version=1.45 must be an Engine API version in quotes, " \
           "e.g. \"1.45\"" in message


def test_a_local_stack_has_no_system_and_no_start_interval_unless_its_docker_says_so():
    """The developer's own Docker (this machine's is 20.10, API 1.41): left out unless
    host.docker_api_version names an engine that takes it."""
    local = parse("local").host
    assert (local.system, local.health_start_interval) == (None, None)
    assert parse("local", lambda raw: raw["host"].update(
        docker_api_version="1.45")).host.health_start_interval == "1s"
    message = problems_of(lambda raw: raw["host"].update(system="debian-13"), stack="local")
    assert "aiia:host.system='debian-13' is set on a local stack" in message
    assert "host.docker_api_version instead" in message
