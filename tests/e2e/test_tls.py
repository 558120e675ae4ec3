"""Certificates from a real ACME server: issuance, serving, renewal and failure, on the real
engine, against Debian's pebble (tests/images/pebble) with real HTTP-01 validation.

pebble runs on the stack's own Docker network; `--add-host` makes each of the stack's
domains resolve, inside pebble alone, to nginx's address there, so pebble fetches every
challenge from nginx's port 80, from the webroot certbot wrote it to. The stack runs
`tls.mode: acme` with pebble's directory and the CA of pebble's own HTTPS listener as
`tls.ca_bundle`. The tests run in order on one stack: issue, renew, fail, recover.
Not modelled: DNS (pebble resolves through /etc/hosts), rate limits, a CA's OCSP.
"""

from __future__ import annotations

import copy
import json
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.load import Load
from tests.harness.local_stack import LocalStack

pytestmark = pytest.mark.e2e

PEBBLE_IMAGE = "aiia-standin/pebble:2"


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          check=check)


def domains(stack: LocalStack) -> list[str]:
    platform = stack.config["aiia:platform"]
    return [env["domain"] for env in platform["environments"].values()] + \
        [platform["status_domain"]]


class Pebble:
    def __init__(self, stack: LocalStack, directory: Path):
        self.stack, self.name = stack, f"{stack.prefix}-test-pebble"
        self.ca_file = directory / "pebble-listener-ca.pem"

    def start(self) -> Pebble:
        nginx = self.stack.engine.request(
            "GET", f"/containers/{self.stack.container('nginx')}/json")
        address = nginx["NetworkSettings"]["Networks"][self.stack.prefix]["IPAddress"]
        hosts = [f"--add-host={domain}:{address}" for domain in domains(self.stack)]
        docker("run", "-d", "--name", self.name, "--hostname", self.name,
               "--network", self.stack.prefix, "-e", f"PEBBLE_NAMES={self.name}",
               "--memory", "128m", *hosts, PEBBLE_IMAGE)
        deadline = time.monotonic() + 30
        while b"Listening on" not in self.logs().encode():
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.3)
        self.ca_file.write_text(docker("exec", self.name, "cat", "/pebble-ca/ca.pem").stdout)
        return self

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def issuing_roots(self) -> str:
        """The root that signs what pebble issues (made at its start), from its management
        port."""
        return docker("exec", self.name, "curl", "-sS", "--cacert", "/pebble-ca/ca.pem",
                      "https://localhost:15000/roots/0").stdout

    @property
    def directory_url(self) -> str:
        return f"https://{self.name}:14000/dir"

    def stop(self) -> None:
        docker("stop", "-t", "2", self.name, check=False)

    def resume(self) -> None:
        docker("start", self.name)


def served_chain(stack: LocalStack, domain: str, roots: str | None) -> list[dict]:
    """The leaf nginx serves for `domain` (SNI): issuer, end date, serial; the handshake
    verified against `roots` alone, host name included (None: not verified)."""
    if roots:
        context = ssl.create_default_context(cadata=roots)
    else:
        context = ssl._create_unverified_context()  # noqa: S323 - only reading what is served
    with socket.create_connection(("127.0.0.1", stack.https_port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=domain) as tls:
        leaf = tls.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(leaf)
    text = subprocess.run(["openssl", "x509", "-noout", "-issuer", "-enddate", "-serial"],
                          input=pem, capture_output=True, text=True, check=True).stdout
    return [dict(line.split("=", 1) for line in text.strip().splitlines())]


def issued_chain(stack: LocalStack, domain: str, roots: str, timeout: float = 15) -> dict:
    """The leaf once it verifies against `roots`: `nginx -s reload` returns when the signal is
    sent, and the master starts the new workers a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return served_chain(stack, domain, roots)[0]
        except ssl.SSLCertVerificationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="module")
def acme(local_stack, tmp_path_factory):
    """The stack on tls.mode acme, from a pebble of its own."""
    pebble = Pebble(local_stack, tmp_path_factory.mktemp("pebble")).start()
    config = copy.deepcopy(local_stack.config)
    config["aiia:platform"]["tls"] = {"mode": "acme", "acme_directory_url": pebble.directory_url,
                                      "ca_bundle": str(pebble.ca_file),
                                      "email": "ops@example.test"}
    return pebble, config


def certbot_script(stack: LocalStack) -> str:
    return str(stack.root / "bin" / "certbot.sh")


def cron_command(stack: LocalStack) -> str:
    entry = (stack.root / "cron.d" / f"{stack.prefix}-certbot").read_text().splitlines()[-1]
    fields = entry.split(None, 6)  # m h dom mon dow user command
    assert fields[5] == "root", entry
    return fields[6]


def state(stack: LocalStack) -> dict:
    return json.loads((stack.root / "state" / "certbot.json").read_text())


def test_pulumi_up_issues_a_certificate_for_every_domain_that_nginx_then_serves(
        local_stack, acme):
    stack, (pebble, config) = local_stack, acme
    before = {domain: served_chain(stack, domain, None)[0] for domain in domains(stack)}
    run = stack.up(config)
    issue = run.named("platform-certbot-issue")
    assert issue is not None
    roots = pebble.issuing_roots()
    assert "BEGIN CERTIFICATE" in roots
    for domain in domains(stack):
        # Verified against pebble's root alone, with the host name checked.
        leaf = issued_chain(stack, domain, roots)
        assert leaf["serial"] != before[domain]["serial"], domain
    assert state(stack)["failed"] == []
    assert sorted(state(stack)["issued"]) == sorted(domains(stack))
    # pebble validated each over HTTP-01 (never switched off: PEBBLE_VA_ALWAYS_VALID unset).
    logs = pebble.logs()
    for domain in domains(stack):
        assert f"http://{domain}:80/.well-known/acme-challenge/" in logs, logs[-3000:]
    # The private keys nginx reads: root's alone.
    for domain in domains(stack):
        key = stack.root / "nginx" / "tls" / domain / "privkey.pem"
        assert key.stat().st_mode & 0o777 == 0o600, key


def test_the_renewal_job_when_nothing_is_due_exits_0_and_does_not_reload_nginx(
        local_stack, acme):
    stack = local_stack
    command = cron_command(stack)
    assert command.startswith(certbot_script(stack)), command
    # Exactly as cron runs it (certbot's random sleep comes only before a due renewal).
    workers = nginx_workers(stack)
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                            timeout=300, check=False)
    log = (stack.root / "logs" / "certbot.log").read_text()
    assert result.returncode == 0, log[-3000:]
    assert "nothing changed; nginx not reloaded" in log.splitlines()[-2]
    assert nginx_workers(stack) == workers, "no reload: the same workers serve"


def nginx_workers(stack: LocalStack) -> set[str]:
    out = stack.exec(stack.container("nginx"), "sh", "-c",
                     "for p in /proc/[0-9]*; do tr '\\000' ' ' < $p/cmdline 2>/dev/null "
                     "| grep -q 'worker proces[s]' && echo ${p#/proc/}; done; true").stdout
    return set(out.split())


def test_a_forced_renewal_is_served_after_a_graceful_reload_no_client_notices(
        local_stack, acme):
    stack, (pebble, _) = local_stack, acme
    domain = stack.domain("prod")
    roots = pebble.issuing_roots()
    (before,) = served_chain(stack, domain, roots)
    load = Load(stack.https_port, domain, rate=60, total=60 * 30, connections=4).start()
    time.sleep(3)
    result = subprocess.run([certbot_script(stack), "--force-renewal"], capture_output=True,
                            text=True, timeout=300, check=False)
    load.wait(timeout=90)
    load.stop()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "nginx reloaded with the new certificates" in result.stdout
    (after,) = served_chain(stack, domain, roots)
    assert after["serial"] != before["serial"]
    summary = load.summary()
    print("forced renewal:", summary.line())
    assert summary.failures == 0 and summary.retries == 0, summary.line()


def test_a_failed_renewal_keeps_the_certificate_serving_and_says_so(local_stack, acme):
    stack, (pebble, _) = local_stack, acme
    domain = stack.domain("prod")
    roots = pebble.issuing_roots()
    (before,) = served_chain(stack, domain, roots)
    pebble.stop()
    try:
        result = subprocess.run([certbot_script(stack), "--force-renewal"],
                                capture_output=True, text=True, timeout=300, check=False)
    finally:
        pebble.resume()
    assert result.returncode == 1, result.stdout[-3000:]
    assert "RENEWAL FAILED" in result.stdout
    assert state(stack)["failed"] == ["renewal"]
    (after,) = served_chain(stack, domain, roots)
    assert after["serial"] == before["serial"], "the previous certificate still serves"
