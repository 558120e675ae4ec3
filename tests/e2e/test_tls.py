"""Certificates from a real ACME server: issuance, serving, renewal and failure, on the real
engine, against Debian's pebble (tests/images/pebble) with real HTTP-01 validation.

pebble runs on the stack's status network (where certbot runs too); `--add-host` makes each
of the stack's domains resolve, inside pebble alone, to nginx's address there, so pebble
fetches every challenge from nginx's port 80, from the webroot certbot wrote it to. The stack runs
`tls.mode: acme` with pebble's directory and the CA of pebble's own HTTPS listener as
`tls.ca_bundle`. The tests run in order on one stack: a first `pulumi up` while one domain
does not resolve here yet (pebble's /etc/hosts sends it elsewhere), the timer's next run
once it does, renewal, failure. The dashboard's view is read from a real collection (the
collector container, once) and the alert rules the page applies.
Not modelled: DNS (pebble resolves through /etc/hosts), rate limits, a CA's OCSP.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import ssl
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from components.names import status_network
from components.platform.dashboard import COLLECT_EVERY_S
from dashboard.alerts import evaluate
from dashboard.timestamps import parse_utc
from tests.harness.client import https_request
from tests.harness.local_stack import LocalStack
from tests.harness.traffic import RATE, assert_no_client_noticed, strict_clients, under_load

pytestmark = pytest.mark.e2e

PEBBLE_IMAGE = "aiia-standin/pebble:2"
# Load around a certbot run: long enough for its three certbot containers and the reload.
RENEWAL_LOAD_S = 60


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
        network = status_network(self.stack.prefix)
        nginx = self.stack.engine.request(
            "GET", f"/containers/{self.stack.container('nginx')}/json")
        address = nginx["NetworkSettings"]["Networks"][network]["IPAddress"]
        hosts = [f"--add-host={domain}:{address}" for domain in domains(self.stack)]
        docker("run", "-d", "--name", self.name, "--hostname", self.name,
               "--network", network, "-e", f"PEBBLE_NAMES={self.name}",
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

    def resolve(self, domain: str, address: str) -> None:
        """Point `domain` at `address` in pebble's /etc/hosts: what DNS not pointing here yet
        (or again) looks like to the CA. Go's resolver re-reads the file within 5 s."""
        lines = [line for line in docker("exec", self.name, "cat", "/etc/hosts").stdout
                 .splitlines() if domain not in line.split()[1:]]
        subprocess.run(["docker", "exec", "-i", self.name, "sh", "-c", "cat > /etc/hosts"],
                       input="\n".join([*lines, f"{address} {domain}", ""]), text=True,
                       check=True, timeout=30)
        time.sleep(6)

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


def nginx_address(stack: LocalStack) -> str:
    nginx = stack.engine.request("GET", f"/containers/{stack.container('nginx')}/json")
    return nginx["NetworkSettings"]["Networks"][status_network(stack.prefix)]["IPAddress"]


def dashboard_view(stack: LocalStack) -> tuple[dict, list[dict]]:
    """The stack's own collector's next collection (it re-reads its config when `pulumi up`
    changed it), and the alerts the page shows for it. Waited for, not run beside it: a
    second collector in its container would not fit its memory limit."""
    path = stack.root / "state" / "dashboard" / "status.json"
    asked = time.time()
    deadline = time.monotonic() + 3 * COLLECT_EVERY_S["local"]
    while True:
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            status = {}
        if (parse_utc(status.get("collected_at")) or 0) >= asked:
            break
        assert time.monotonic() < deadline, "the collector did not collect"
        time.sleep(1)
    return ({c["domain"]: c for c in status["certificates"]},
            [a for a in evaluate(status, time.time()) if a["area"] == "certificate"])


def replayed_stdout(stack: LocalStack, name: str) -> str:
    (applied,) = [a for a in stack.replay.state.values() if a.name == name]
    return applied.real["stdout"]


def test_pulumi_up_issues_what_it_can_and_a_domain_not_pointing_here_stays_not_yet_issued(
        local_stack, acme):
    stack, (pebble, config) = local_stack, acme
    waiting = stack.config["aiia:platform"]["status_domain"]
    pebble.resolve(waiting, "127.0.0.1")  # DNS not pointing here yet
    before = {domain: served_chain(stack, domain, None)[0] for domain in domains(stack)}
    run = stack.up(config)  # succeeds: a domain not issued does not fail the update
    output = replayed_stdout(stack, run.named("platform-certbot-issue").name)
    assert f"{waiting}: NOT ISSUED" in output, output[-3000:]
    roots = pebble.issuing_roots()
    assert "BEGIN CERTIFICATE" in roots
    issued = [domain for domain in domains(stack) if domain != waiting]
    for domain in issued:
        # Verified against pebble's root alone, with the host name checked.
        leaf = issued_chain(stack, domain, roots)
        assert leaf["serial"] != before[domain]["serial"], domain
    (bootstrap,) = served_chain(stack, waiting, None)
    assert bootstrap["serial"] == before[waiting]["serial"], "the bootstrap still serves"
    assert state(stack)["failed"] == [waiting]
    assert sorted(state(stack)["issued"]) == sorted(issued)
    certificates, alerts = dashboard_view(stack)
    assert certificates[waiting]["issued"] is False
    assert certificates[waiting]["renewal_outcome"] == "not-issued"
    assert all(certificates[domain]["issued"] is True for domain in issued)
    assert [(a["severity"], a["subject"]) for a in alerts] == [("critical", waiting)], alerts
    assert "Not yet issued" in alerts[0]["message"]


def test_the_timer_s_next_run_issues_the_domain_once_it_points_here(local_stack, acme):
    stack, (pebble, _) = local_stack, acme
    waiting = stack.config["aiia:platform"]["status_domain"]
    pebble.resolve(waiting, nginx_address(stack))
    # The switch from the bootstrap certificate to the issued one is a graceful reload.
    result = run_under_load(stack, ["bash", "-c", cron_command(stack)])
    log = (stack.root / "logs" / "certbot.log").read_text()
    assert result.returncode == 0, log[-3000:]
    roots = pebble.issuing_roots()
    for domain in domains(stack):
        issued_chain(stack, domain, roots)
    assert state(stack)["issued"] == [waiting] and state(stack)["failed"] == []
    # pebble validated each over HTTP-01 (never switched off: PEBBLE_VA_ALWAYS_VALID unset).
    logs = pebble.logs()
    for domain in domains(stack):
        assert f"http://{domain}:80/.well-known/acme-challenge/" in logs, logs[-3000:]
    # The private keys nginx reads: root's alone.
    for domain in domains(stack):
        key = stack.root / "nginx" / "tls" / domain / "privkey.pem"
        assert key.stat().st_mode & 0o777 == 0o600, key
        assert key.stat().st_uid == 0, key
    certificates, alerts = dashboard_view(stack)
    assert all(c["issued"] is True for c in certificates.values()), certificates
    assert alerts == []


# Mozilla's "intermediate" configuration, guidelines 5.7
# (https://ssl-config.mozilla.org/guidelines/5.7.json), written out here rather than read
# from the nginx template, so that the template is checked against it.
MOZILLA_INTERMEDIATE_TLS12 = {
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
}
MOZILLA_INTERMEDIATE_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                              "TLS_CHACHA20_POLY1305_SHA256"}


def handshake(stack: LocalStack, domain: str, roots: str, version: ssl.TLSVersion,
              cipher: str = "ALL") -> ssl.SSLSocket:
    """A handshake verified against `roots` at exactly `version` offering `cipher` (TLS 1.2
    and older); raises ssl.SSLError when refused. Security level 0, so that this client
    offers what it is told and only the server refuses."""
    context = ssl.create_default_context(cadata=roots)
    context.set_ciphers(f"{cipher}:@SECLEVEL=0")
    with warnings.catch_warnings():  # Python deprecates the old versions; that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    raw = socket.create_connection(("127.0.0.1", stack.https_port), timeout=10)
    try:
        return context.wrap_socket(raw, server_hostname=domain)
    except BaseException:
        raw.close()
        raise


def accepted(stack: LocalStack, domain: str, roots: str, version: ssl.TLSVersion,
             cipher: str = "ALL") -> ssl.SSLSocket | None:
    """The handshake, or None when the server refuses it with an alert."""
    try:
        return handshake(stack, domain, roots, version, cipher)
    except ssl.SSLCertVerificationError:
        raise
    except ssl.SSLError as error:
        assert "ALERT" in (error.reason or ""), error  # the server said no, not this client
        return None


def test_every_domain_serves_a_complete_chain_over_modern_tls_only(local_stack, acme):
    stack, (pebble, _) = local_stack, acme
    roots = pebble.issuing_roots()
    # Every TLS 1.2 suite this client's OpenSSL can offer to a certificate-based server,
    # one at a time (pre-shared-key and SRP suites need a secret this client has not got).
    offered = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    offered.set_ciphers("ALL:!PSK:!SRP:@SECLEVEL=0")
    tls12 = {c["name"] for c in offered.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert len(tls12) > 20, tls12
    for domain in domains(stack):
        # A complete chain: only pebble's root is trusted, so the handshake verifies only
        # if nginx sends the intermediate with the leaf.
        with handshake(stack, domain, roots, ssl.TLSVersion.TLSv1_3) as tls:
            assert tls.cipher()[0] in MOZILLA_INTERMEDIATE_TLS13
            assert tls.compression() is None
        for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            assert accepted(stack, domain, roots, old) is None, old
        suites = set()
        for cipher in sorted(tls12):
            tls = accepted(stack, domain, roots, ssl.TLSVersion.TLSv1_2, cipher)
            if tls is None:
                continue
            with tls:
                suites.add(cipher)
                assert tls.compression() is None
                # No stateless session ticket (its key would undo forward secrecy): nginx's
                # ssl_session_tickets off. (TLS 1.3 resumes from the server's cache alone.)
                assert not tls.session.has_ticket, (domain, cipher)
        # The key is ECDSA P-256: of Mozilla's list, exactly the ECDSA suites, and nothing
        # outside it (no CBC, no static RSA key exchange, nothing without forward secrecy).
        assert suites == {c for c in MOZILLA_INTERMEDIATE_TLS12 if "ECDSA" in c}, suites
        hsts = https_request(stack.https_port, domain, "/").headers["strict-transport-security"]
        assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 365 * 86400, hsts


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


def run_under_load(stack: LocalStack, command: list[str]) -> subprocess.CompletedProcess:
    """`command` (a certbot run that reloads nginx) while the browser-like load and the
    strict clients (which never retry) run through nginx to prod; asserts no client noticed
    and that traffic was still flowing when the command had finished (its reload with it)."""
    strict = strict_clients(stack, seconds=RENEWAL_LOAD_S)
    done = {}

    def action():
        done["run"] = subprocess.run(command, capture_output=True, text=True, timeout=300,
                                     check=False)
        done["flowing"] = all(client.running for client in strict)

    load, _ = under_load(stack, action, rate=RATE, total=int(RATE * RENEWAL_LOAD_S),
                         strict=strict)
    summary = load.summary()
    print("browser-like:", summary.line())
    assert done["flowing"], "the load ended before the reload: make RENEWAL_LOAD_S longer"
    assert summary.failures == 0 and summary.retries == 0, summary.line()
    assert_no_client_noticed(stack, strict)
    return done["run"]


def test_a_forced_renewal_is_served_after_a_graceful_reload_no_client_notices(
        local_stack, acme):
    stack, (pebble, _) = local_stack, acme
    domain = stack.domain("prod")
    roots = pebble.issuing_roots()
    (before,) = served_chain(stack, domain, roots)
    result = run_under_load(stack, [certbot_script(stack), "--force-renewal"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "nginx reloaded with the new certificates" in result.stdout
    (after,) = served_chain(stack, domain, roots)
    assert after["serial"] != before["serial"]


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
    assert f"{domain}: RENEWAL FAILED" in result.stdout
    assert sorted(state(stack)["failed"]) == sorted(domains(stack))
    assert state(stack)["domains"][domain] == "renewal-failed"
    (after,) = served_chain(stack, domain, roots)
    assert after["serial"] == before["serial"], "the previous certificate still serves"
    certificates, alerts = dashboard_view(stack)
    assert certificates[domain]["renewal_outcome"] == "renewal-failed"
    days_left = certificates[domain]["days_left"]
    (shown,) = [a for a in alerts if a["subject"] == domain]
    assert shown["severity"] == "warning"
    assert f"{days_left:.0f} days left" in shown["message"], shown
