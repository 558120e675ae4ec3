"""components/host/systems.py: the supported Debian releases and what differs between them."""

from __future__ import annotations

from components.host.provision import PACKAGES
from components.host.systems import DEBIAN_RELEASES, packages_by_release
from components.settings.host import SYSTEMS


def test_debian_13_is_recommended_and_12_still_supported():
    assert [(release.version, release.codename) for release in DEBIAN_RELEASES] == [
        ("13", "trixie"), ("12", "bookworm")]
    assert "LTS until June 2028" in DEBIAN_RELEASES[1].support


def test_debian_13_gets_the_docker_cli_that_its_docker_io_only_recommends():
    packages = packages_by_release("docker.io", PACKAGES)
    assert packages["13"] == ["docker.io", "docker-cli", *PACKAGES]
    assert packages["12"] == ["docker.io", *PACKAGES]  # its docker.io carries the CLI


def test_docker_ce_brings_its_own_cli_on_every_release():
    packages = packages_by_release("docker-ce", PACKAGES)
    assert packages["13"] == packages["12"] == ["docker-ce", *PACKAGES]


def test_every_supported_release_is_a_host_system_value_with_its_docker_io_api():
    assert [release.system for release in DEBIAN_RELEASES] == list(SYSTEMS)
