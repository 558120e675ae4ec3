"""The systems the host component provisions, and the little that differs between them.

Debian's current stable release and the previous one while it has LTS (the table in README.md,
"The host"). Every file the program places on the host is the same on each (each is checked
by the real programs of both releases, tests/rendered/test_host.py); only the package list
differs, in the packages step (templates/host/packages.sh.j2), which refuses any other
system with a message naming these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DebianRelease:
    version: str  # /etc/os-release VERSION_ID
    codename: str
    # What the release's support is, as the packages step says it on a host.
    support: str
    # Packages this release needs beside the common list, when the Docker package is
    # Debian's docker.io.
    docker_io_extras: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"Debian {self.version} ({self.codename})"

    @property
    def system(self) -> str:
        """Its host.system value (components/settings/host.py SYSTEMS): `${ID}-${VERSION_ID}`
        of its /etc/os-release."""
        return f"debian-{self.version}"


# Recommended first. Debian 13 split the docker CLI out of docker.io into docker-cli, which
# docker.io only Recommends (the packages step installs with --no-install-recommends); the
# Docker provider's ssh:// connection runs `docker system dial-stdio` on the host, so the
# CLI is needed. Debian 12's docker.io carries the CLI itself (there is no docker-cli).
DEBIAN_RELEASES = (
    DebianRelease("13", "trixie", "Debian's stable release (security support, then LTS "
                  "until June 2030)", docker_io_extras=("docker-cli",)),
    DebianRelease("12", "bookworm", "in Debian LTS until June 2028 (a subset of packages, "
                  "best effort): plan the move to Debian 13 (docs/runbooks.md, Moving a "
                  "Debian 12 host to Debian 13)"),
)


def packages_by_release(docker_package: str, common: tuple[str, ...]) -> dict[str, list[str]]:
    """{VERSION_ID: the packages the host needs on that release}."""
    return {release.version: [docker_package,
                              *(release.docker_io_extras if docker_package == "docker.io"
                                else ()),
                              *common]
            for release in DEBIAN_RELEASES}
