"""`make doctor`: what this machine needs before a stack runs from it, each failing check
with its fix. `make local` runs it before it builds anything.

    python3 -m scripts.doctor [--stack local]

Every stack: the Pulumi CLI (scripts/pulumi_cli.py), Python 3.11 or later, openssl. A local
stack (host.kind: local): Linux or WSL2 with the tools its host scripts use (GNU stat,
flock, setsid); Docker reachable through /var/run/docker.sock by this user (the dashboard
mounts that socket); its nginx ports free, or held by its own nginx already; its Docker
subnet (platform.network_subnet) clear of every other Docker network and every route (a
VPN, the LAN). A VPS stack (host.kind: ssh): OpenSSH 8.5 or later (the Docker provider
pins the host key with KnownHostsCommand), a key in ssh-agent, ~/.ssh, the docker CLI.
Exit 1 when a check fails; a warning does not. Run where the stack files are.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import platform
import re
import shutil
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.settings.platform import NginxSettings, PlatformSettings
from scripts.pulumi_cli import describe, find_cli, pinned_version
from scripts.stack_file import DeliveryError, config_of, stack_path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ROUTES = Path("/proc/net/route")
DOCKER_SOCKET = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class Check:
    status: str  # "ok", "warn" or "FAIL"
    what: str
    fix: str = ""


def run(*command: str) -> subprocess.CompletedProcess | None:
    """The command's result, None when it is not installed."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30,
                              check=False)
    except FileNotFoundError:
        return None


def check_cli() -> Check:
    version = pinned_version()
    found = find_cli()
    _, message = describe(found, version)
    if found is None:
        return Check("FAIL", "Pulumi CLI: none found",
                     f"make pulumi-cli (installs {version}, the SDK's, into .pulumi-cli/)")
    return Check("warn" if found.version != version else "ok", message)


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Check:
    shown = ".".join(map(str, version))
    if version < (3, 11):
        return Check("FAIL", f"Python {shown}: the program needs 3.11 or later",
                     "install python3.11 (and python3.11-venv), then rm -rf .venv and run "
                     "make with PYTHON=python3.11")
    return Check("ok", f"Python {shown}")


def check_command(name: str, package: str) -> Check:
    if shutil.which(name) is None:
        return Check("FAIL", f"{name}: not installed", f"sudo apt install {package}")
    return Check("ok", name)


def check_linux(system: str = platform.system()) -> Check:
    if system != "Linux":
        return Check("FAIL", f"{system}: the local stack runs on Linux or WSL2 (its host scripts "
                     "use GNU stat -c, flock and setsid)", "use a Linux machine or WSL2")
    missing = [tool for tool in ("stat", "flock", "setsid") if shutil.which(tool) is None]
    if missing:
        return Check("FAIL", f"Linux tools missing: {' '.join(missing)}",
                     "sudo apt install coreutils util-linux")
    return Check("ok", "Linux, with GNU stat, flock and setsid")


def check_docker(docker_host: str | None = None) -> Check:
    docker_host = docker_host if docker_host is not None else os.environ.get("DOCKER_HOST")
    if docker_host and docker_host != DOCKER_SOCKET:
        return Check("FAIL", f"Docker: DOCKER_HOST={docker_host}; the local stack's dashboard "
                     "mounts /var/run/docker.sock (a rootful Docker: rootless Docker and "
                     "Podman are not covered)", f"unset DOCKER_HOST (or set it to {DOCKER_SOCKET})")
    result = run("docker", "version", "--format", "{{.Server.Version}}")
    if result is None:
        return Check("FAIL", "Docker: no docker command",
                     "sudo apt install docker.io (Debian, Ubuntu), then add yourself to the "
                     "docker group: sudo usermod -aG docker \"$USER\" and log in again")
    if result.returncode == 0:
        return Check("ok", f"Docker {result.stdout.strip()}, reachable by this user")
    error = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no answer"
    if "permission denied" in error.lower():
        return Check("FAIL", "Docker: this user may not use /var/run/docker.sock",
                     "sudo usermod -aG docker \"$USER\", then log out and back in (or: "
                     "newgrp docker)")
    return Check("FAIL", f"Docker: the daemon does not answer ({error})",
                 "sudo systemctl start docker (WSL2 without systemd: sudo service docker "
                 "start, or Docker Desktop's WSL integration)")


def check_ssh() -> list[Check]:
    checks = []
    result = run("ssh", "-V")
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", (result.stderr + result.stdout) if result else "")
    if match is None:
        checks.append(Check("FAIL", "OpenSSH: no ssh client", "sudo apt install openssh-client"))
    elif (int(match[1]), int(match[2])) < (8, 5):
        checks.append(Check("FAIL", f"OpenSSH {match[1]}.{match[2]}: the Docker provider's ssh "
                            "needs 8.5 or later (KnownHostsCommand pins the VPS's host key)",
                            "upgrade openssh-client (Debian 12 has 9.2)"))
    else:
        checks.append(Check("ok", f"OpenSSH {match[1]}.{match[2]}"))
    agent = run("ssh-add", "-l")
    if agent is None or agent.returncode != 0:
        checks.append(Check("FAIL", "ssh-agent: no key (both pulumi-command and the Docker "
                            "provider log in with the agent's keys)",
                            "eval \"$(ssh-agent)\"; ssh-add ~/.ssh/aiia_deploy"))
    else:
        checks.append(Check("ok", "ssh-agent holds a key"))
    if not (Path.home() / ".ssh").is_dir():
        checks.append(Check("FAIL", "~/.ssh is missing (the Docker provider's shared SSH "
                            "connection keeps its socket there)", "mkdir -m 0700 ~/.ssh"))
    checks.append(check_command("docker", "docker.io"))  # make logs, exec over ssh://
    return checks


def port_free(address: str, port: int) -> str:
    """'free', 'in use' or 'unknown' (a privileged port this user cannot test)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            return "unknown" if error.errno == errno.EACCES else "in use"
    return "free"


def published_by(container: str) -> str:
    """What `docker ps` says the container publishes (e.g. '127.0.0.1:8443->443/tcp, …')."""
    result = run("docker", "ps", "--filter", f"name=^/{container}$", "--format", "{{.Ports}}")
    return result.stdout if result and result.returncode == 0 else ""


def check_ports(address: str, ports: dict[str, int], prefix: str) -> list[Check]:
    checks, own = [], None
    for key, port in ports.items():
        state = port_free(address, port)
        if state == "in use":
            own = published_by(f"{prefix}-nginx") if own is None else own
            if f":{port}->" in own:
                state = "ours"
        if state == "in use":
            checks.append(Check(
                "FAIL", f"port {address}:{port} (aiia:platform.nginx.{key}) is in use",
                f"stop what holds it (sudo ss -ltnp 'sport = :{port}' names it) or set "
                f"aiia:platform.nginx.{key} to a free port in the stack file"))
        else:
            checks.append(Check("warn" if state == "unknown" else "ok", {
                "free": f"port {address}:{port} free",
                "ours": f"port {address}:{port} held by this stack's nginx ({prefix}-nginx)",
                "unknown": f"port {address}:{port}: below 1024, not testable as this user",
            }[state]))
    return checks


def docker_networks() -> dict[str, list[Network]]:
    """Every Docker network's subnets, by name."""
    listed = run("docker", "network", "ls", "-q")
    if listed is None or listed.returncode != 0 or not listed.stdout.split():
        return {}
    inspected = run("docker", "network", "inspect", *listed.stdout.split())
    if inspected is None or inspected.returncode != 0:
        return {}
    return {network["Name"]: [ipaddress.ip_network(config["Subnet"], strict=False)
                              for config in ((network.get("IPAM") or {}).get("Config") or [])
                              if config.get("Subnet")]
            for network in json.loads(inspected.stdout)}


def routes(table: Path | None = None) -> list[tuple[str, Network]]:
    """This machine's IPv4 routes but the default one, as (interface, network)."""
    table = table or ROUTES
    found = []
    for line in table.read_text().splitlines()[1:] if table.exists() else []:
        fields = line.split()
        if len(fields) < 8 or int(fields[7], 16) == 0:
            continue
        destination, mask = (socket.inet_ntoa(struct.pack("<L", int(fields[i], 16)))
                             for i in (1, 7))
        found.append((fields[0], ipaddress.ip_network(f"{destination}/{mask}", strict=False)))
    return found


def free_subnet(taken: list[Network]) -> str:
    for third in range(256):
        for second in range(31, 15, -1):
            candidate = ipaddress.ip_network(f"172.{second}.{third}.0/24")
            if not any(candidate.overlaps(network) for network in taken):
                return str(candidate)
    return "a free private /24"


def check_subnet(subnet: str, prefix: str, networks: dict[str, list[Network]],
                 routed: list[tuple[str, Network]]) -> Check:
    mine = ipaddress.ip_network(subnet, strict=False)
    clashes = [f"Docker network {name} ({network})" for name, subnets in networks.items()
               for network in subnets if network.overlaps(mine)
               and not (name == prefix and network == mine)]
    docker_subnets = [network for subnets in networks.values() for network in subnets]
    clashes += [f"the route to {network} on {interface}" for interface, network in routed
                if network.overlaps(mine) and network not in docker_subnets]
    if not clashes:
        return Check("ok", f"subnet {subnet} (aiia:platform.network_subnet) clear")
    taken = docker_subnets + [network for _, network in routed]
    return Check("FAIL", f"subnet {subnet} (aiia:platform.network_subnet) overlaps "
                 f"{', '.join(clashes)}",
                 f"set aiia:platform.network_subnet to a free one, e.g. {free_subnet(taken)}")


def checks_for(stack: str) -> list[Check]:
    config = config_of(stack_path(stack).read_text(), f"Pulumi.{stack}.yaml")
    checks = [check_cli(), check_python(), check_command("openssl", "openssl")]
    if (config.get("aiia:host") or {}).get("kind", "ssh") != "local":
        return checks + check_ssh()
    platform_raw: dict[str, Any] = config.get("aiia:platform") or {}
    nginx = platform_raw.get("nginx") or {}
    prefix = str(config.get("aiia:prefix", "aiia"))
    docker = check_docker()
    checks += [check_linux(), docker]
    ports = {key: int(nginx.get(key, getattr(NginxSettings, key)))
             for key in ("http_port", "https_port")}
    checks += check_ports(str(nginx.get("bind_address", NginxSettings.bind_address)), ports,
                          prefix)
    if docker.status == "ok":
        checks.append(check_subnet(
            str(platform_raw.get("network_subnet", PlatformSettings.network_subnet)), prefix,
            docker_networks(), routes()))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="local")
    args = parser.parse_args(argv)
    try:
        checks = checks_for(args.stack)
    except DeliveryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for check in checks:
        print(f"{check.status:<5} {check.what}")
        if check.fix:
            print(f"      fix: {check.fix}")
    failed = [check for check in checks if check.status == "FAIL"]
    if failed:
        print(f"doctor: {len(failed)} of {len(checks)} checks failed for stack {args.stack}; "
              "fix them and run it again (make doctor)", file=sys.stderr)
        return 1
    print(f"doctor: this machine is ready for stack {args.stack}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
