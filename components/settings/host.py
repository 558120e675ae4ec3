"""`aiia:host`: the machine everything runs on, and how the program reaches it over SSH."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from components.settings.checks import (
    NAMESPACE,
    Problems,
    check_host_address,
    check_plain_path,
    check_positive,
    config_object,
    typed_fields,
)
from components.settings.provision import (
    USER_RE,
    ProvisionSettings,
    host_key_line,
    parse_provision,
    ssh_key_problem,
)

# A local stack's host files live in the checkout (ignored by git), where a reboot keeps
# them; a relative host.root_dir of a local stack is taken from the checkout too.
CHECKOUT = Path(__file__).resolve().parents[2]
LOCAL_ROOT = ".local-host"

# The systems an ssh host may run (components/host/systems.py lists the same releases, with
# what provisioning installs on each), with the Engine API version of the docker.io each
# ships: Debian 13's 26.1 speaks 1.45, Debian 12's 20.10 speaks 1.41 (moby `api/common.go`
# DefaultVersion at v26.1.5 and v20.10.24). Recommended first.
SYSTEMS = {"debian-13": "1.45", "debian-12": "1.41"}
# A health check's start_interval (the probe interval during its start period, until the
# first success) is API 1.44, Docker 25. The Docker provider's client refuses to send one to
# an older engine: docker/docker v28.5.2 `client/container_create.go` `ContainerCreate`
# fails with `"specify health-check start interval" requires API version 1.44, but the
# Docker daemon API version is 1.41` (pulumi-docker 5.2.0 links v28.5.2 and negotiates the
# version, terraform-provider-docker v4.5.0 `internal/provider/config.go`). So the program
# declares it only where the host's engine is known to take it.
START_INTERVAL_API = "1.44"
HEALTH_START_INTERVAL = "1s"
API_VERSION_RE = re.compile(r"^1\.\d{1,3}$")


def api_at_least(version: str, minimum: str) -> bool:
    """Engine API versions compared as numbers ("1.9" < "1.44")."""
    def number(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))
    return number(version) >= number(minimum)


@dataclass(frozen=True)
class SshSettings:
    host: str
    # The deploy user (README, "The host", step 1), never root: the host's sshd refuses root
    # logins once provisioned (templates/host/sshd.conf.j2).
    user: str = "deploy"
    port: int = 22
    # The VPS's own public host key (`ssh-keyscan -t ed25519 <host>`, checked against the
    # provider's console): pulumi-command's remote.Command ignores host keys unless
    # ConnectionArgs.host_key is set (pulumi_command 1.2.1, remote/_inputs.py), so without
    # it a man in the middle would be handed every secret the program writes.
    host_key: str | None = None

    @property
    def docker_host(self) -> str:
        """The Docker provider's host on this machine: the same user, address and port."""
        port = "" if self.port == 22 else f":{self.port}"
        return f"ssh://{self.user}@{self.host}{port}"


@dataclass(frozen=True)
class HostSettings:
    """The machine everything runs on."""

    kind: str  # "local": the developer's Docker, commands run here; "ssh": a VPS
    memory_mb: int = 512
    swap_mb: int = 1024
    os_reserve_mb: int = 104  # Debian 13's host services, measured: Pulumi.prod.yaml
    root_dir: str = "/srv/aiia"
    # The Docker provider's host: on an ssh host derived from host.ssh (ssh://user@host:port)
    # and refused when given otherwise; on a local one, None (the local socket) or any URL.
    docker_host: str | None = None
    ssh: SshSettings | None = None
    disk_gb: int = 20  # the host's disk (backups get platform.backup.disk_budget_mb of it)
    provision: ProvisionSettings | None = None  # an ssh host only (components/host/provision.py)
    # An ssh host's system (SYSTEMS): what provisioning installs, and the Engine API its
    # docker.io speaks. Checked on the host by the packages step (a mismatch stops there).
    system: str | None = None
    # The Engine API version of the host's Docker (`docker version --format
    # '{{.Server.APIVersion}}'`), when host.system's docker.io does not say it: a local
    # stack's (the developer's own Docker; unset, it is taken for one older than 1.44), or
    # docker-ce on a VPS. Checked against the engine before any container (the preflight).
    docker_api_version: str | None = None

    @property
    def engine_api_version(self) -> str | None:
        """The Engine API version the config says the host's Docker speaks, or None."""
        if self.docker_api_version:
            return self.docker_api_version
        docker_io = self.provision is None or self.provision.docker_package == "docker.io"
        if self.kind == "ssh" and self.system in SYSTEMS and docker_io:
            return SYSTEMS[self.system]
        return None

    @property
    def health_start_interval(self) -> str | None:
        """Every health check's start_interval, or None where the engine cannot take one
        (the field is then left out, not sent)."""
        version = self.engine_api_version
        if version and api_at_least(version, START_INTERVAL_API):
            return HEALTH_START_INTERVAL
        return None


def parse_host(raw: Mapping[str, Any], problems: Problems,
               owns_platform: bool = True) -> HostSettings:
    values = typed_fields(HostSettings, config_object(raw, "host", problems), "host", problems)
    kind = values.get("kind", "ssh")
    if kind not in ("local", "ssh"):
        problems.add(f"{NAMESPACE}:host.kind={kind!r} must be 'local' or 'ssh'")
        kind = "local"
    ssh_raw = values.pop("ssh", None)
    provision_raw = values.pop("provision", None)
    ssh = _parse_ssh(ssh_raw, kind, problems)
    values["kind"] = kind
    if kind == "local":
        values["root_dir"] = str(CHECKOUT / str(values.get("root_dir", LOCAL_ROOT)))
    provision = _parse_host_provision(provision_raw, kind, owns_platform, problems)
    if ssh is not None and kind == "ssh":
        _check_ssh(ssh, problems)
        values["docker_host"] = _docker_host(values.get("docker_host"), ssh, problems)
    values["system"] = _system(values.get("system"), kind, problems)
    _check_api_version(values.get("docker_api_version"), problems)
    host = HostSettings(ssh=ssh, provision=provision, **values)
    _check_machine(host, problems)
    return host


def _parse_ssh(value: Any, kind: str, problems: Problems) -> SshSettings | None:
    """`host.ssh`, which an ssh host cannot do without."""
    ssh = None
    if value is not None:
        values = typed_fields(SshSettings, value if isinstance(value, Mapping) else {},
                              "host.ssh", problems)
        if "host" not in values:
            problems.add(f"{NAMESPACE}:host.ssh.host is missing; set it to the VPS address")
        else:
            values["host_key"] = host_key_line(values.get("host_key"))
            ssh = SshSettings(**values)
    if kind == "ssh" and ssh is None:
        problems.add(
            f"{NAMESPACE}:host.ssh is missing; an ssh host needs host.ssh.host "
            "(and host.ssh.user, default deploy) so files and commands reach it"
        )
    return ssh


def _system(given: Any, kind: str, problems: Problems) -> str | None:
    """`host.system`: an ssh host's, the recommended one unless given; none on a local one."""
    if kind == "local":
        if given is not None:
            problems.add(f"{NAMESPACE}:host.system={given!r} is set on a local stack, whose "
                         "host is the developer's own machine: remove it (say what its Docker "
                         "speaks with host.docker_api_version instead)")
        return None
    system = str(given) if given is not None else next(iter(SYSTEMS))
    if system not in SYSTEMS:
        problems.add(f"{NAMESPACE}:host.system={given!r} is not a system the program "
                     f"provisions; set it to one of {', '.join(SYSTEMS)} (what the VPS runs: "
                     "/etc/os-release), debian-13 recommended")
        return None
    return system


def _check_api_version(given: Any, problems: Problems) -> None:
    if given is not None and not (isinstance(given, str) and API_VERSION_RE.match(given)):
        problems.add(f"{NAMESPACE}:host.docker_api_version={given!r} must be an Engine API "
                     "version in quotes, e.g. \"1.45\" (what `docker version --format "
                     "'{{.Server.APIVersion}}'` prints on the host)")


def _docker_host(given: Any, ssh: SshSettings, problems: Problems) -> str:
    """The Docker provider's ssh:// URL: host.ssh's, which a given one must agree with."""
    if given is None:
        return ssh.docker_host
    try:
        url = urlsplit(str(given))
        same = (url.scheme == "ssh" and url.username == ssh.user and url.hostname == ssh.host
                and (url.port or 22) == ssh.port and url.path in ("", "/"))
    except ValueError:
        same = False
    if not same:
        problems.add(f"{NAMESPACE}:host.docker_host={given!r} does not reach the machine of "
                     f"host.ssh ({ssh.docker_host}): the containers would go to another Docker "
                     "engine than the host's files and commands; remove host.docker_host (it "
                     "is derived from host.ssh) or make the two agree")
    return str(given)


def _parse_host_provision(value: Any, kind: str, owns_platform: bool,
                          problems: Problems) -> ProvisionSettings | None:
    """`host.provision`: only an ssh host's platform stack provisions the host."""
    if kind == "ssh" and owns_platform:
        return parse_provision(value, problems)
    if value is not None:
        problems.add(f"{NAMESPACE}:host.provision is set on a stack that does not provision the "
                     "host: only an ssh host's platform stack (platform.owner: true) does; "
                     "remove it from this stack")
    return None


def _check_machine(host: HostSettings, problems: Problems) -> None:
    """The machine's memory, swap, disk and root directory."""
    for name in ("memory_mb", "os_reserve_mb"):
        check_positive(getattr(host, name), f"{NAMESPACE}:host.{name}", problems)
    if host.swap_mb < 0:
        problems.add(f"{NAMESPACE}:host.swap_mb={host.swap_mb} must be 0 or more")
    check_plain_path(host.root_dir, f"{NAMESPACE}:host.root_dir", problems)
    check_positive(host.disk_gb, f"{NAMESPACE}:host.disk_gb", problems)
    if host.disk_gb > 0 and host.swap_mb > host.disk_gb * 1024 // 4:
        problems.add(f"{NAMESPACE}:host.swap_mb={host.swap_mb} would take over a quarter of the "
                     f"{host.disk_gb} GB disk (host.disk_gb); images, volumes and backups need "
                     f"it: use at most {host.disk_gb * 1024 // 4} MB")


def _check_ssh(ssh: SshSettings, problems: Problems) -> None:
    key = f"{NAMESPACE}:host.ssh"
    check_host_address(ssh.host, f"{key}.host", problems)
    if not 1 <= ssh.port <= 65535:
        problems.add(f"{key}.port={ssh.port} is not a TCP port (1–65535)")
    elif ssh.port in (80, 443):
        problems.add(f"{key}.port={ssh.port} clashes with nginx, which publishes 80 and 443; "
                     "keep SSH on 22 or another free port")
    if not USER_RE.match(ssh.user):
        problems.add(f"{key}.user={ssh.user!r} is not a valid Linux user name")
    elif ssh.user == "root":
        problems.add(f"{key}.user=root: the first `pulumi up` switches root logins off (sshd "
                     "PermitRootLogin no), so that run's next command, every later run and you "
                     "would be locked out; create the deploy user as README.md \"The host\" "
                     "step 1 shows and set host.ssh.user: deploy (the default)")
    if ssh.host_key is None:
        problems.add(
            f"{key}.host_key is missing: without it pulumi-command accepts any host key, so a "
            f"man in the middle would receive every secret. Pin the VPS's: run `ssh-keyscan -t "
            f"ed25519 {ssh.host}`, check its fingerprint (`ssh-keygen -lf -`) against the one "
            "the provider's console shows, and paste the line it printed here")
    else:
        problem = ssh_key_problem(ssh.host_key, f"{key}.host_key")
        if problem:
            problems.add(problem)
