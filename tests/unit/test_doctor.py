"""`make doctor` (scripts/doctor.py): each check's failure names the fix. Docker, ssh and the
route table are stand-ins here (tests/harness/fake_docker.py, scripts on PATH, a route file),
so the outcomes do not depend on this machine; the ports are real sockets on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import doctor
from scripts.pulumi_cli import pinned_version
from tests.harness.fake_docker import install, rule
from tests.harness.make import marked_venv, pulumi_cli_dir, run_make, stand_in

ROOT = Path(__file__).resolve().parents[2]
VERSION = pinned_version()


@pytest.fixture
def bin_dir(tmp_path, monkeypatch) -> Path:
    """First on PATH for this test: the stand-ins it installs there."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    return directory


def network(name: str, subnet: str) -> dict:
    return {"Name": name, "IPAM": {"Config": [{"Subnet": subnet, "Gateway": "x"}]}}


def docker_with(bin_dir: Path, networks: list[dict], nginx_ports: str = "") -> None:
    install(bin_dir, [
        rule(["version"], "27.5.1\n"),
        rule(["network", "ls"], "".join(f"id{i}\n" for i in range(len(networks)))),
        rule(["network", "inspect"], json.dumps(networks)),
        rule(["ps"], f"{nginx_ports}\n" if nginx_ports else ""),
    ])


# Docker

@pytest.mark.parametrize(("stderr", "what", "fix"), [
    ("permission denied while trying to connect to the Docker daemon socket at "
     "unix:///var/run/docker.sock: Get …: dial unix /var/run/docker.sock: connect: permission "
     "denied", "this user may not use /var/run/docker.sock", "sudo usermod -aG docker"),
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon "
     "running?", "the daemon does not answer", "sudo systemctl start docker"),
])
def test_docker_that_this_user_cannot_reach_is_named_with_its_fix(bin_dir, stderr, what, fix):
    install(bin_dir, [rule(["version"], "Client: 27.5.1\n", stderr + "\n", 1)])
    check = doctor.check_docker()
    assert check.status == "FAIL" and what in check.what and fix in check.fix


def test_docker_missing_or_elsewhere_fails(bin_dir, monkeypatch):
    monkeypatch.setenv("PATH", str(bin_dir))  # no docker at all
    missing = doctor.check_docker()
    assert missing.status == "FAIL" and "sudo apt install docker.io" in missing.fix
    rootless = doctor.check_docker("unix:///run/user/1000/docker.sock")
    assert rootless.status == "FAIL" and "mounts /var/run/docker.sock" in rootless.what


def test_docker_that_answers_passes(bin_dir):
    docker_with(bin_dir, [])
    assert doctor.check_docker() == doctor.Check("ok", "Docker 27.5.1, reachable by this user")


# The subnet

ROUTE_TABLE = """Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
tun0\t00001FAC\t00000000\t0001\t0\t0\t50\t0000FFFF\t0\t0\t0
br-1\t00001EAC\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


def test_routes_are_read_from_the_kernels_table(tmp_path):
    table = tmp_path / "route"
    table.write_text(ROUTE_TABLE)
    assert doctor.routes(table) == [
        ("eth0", ipaddress.ip_network("192.168.1.0/24")),
        ("tun0", ipaddress.ip_network("172.31.0.0/16")),
        ("br-1", ipaddress.ip_network("172.30.0.0/24")),
    ]


def test_a_subnet_that_a_vpn_routes_is_refused_with_a_free_one_suggested(tmp_path):
    table = tmp_path / "route"
    table.write_text(ROUTE_TABLE)
    check = doctor.check_subnet("172.31.0.0/24", "aiia-local",
                                {"other": [ipaddress.ip_network("172.30.0.0/24")]},
                                doctor.routes(table))
    assert check.status == "FAIL"
    # The Docker bridge's own route (br-1) is not reported twice.
    assert check.what == ("subnet 172.31.0.0/24 (aiia:platform.network_subnet) overlaps the "
                          "route to 172.31.0.0/16 on tun0")
    assert check.fix == "set aiia:platform.network_subnet to a free one, e.g. 172.29.0.0/24"


def test_a_subnet_of_another_docker_network_is_refused_and_its_own_is_not():
    taken = {"aiia-local": [ipaddress.ip_network("172.31.0.0/24")],
             "someone-else": [ipaddress.ip_network("172.31.0.0/16")]}
    check = doctor.check_subnet("172.31.0.0/24", "aiia-local", taken, [])
    assert check.status == "FAIL"
    assert "overlaps Docker network someone-else (172.31.0.0/16)" in check.what
    del taken["someone-else"]
    assert doctor.check_subnet("172.31.0.0/24", "aiia-local", taken,
                               [("br-x", ipaddress.ip_network("172.31.0.0/24"))]).status == "ok"


# The ports

def test_a_port_in_use_is_named_by_its_key(bin_dir):
    docker_with(bin_dir, [])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        (used,) = doctor.check_ports("127.0.0.1", {"https_port": port}, "aiia-local")
    assert used.status == "FAIL"
    assert used.what == f"port 127.0.0.1:{port} (aiia:platform.nginx.https_port) is in use"
    assert "aiia:platform.nginx.https_port to a free port" in used.fix


def test_a_port_held_by_the_stacks_own_nginx_is_fine(bin_dir):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        docker_with(bin_dir, [], nginx_ports=f"127.0.0.1:{port}->443/tcp")
        (ours,) = doctor.check_ports("127.0.0.1", {"https_port": port}, "aiia-local")
    assert ours == doctor.Check(
        "ok", f"port 127.0.0.1:{port} held by this stack's nginx (aiia-local-nginx)")


# The rest

def test_python_before_3_11_fails():
    assert doctor.check_python((3, 10, 12)).status == "FAIL"
    assert doctor.check_python((3, 11, 2)).status == "ok"


def test_the_local_stack_needs_linux():
    check = doctor.check_linux("Darwin")
    assert check.status == "FAIL" and "Linux or WSL2" in check.what


@pytest.mark.parametrize(("version", "status"), [("OpenSSH_8.4p1 Debian-5", "FAIL"),
                                                 ("OpenSSH_9.2p1 Debian-2+deb12u3", "ok")])
def test_openssh_must_know_knownhostscommand(bin_dir, version, status):
    stand_in(bin_dir / "ssh", f"#!/bin/sh\necho '{version}, OpenSSL 3.0.15' >&2\n")
    stand_in(bin_dir / "ssh-add", "#!/bin/sh\nexit 1\n")
    ssh, agent = doctor.check_ssh()[:2]
    assert ssh.status == status
    assert agent.status == "FAIL" and "ssh-add ~/.ssh/aiia_deploy" in agent.fix


def test_the_local_stack_is_checked_with_its_own_file(bin_dir, tmp_path, monkeypatch):
    """A project whose local stack publishes a port that is taken, on a subnet Docker uses."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        free = free_port()
        (tmp_path / "Pulumi.local.yaml").write_text(
            (ROOT / "Pulumi.local.yaml").read_text()
            .replace("http_port: 8080", f"http_port: {free}")
            .replace("https_port: 8443", f"https_port: {port}"))
        docker_with(bin_dir, [network("bridge", "172.17.0.0/16"),
                              network("vpn-ish", "172.31.0.0/20")])
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(doctor, "ROUTES", tmp_path / "no-route-table")
        checks = {check.what: check for check in doctor.checks_for("local")}
    assert checks[f"port 127.0.0.1:{free} free"].status == "ok"
    assert checks[f"port 127.0.0.1:{port} (aiia:platform.nginx.https_port) is in use"].status \
        == "FAIL"
    assert checks["subnet 172.31.0.0/24 (aiia:platform.network_subnet) overlaps Docker "
                  "network vpn-ish (172.31.0.0/20)"].status == "FAIL"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_doctor(tmp_path: Path, stack: str) -> subprocess.CompletedProcess:
    return run_make(marked_venv(tmp_path / "venv"), "doctor", f"STACK={stack}",
                    cli=pulumi_cli_dir(tmp_path / "cli", VERSION), env={"HOME": str(tmp_path)},
                    timeout=120)


def test_make_doctor_for_a_vps_stack_lists_every_check_and_each_fix(bin_dir, tmp_path):
    docker_with(bin_dir, [])
    stand_in(bin_dir / "ssh", "#!/bin/sh\necho 'OpenSSH_9.2p1 Debian-2' >&2\n")
    stand_in(bin_dir / "ssh-add", "#!/bin/sh\necho 'The agent has no identities.'\nexit 1\n")
    result = make_doctor(tmp_path, "prod")
    assert result.returncode == 2, result.stderr  # make's: doctor exited 1
    lines = result.stdout.splitlines()
    assert lines[:3] == [f"ok    Pulumi CLI {VERSION} ({tmp_path}/cli/bin/pulumi)",
                         f"ok    Python {'.'.join(map(str, sys.version_info[:3]))}",
                         "ok    openssl"]
    assert "ok    OpenSSH 9.2" in lines
    assert "      fix: mkdir -m 0700 ~/.ssh" in lines  # HOME is the test's: no ~/.ssh
    assert "      fix: eval \"$(ssh-agent)\"; ssh-add ~/.ssh/aiia_deploy" in lines
    assert "doctor: 2 of 7 checks failed for stack prod" in result.stderr
    (tmp_path / ".ssh").mkdir()
    stand_in(bin_dir / "ssh-add", "#!/bin/sh\necho '256 SHA256:x deploy (ED25519)'\n")
    ready = make_doctor(tmp_path, "prod")
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert ready.stdout.splitlines()[-1] == "doctor: this machine is ready for stack prod"
