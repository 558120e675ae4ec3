"""The nginx of the stand-in image accepts the full rendered tree and, started from it,
behaves as designed.

nginx runs from aiia-standin/nginx:1 (Debian forky's nginx 1.30, tests/images/nginx; the
host's bookworm nginx 1.22 is too old for the program's configuration): a `docker run --rm`
per command, with the scratch directory mounted at its own path, the running server on the
host's network and under the memory limit the program gives nginx. The rendered files are
copied into that directory with a small, explicit map from the container's paths to the
copy's (CONTAINER_PATHS); for the running server the listen ports and upstream addresses are
also mapped to free 127.0.0.1 ports. The TLS certificates are made by the program's own
bootstrap script, pointed at the copy. A tiny Python server stands in for the app (what it
answers is in StandInApp).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import http.client
import ipaddress
import itertools
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components.settings import parse_settings
from tests.harness.program import host_files, host_scripts, run_program, stack_config
from tests.rendered.conftest import (
    IS_ROOT,
    STACKS,
    Rendered,
    free_port,
    replace_exactly,
    run,
    running,
    scratch_dir,
    stack_secrets,
    write_tree,
)

pytestmark = pytest.mark.rendered

IMAGE = "aiia-standin/nginx:1"  # contract: tests/images/CONTRACT.md#nginx
BUILD_IMAGE = "bash tests/images/build-standins.sh nginx"
# keepalive_min_timeout, which the program's nginx.conf sets, is new in nginx 1.27.4.
MINIMUM_VERSION = (1, 27, 4)
# Container path → path in the test copy (relative to its scratch directory, which the
# container mounts at the same path). /etc/nginx/mime.types stays: the image ships it.
CONTAINER_PATHS = {
    "/etc/aiia-nginx": "conf",  # the host's {root}/nginx, mounted read-only
    "/var/www/aiia": "www",  # the host's {root}/www (static files, ACME webroot), read-only
    "/var/log/aiia-nginx": "logs",  # the host's {root}/logs/nginx
    "/var/cache/nginx": "cache",  # the cache volume
    "/var/run/nginx.pid": "run/nginx.pid",
}
SECURITY_HEADERS = ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options",
                    "Referrer-Policy", "Content-Security-Policy")
ACCESS_LOG_FIELDS = {"time", "addr", "env", "host", "method", "uri", "status", "bytes",
                     "request_time", "upstream", "upstream_status", "release"}  # architecture.md


@dataclass
class NginxTree:
    directory: Path
    config: Path
    tls: Path
    www: Path
    logs: Path
    tls_bootstrap: str  # the program's bootstrap script, pointed at this copy
    domains: list[str]

    def command(self, *args: str) -> list[str]:
        """nginx's command line in the container, where the copy has the same paths."""
        return ["nginx", "-p", f"{self.directory}/", "-e", str(self.logs / "startup-error.log"),
                "-c", str(self.config), *args]

    def volumes(self) -> list[str]:
        """The copy at its own path; what production mounts read-only is read-only here."""
        return [option for source, mode in ((self.directory, "rw"), (self.config.parent, "ro"),
                                             (self.www, "ro"))
                for option in ("--volume", f"{source}:{source}:{mode}")]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run_in_standin(self.command(*args), self.volumes(), check=check)


_container_numbers = itertools.count()


@contextlib.contextmanager
def container_name() -> Iterator[str]:
    """A container name of this test run's own; no container has it after the block.

    `docker run --rm` removes a container that exits, and its CLI passes SIGTERM on to
    nginx; but a signal that arrives between create and start leaves the container behind
    ("Created"), and a CLI killed outright (a timeout) leaves nginx running.
    """
    name = f"aiia-rendered-nginx-{os.getpid()}-{next(_container_numbers)}"
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, timeout=30,
                       check=False)


def docker_run(name: str, command: Sequence[str], volumes: Sequence[str] = (), *,
               network: str, memory_mb: int | None = None) -> list[str]:
    """`command` in the stand-in image, its root file system read-only as in production.

    As root, nginx's master runs as root and its workers as the image's `nginx` user, as in
    production; as another user, all of nginx runs as that user. `memory_mb` is the memory
    limit the program gives nginx's container (memory and swap alike, as production's):
    a worker that outgrows it is killed by the kernel, and every connection with it.
    """
    user = [] if IS_ROOT else ["--user", f"{os.getuid()}:{os.getgid()}"]
    memory = [] if memory_mb is None else ["--memory", f"{memory_mb}m",
                                           "--memory-swap", f"{memory_mb}m"]
    return ["docker", "run", "--rm", "--name", name, "--network", network, "--read-only",
            *user, *memory, *volumes, IMAGE, *command]


def run_in_standin(command: Sequence[str], volumes: Sequence[str] = (),
                   check: bool = True) -> subprocess.CompletedProcess:
    """A short-lived container: `nginx -t`, `-T`, `-V`.

    In a network namespace of its own: `nginx -t` binds the rendered ports (80, 443, …),
    which there a non-root user may too (Docker lets any user bind low ports in a container's
    own namespace) and where nothing on the host is in the way.
    """
    with container_name() as name:
        return run(docker_run(name, command, volumes, network="none"), check=check)


def require_docker() -> None:
    """A Docker engine this user may use: as root (tests/run.sh) it is started first."""
    if shutil.which("docker") is None:
        problem = "no docker command"
    else:
        result = run(["docker", "version", "--format", "{{.Server.Version}}"], check=False)
        if result.returncode == 0:
            return
        problem = result.stderr.strip()
    if IS_ROOT:
        pytest.fail(f"nginx runs from {IMAGE} but Docker does not answer ({problem}): "
                    "start it with `bash tests/engine/ensure-dockerd.sh`")
    pytest.skip(f"nginx runs from {IMAGE} but uid {os.getuid()} cannot use Docker ({problem}): "
                "add this user to the docker group (`sudo usermod -aG docker $USER`, then log "
                "in again) or run the tests as root (`sudo bash tests/run.sh`)")


@pytest.fixture(scope="module")
def standin_nginx() -> None:
    """The stand-in image is there and its nginx is one the program's configuration needs."""
    require_docker()
    if run(["docker", "image", "inspect", IMAGE], check=False).returncode != 0:
        pytest.fail(f"the image {IMAGE} is missing: build it with `{BUILD_IMAGE}`")
    version = run_in_standin(["nginx", "-V"]).stderr
    number = re.search(r"nginx version: nginx/(\d+)\.(\d+)\.(\d+)", version)
    assert number, version
    if tuple(map(int, number.groups())) < MINIMUM_VERSION:
        pytest.fail(f"{IMAGE} has nginx {'.'.join(number.groups())}, the program's configuration "
                    f"needs {'.'.join(map(str, MINIMUM_VERSION))}+ (keepalive_min_timeout): "
                    f"the stand-in must be rebuilt from tests/images/nginx/Dockerfile with "
                    f"`{BUILD_IMAGE}`")
    for module in ("http_ssl_module", "http_v2_module", "http_stub_status_module"):
        assert f"--with-{module}" in version, (
            f"{IMAGE}'s nginx lacks {module}: rebuild the stand-in with `{BUILD_IMAGE}`")


def write_nginx_tree(stack: Rendered, directory: Path,
                     addresses: Mapping[str, str] | None = None) -> NginxTree:
    """The stack's nginx files (and TLS from its bootstrap script) under `directory`.

    `addresses` maps address text in the rendered files (`listen 80`, an upstream server)
    to what the copy uses instead.
    """
    def rewrite(relative: str, content: str) -> str:
        for container_path, copy_path in CONTAINER_PATHS.items():
            content = content.replace(container_path, str(directory / copy_path))
        if relative == "nginx.conf":
            # The image has the `nginx` user. As non-root, nginx cannot switch users: it
            # would warn that it ignores the line.
            content = replace_exactly(content, "\nuser nginx;\n",
                                      "\nuser nginx;\n" if IS_ROOT else "\n")
        for rendered_address, test_address in (addresses or {}).items():
            content = re.sub(rf"{re.escape(rendered_address)}(?=[ ;])", test_address, content)
        return content

    root = stack.root_dir
    write_tree(stack.files, f"{root}/nginx", directory / "conf", rewrite)
    # The rendered temp paths are in the cache volume: in the copy's cache directory here.
    for relative in ("logs", "cache", "run", "www/acme"):
        (directory / relative).mkdir(parents=True, exist_ok=True)
    for env in stack.settings.platform.environments:
        (directory / "www" / env.name / "static").mkdir(parents=True, exist_ok=True)

    # The program's own self-signed bootstrap, with its tls_dir pointed at the copy.
    domains = [env.domain for env in stack.settings.platform.environments]
    domains.append(stack.settings.platform.status_domain)
    script = replace_exactly(stack.script("platform-nginx-tls-bootstrap"), f"{root}/nginx/tls/",
                             f"{directory}/conf/tls/", count=len(domains))
    output = run(["bash", "-c", script]).stdout
    assert output.count("self-signed certificate created for") == len(domains), output
    return NginxTree(directory=directory, config=directory / "conf" / "nginx.conf",
                     tls=directory / "conf" / "tls", www=directory / "www",
                     logs=directory / "logs", tls_bootstrap=script, domains=domains)


def container_names_to_loopback(stack: Rendered) -> dict[str, str]:
    """Upstream servers named by Docker container name (`dashboard:9100`) → 127.0.0.1.

    nginx resolves upstream names when it loads its configuration; on the Docker network
    Docker's DNS answers for container names, here nothing does.
    """
    names = {}
    for path, content in stack.files.items():
        if not path.startswith(f"{stack.root_dir}/nginx/"):
            continue
        for host, port in re.findall(r"^\s*server ([^\s;{]+):(\d+)[\s;]", content,
                                     re.MULTILINE):
            if not is_ip_address(host):
                names[f"{host}:{port}"] = f"127.0.0.1:{port}"
    return names


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("stack", STACKS)
def test_nginx_accepts_the_full_rendered_tree(rendered, standin_nginx, stack):
    with scratch_dir("nginx-t") as directory:
        tree = write_nginx_tree(rendered[stack], directory,
                                container_names_to_loopback(rendered[stack]))
        result = tree.run("-t", check=False)
        assert result.returncode == 0, result.stderr
        assert "test is successful" in result.stderr
        # No warning either (a conflicting server name, a duplicate listen option, …), but
        # for OCSP stapling, which a self-signed certificate cannot have.
        unexpected = [line for line in result.stderr.splitlines()
                    if "[warn]" in line and '"ssl_stapling" ignored' not in line]
        assert unexpected == []
        included = set(tree.run("-T").stdout.split("# configuration file ")[1:])
        files = {entry.split(":", 1)[0] for entry in included}
        rendered_files = {str(path) for path in (directory / "conf").rglob("*.conf")}
        assert rendered_files <= files, "a rendered file is not part of the configuration"

        # The TLS bootstrap is idempotent: a second run keeps the certificates it made.
        certificates = {path: path.read_bytes() for path in tree.tls.rglob("*.pem")}
        again = run(["bash", "-c", tree.tls_bootstrap]).stdout
        assert again.count("certificate present for") == len(tree.domains), again
        assert {path: path.read_bytes() for path in tree.tls.rglob("*.pem")} == certificates
        assert {oct(path.stat().st_mode & 0o777) for path in tree.tls.rglob("privkey.pem")} \
            == {"0o600"}


def rendered_with(stack: str, section: str, **settings: object) -> Rendered:
    """`stack`'s program run with these platform.<section> settings (nginx, dashboard)."""
    config = copy.deepcopy(stack_config(stack))
    config["aiia:platform"][section] = settings
    program = run_program(stack, config=config)
    raw = {key.split(":", 1)[1]: value for key, value in config.items()}
    return Rendered(stack=stack, run=program,
                    settings=parse_settings(stack, raw, stack_secrets(stack).get),
                    files=host_files(program), scripts=host_scripts(program),
                    secrets=stack_secrets(stack))


def test_each_upload_path_gets_a_location_nginx_accepts(standin_nginx):
    """platform.nginx.upload_paths beyond /api/ (one under it, one beside it) each become a
    location nginx accepts, with the upload limit; everything else keeps the small one."""
    stack = rendered_with("prod", "nginx", upload_paths=["/api/", "/api/files/", "/uploads/"])
    domain = stack.settings.platform.environment("prod").domain
    with scratch_dir("nginx-uploads") as directory:
        tree = write_nginx_tree(stack, directory, container_names_to_loopback(stack))
        result = tree.run("-t", check=False)
        assert result.returncode == 0, result.stderr
        effective = tree.run("-T").stdout
    site = effective.split("conf.d/prod.conf:", 1)[1].split("# configuration file", 1)[0]
    assert f"server_name {domain};" in site
    limits = dict(re.findall(r"location (\S+) \{[^}]*?client_max_body_size (\d+)m;", site))
    assert limits == {"/api/": "20", "/api/files/": "20", "/uploads/": "20"}
    assert "\n    client_max_body_size 1m;\n" in effective  # http{}: every other location


# --- a running nginx from the prod stack's tree ----------------------------------------------


class StandInApp:
    """Stands in for the Django app: what nginx proxies to.

    200 with `X-Release: test` and a JSON echo of the request; 500 on /boom; 429 on
    /too-many (an app's own refusal, not nginx's); a POST's body read and its size echoed;
    /slow?seconds=N answered after N seconds; /healthz/ with `Cache-Control: no-store`, as
    the reference app's (app/aiia/health.py); a WebSocket upgrade on /ws/ (then echoes
    bytes). Like Django's SecurityMiddleware and XFrameOptionsMiddleware with their
    defaults, it sends security headers of its own. It counts what reached it: the paths
    (`paths`) and the most /slow requests it held at once (`most_held`).
    """

    APP_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                   "Referrer-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin"}

    def __init__(self) -> None:
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None
        self.connections: set[socket.socket] = set()
        self.paths: list[str] = []
        self.held = 0
        self.most_held = 0
        self._lock = threading.Lock()

    def reached(self, path: str) -> int:
        """How many requests for `path` (query string aside) reached the app so far."""
        return sum(1 for seen in list(self.paths) if seen.split("?", 1)[0] == path)

    def hold(self, seconds: float) -> None:
        with self._lock:
            self.held += 1
            self.most_held = max(self.most_held, self.held)
        try:
            time.sleep(seconds)
        finally:
            with self._lock:
                self.held -= 1

    def start(self) -> None:
        handler = type("Handler", (StandInHandler,), {"app": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down for real: no listener and no kept-alive connection left for nginx to reuse."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class StandInHandler(BaseHTTPRequestHandler):
    """One connection to the stand-in app; `app` is the StandInApp it reports to."""

    app: StandInApp
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm
        # and nginx's delayed ACK add 40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.app.connections.add(self.connection)

    def finish(self) -> None:
        self.app.connections.discard(self.connection)
        super().finish()

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.app.paths.append(self.path)
        if self.path.startswith("/ws/") and \
                self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        if self.path.startswith("/slow?seconds="):
            self.app.hold(float(self.path.split("=", 1)[1]))
        status = {"/boom": 500, "/too-many": 429}.get(self.path, 200)
        self.answer(status, {"path": self.path, "host": self.headers.get("Host"),
                             "proto": self.headers.get("X-Forwarded-Proto")})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.app.paths.append(self.path)
        size = int(self.headers.get("Content-Length") or 0)
        received = 0
        while received < size:
            chunk = self.rfile.read(min(65536, size - received))
            if not chunk:
                break
            received += len(chunk)
        self.answer(200, {"path": self.path, "received": received})

    def answer(self, status: int, document: dict) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Release", "test")
        if self.path.split("?", 1)[0] == "/healthz/":
            self.send_header("Cache-Control", "no-store")
        for name, value in self.app.APP_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def websocket(self) -> None:
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept",
                         websocket_accept(self.headers["Sec-WebSocket-Key"]))
        self.end_headers()
        self.wfile.flush()
        while data := self.connection.recv(4096):
            self.connection.sendall(data)
        self.close_connection = True


def websocket_accept(key: str) -> str:
    """RFC 6455's answer to a Sec-WebSocket-Key."""
    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode(),
                          usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Site:
    tree: NginxTree
    http_port: int
    https_port: int
    health_port: int
    app: StandInApp
    domains: dict[str, str]  # prod, staging, status → domain
    stack: Rendered
    dashboard_port: int  # where nginx looks for the dashboard: nothing listens there

    def tls_context(self, domain: str) -> ssl.SSLContext:
        """Trusts exactly the certificate the bootstrap made for `domain`."""
        return ssl.create_default_context(cafile=str(self.tree.tls / domain / "fullchain.pem"))


@pytest.fixture(scope="module")
def site(rendered, standin_nginx) -> Iterator[Site]:
    """nginx started from the prod stack's tree on free ports, the stand-in app behind it."""
    with running_site(rendered["prod"]) as started:
        yield started


@contextlib.contextmanager
def running_site(prod: Rendered, prepare: Callable[[NginxTree], None] | None = None,
                 name_of: list[str] | None = None) -> Iterator[Site]:
    """nginx from `prod`'s tree, `prepare(tree)` first; its container's name appended to
    `name_of` (for a reload)."""
    platform = prod.settings.platform
    app = StandInApp()
    http_port, https_port, health_port, placeholder_port = (free_port() for _ in range(4))
    dead_port = free_port()  # the dashboard: nothing listens there
    upstream_prod = re.search(r"server (\S+) ", prod.file("nginx", "upstreams", "prod.conf"))
    dashboard = re.search(r"server (\S+);", prod.file("nginx", "conf.d", "status.conf"))
    assert upstream_prod and dashboard
    ipv6 = socket.has_ipv6 and _loopback_ipv6()
    addresses = {
        "listen 80": f"listen 127.0.0.1:{http_port}",
        "listen 443": f"listen 127.0.0.1:{https_port}",
        "listen [::]:80": f"listen [::1]:{http_port}" if ipv6 else "#listen [::]:80",
        "listen [::]:443": f"listen [::1]:{https_port}" if ipv6 else "#listen [::]:443",
        "127.0.0.1:8080": f"127.0.0.1:{health_port}",  # internal health listener
        "127.0.0.1:8081": f"127.0.0.1:{placeholder_port}",  # "no release deployed yet"
        upstream_prod.group(1): f"127.0.0.1:{app.port}",
        dashboard.group(1): f"127.0.0.1:{dead_port}",
    }
    with scratch_dir("nginx") as directory:
        tree = write_nginx_tree(prod, directory, addresses)
        if prepare:
            prepare(tree)
        app.start()
        try:
            # On the host's network, for the free 127.0.0.1 ports. Stopped by SIGTERM to
            # `docker run`, which passes it on to nginx (PID 1 in the container).
            with container_name() as name, \
                    running("nginx", docker_run(name, tree.command("-g", "daemon off;"),
                                                tree.volumes(), network="host",
                                                memory_mb=platform.nginx.memory_mb),
                            port=https_port, log=directory / "nginx.log"):
                if name_of is not None:
                    name_of.append(name)
                yield Site(tree=tree, http_port=http_port, https_port=https_port,
                           health_port=health_port, app=app, stack=prod,
                           domains={**{env.name: env.domain for env in platform.environments},
                                    "status": platform.status_domain},
                           dashboard_port=dead_port)
        finally:
            app.stop()


def _loopback_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


class LoopbackHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with `domain` as SNI and Host, as a browser would send them."""

    def __init__(self, domain: str, port: int, **kwargs):
        super().__init__(domain, port, **kwargs)
        source = kwargs.get("source_address")
        self._create_connection = lambda _address, timeout, _source: socket.create_connection(
            ("127.0.0.1", port), timeout, source)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


def https_get(site: Site, domain: str, path: str, host: str | None = None) -> Response:
    connection = LoopbackHTTPSConnection(domain, site.https_port,
                                         context=site.tls_context(domain), timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host} if host else {})
        response = connection.getresponse()
        return Response(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def http_get(site: Site, host: str, path: str) -> Response:
    connection = http.client.HTTPConnection("127.0.0.1", site.http_port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return Response(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def expected_security_headers(site: Site) -> dict[str, str]:
    """What the rendered snippet sets, which must include the required headers."""
    snippet = site.stack.file("nginx", "snippets", "security-headers.conf")
    headers = dict(re.findall(r'^add_header (\S+) "([^"]*)" always;$', snippet, re.MULTILINE))
    assert set(SECURITY_HEADERS) <= set(headers)
    max_age = re.search(r"max-age=(\d+)", headers["Strict-Transport-Security"])
    assert max_age and int(max_age.group(1)) >= 31536000  # at least a year
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    return headers


def assert_security_headers(site: Site, response: Response, what: str) -> None:
    """Each header once, with nginx's value (a second, different copy would be ambiguous)."""
    for name, value in expected_security_headers(site).items():
        assert response.header(name) == [value], (
            f"{what} ({response.status}): {name} is {response.header(name)}")


def test_http_redirects_to_https_and_serves_acme_challenges(site):
    domain = site.domains["prod"]
    redirect = http_get(site, domain, "/notes/?page=2")
    assert redirect.status == 301
    assert redirect.header("Location") == [f"https://{domain}/notes/?page=2"]

    token = site.tree.www / "acme" / ".well-known" / "acme-challenge" / "token-123"
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text("token-123.thumbprint")
    token.chmod(0o644)
    challenge = http_get(site, domain, "/.well-known/acme-challenge/token-123")
    assert (challenge.status, challenge.body) == (200, b"token-123.thumbprint")

    health = http.client.HTTPConnection("127.0.0.1", site.health_port, timeout=5)
    health.request("GET", "/nginx-health")
    assert health.getresponse().status == 200  # the container health check's endpoint
    health.close()


def test_each_domain_gets_its_own_certificate_and_http2(site):
    for domain in site.domains.values():
        context = site.tls_context(domain)  # verification fails on any other certificate
        context.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", site.https_port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=domain) as tls:
            assert tls.selected_alpn_protocol() == "h2"


def tls_handshake(site: Site, version: ssl.TLSVersion) -> str:
    """The negotiated protocol, or raises ssl.SSLError."""
    domain = site.domains["prod"]
    context = site.tls_context(domain)
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    with warnings.catch_warnings():  # Python deprecates the old versions; that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", site.https_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=domain) as tls:
        return tls.version()


def test_tls_1_2_and_1_3_are_accepted_and_1_1_is_refused(site):
    assert tls_handshake(site, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    assert tls_handshake(site, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError) as refused:
        tls_handshake(site, ssl.TLSVersion.TLSv1_1)
    # Refused by the server (its protocol_version alert), not by this client's own settings.
    assert "ALERT_PROTOCOL_VERSION" in refused.value.reason, refused.value


def test_security_headers_are_on_every_response_error_pages_included(site):
    prod, staging, status = (site.domains[name] for name in ("prod", "staging", "status"))
    static = site.tree.www / "prod" / "static" / "app.css"
    static.write_text("body { color: black; }\n")
    static.chmod(0o644)
    cases = {
        "app 200": (prod, "/", 200),
        "static 200": (prod, "/static/app.css", 200),
        "static 404": (prod, "/static/missing.css", 404),
        "app 500": (prod, "/boom", 500),
        "staging before its first release 503": (staging, "/", 503),
        "dashboard down 502": (status, "/", 502),
        "API 200": (prod, "/api/x", 200),
    }
    for what, (domain, path, status_code) in cases.items():
        response = https_get(site, domain, path)
        assert response.status == status_code, what
        assert_security_headers(site, response, what)
        assert response.header("Server") == ["nginx"], what  # server_tokens off: no version

    app = https_get(site, prod, "/")
    assert app.header("X-Release") == ["test"]
    # The app sees the real Host and the scheme (Django's SECURE_PROXY_SSL_HEADER).
    assert json.loads(app.body) == {"path": "/", "host": prod, "proto": "https"}
    asset = https_get(site, prod, "/static/app.css")
    assert asset.body == static.read_bytes()
    assert asset.header("Cache-Control") == ["max-age=604800"]  # expires 7d


def test_security_headers_stay_on_the_502_when_the_app_is_down(site):
    site.app.stop()
    try:
        response = https_get(site, site.domains["prod"], "/down")
        assert response.status == 502
        assert_security_headers(site, response, "prod app down")
    finally:
        site.app.start()
    assert https_get(site, site.domains["prod"], "/").status == 200


class StandInDashboard(BaseHTTPRequestHandler):
    """The dashboard's server behind nginx: answers 200 and records the X-Real-IP it got."""

    seen: list[str]

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.seen.append(self.headers.get("X-Real-IP", ""))
        body = b"dashboard\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def https_get_from(site: Site, source: str, domain: str, path: str) -> Response:
    """`https_get` from the loopback address `source` (all of 127.0.0.0/8 is this host's)."""
    connection = LoopbackHTTPSConnection(domain, site.https_port, timeout=10,
                                         context=site.tls_context(domain),
                                         source_address=(source, 0))
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return Response(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def test_the_status_site_s_allowlist_refuses_other_addresses_and_lets_listed_ones_through(
        standin_nginx):
    """platform.dashboard.allow_from (review L3): a listed address reaches the dashboard
    (which gets its address as X-Real-IP, what its audit lines name); any other gets 403 from
    nginx and never reaches it. Plain HTTP stays open for the redirect and ACME."""
    prod = rendered_with("prod", "dashboard", allow_from=["127.0.0.2"])
    seen: list[str] = []
    with running_site(prod) as site:
        domain = site.domains["status"]
        dashboard = ThreadingHTTPServer(("127.0.0.1", site.dashboard_port), type(
            "Handler", (StandInDashboard,), {"seen": seen}))
        threading.Thread(target=dashboard.serve_forever, daemon=True).start()
        try:
            denied = https_get_from(site, "127.0.0.1", domain, "/api/status")
            allowed = https_get_from(site, "127.0.0.2", domain, "/api/status")
            redirect = http_get(site, domain, "/")
        finally:
            dashboard.shutdown()
            dashboard.server_close()
    assert denied.status == 403
    assert_security_headers(site, denied, "the allowlist's 403")
    assert (allowed.status, allowed.body) == (200, b"dashboard\n")
    assert seen == ["127.0.0.2"]
    assert redirect.status == 301


def test_an_unknown_host_gets_no_answer(site):
    prod = site.domains["prod"]
    # Plain HTTP: the default server closes the connection without a response (444).
    with pytest.raises(http.client.RemoteDisconnected):
        http_get(site, "evil.example", "/")
    # TLS: no certificate is offered for an unknown name, nor for no name at all.
    for server_name in ("evil.example", None):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", site.https_port), timeout=5) as raw, \
                pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            context.wrap_socket(raw, server_hostname=server_name)
    # A known name in SNI with another Host, or an absolute URI (open-proxy probing): the
    # request goes to the default server, never to an app or out to the named host.
    with pytest.raises(http.client.RemoteDisconnected):
        https_get(site, prod, "/", host="evil.example")
    with pytest.raises(http.client.RemoteDisconnected):
        https_get(site, prod, "http://evil.example/")


def test_the_static_alias_does_not_escape_its_directory(site):
    secret = site.tree.www / "prod" / "secret.txt"  # beside static/, inside the mount
    secret.write_text("not-for-the-internet\n")
    secret.chmod(0o644)
    domain = site.domains["prod"]
    for path in ("/static../secret.txt", "/static/../secret.txt", "/static/..%2fsecret.txt",
                 "/static/%2e%2e/secret.txt", "/static..%2fsecret.txt", "/static../etc/passwd",
                 "/static/../../../../etc/passwd"):
        response = https_get(site, domain, path)
        assert b"not-for-the-internet" not in response.body, path
        assert b"root:" not in response.body, path
        assert response.status in (200, 400, 404), path  # 200: the app (outside /static/)
        if response.status == 200:
            assert response.header("X-Release") == ["test"], path


def test_the_access_log_is_json_lines_with_the_documented_fields(site):
    domain = site.domains["prod"]
    marker = f"/logged/{time.monotonic_ns()}"
    assert https_get(site, domain, marker).status == 200
    with contextlib.suppress(http.client.RemoteDisconnected):
        http_get(site, "evil.example", marker)
    entries = [json.loads(line) for line in
               (site.tree.logs / "access.log").read_text().splitlines()]
    assert entries and all(set(entry) == ACCESS_LOG_FIELDS for entry in entries)
    assert all(isinstance(entry["status"], int) for entry in entries)
    assert all(isinstance(entry["bytes"], int) for entry in entries)
    assert all(isinstance(entry["request_time"], int | float) for entry in entries)
    mine = [entry for entry in entries if entry["uri"] == marker]
    assert len(mine) == 2
    app, refused = mine
    assert app["env"] == "prod" and app["host"] == domain and app["method"] == "GET"
    assert app["addr"] == "127.0.0.1"  # fail2ban's nginx jails ban by it
    assert app["status"] == 200 and app["release"] == "test"
    assert app["upstream"] == f"127.0.0.1:{site.app.port}" and app["upstream_status"] == "200"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", app["time"])
    assert refused["env"] == "-" and refused["status"] == 444


def test_websocket_upgrade_through_nginx(site):
    domain = site.domains["prod"]
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", site.https_port), timeout=5) as raw, \
            site.tls_context(domain).wrap_socket(raw, server_hostname=domain) as tls:
        tls.sendall((f"GET /ws/echo/ HTTP/1.1\r\nHost: {domain}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(4096)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert f"Sec-WebSocket-Accept: {websocket_accept(key)}\r\n".encode() in head
        frame = b"\x81\x05hello"  # a text frame, echoed back byte for byte by the stand-in
        tls.sendall(frame)
        echoed = b""
        while len(echoed) < len(frame):
            echoed += tls.recv(4096)
        assert echoed == frame


def test_the_general_rate_limit_answers_429_beyond_rate_and_burst(site):
    """2×burst+100 requests as fast as 8 kept-alive connections go, from their own address.

    127.0.0.2 is a loopback address of its own, so this burst has a bucket of its own and
    the other tests' requests do not count.
    """
    rate = site.stack.settings.platform.nginx.general_rate_per_second
    site_conf = site.stack.file("nginx", "conf.d", "prod.conf")
    # Server-level, so it covers every location that sets no limit of its own.
    burst_match = re.search(r"^    limit_req zone=general burst=(\d+) nodelay;", site_conf,
                            re.MULTILINE)
    assert burst_match, "the prod server has no general limit_req"
    burst = int(burst_match.group(1))
    total = 2 * burst + 100
    domain = site.domains["prod"]
    statuses: list[int] = []
    sample_429: list[Response] = []
    lock = threading.Lock()

    def client(count: int) -> None:
        connection = None
        for _ in range(count):
            try:
                if connection is None:
                    connection = LoopbackHTTPSConnection(
                        domain, site.https_port, context=site.tls_context(domain), timeout=10,
                        source_address=("127.0.0.2", 0))
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read()
                status = response.status
                if status == 429 and not sample_429:
                    sample_429.append(Response(status, response.getheaders(), body))
            except (OSError, http.client.HTTPException):
                status = -1
                connection = None
            with lock:
                statuses.append(status)
        if connection:
            connection.close()

    threads = [threading.Thread(target=client, args=(total // 8 + (index < total % 8),))
               for index in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"{total} requests took {elapsed:.1f}s"
    assert len(statuses) == total and set(statuses) <= {200, 429}, sorted(set(statuses))
    accepted = statuses.count(200)
    # All of the burst is served at once (nodelay); beyond it, only what the rate refills.
    assert accepted >= burst
    assert accepted <= burst + 1 + rate * elapsed + 10, (accepted, elapsed)
    assert statuses.count(429) > 0
    assert_security_headers(site, sample_429[0], "rate limited 429")


# --- one client cannot starve the others (security review H2, M3, L1) ------------------------
#
# Each attacker below has a loopback address of its own (127.0.1.x), so its requests fill
# per-address buckets nobody else uses; the client that must still be served has another.
# Every attack is bounded in connections and in seconds, and stops by itself.

# What a client that is not the attacker must see while an attack runs: an answer to each
# request within this many seconds.
SERVED_WITHIN_SECONDS = 2.0
# nginx must have closed a client that has not sent a whole request's headers by then
# (the review's bar: client_header_timeout 10 s at most; it was 30 s).
SLOW_CLIENT_CUT_WITHIN_SECONDS = 10.0
# ... and an idle kept-alive connection (nginx cannot close one earlier to make room while
# keepalive_min_timeout runs: this is how long idle connections hold its slots; it was 30 s).
IDLE_CLIENT_CUT_WITHIN_SECONDS = 10.0


def tls_socket(site: Site, domain: str, source: str, timeout: float = 5) -> ssl.SSLSocket:
    """A TLS connection to nginx's 443 from `source` (a loopback address), SNI `domain`."""
    raw = socket.create_connection(("127.0.0.1", site.https_port), timeout=timeout,
                                   source_address=(source, 0))
    try:
        return site.tls_context(domain).wrap_socket(raw, server_hostname=domain)
    except BaseException:
        raw.close()
        raise


def read_status(sock: socket.socket, timeout: float) -> int | str:
    """The status of the next response on `sock`, or the kind of failure."""
    sock.settimeout(timeout)
    head = b""
    try:
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return "closed"
            head += chunk
    except TimeoutError:
        return "timeout"
    except OSError as error:
        return type(error).__name__
    return int(head.split(b" ", 2)[1])


def https_status(site: Site, domain: str, path: str, source: str,
                 timeout: float = SERVED_WITHIN_SECONDS) -> tuple[int | str, bytes]:
    """(status, body) of one GET on a new connection from `source`, or (failure, b"")."""
    connection = LoopbackHTTPSConnection(domain, site.https_port,
                                         context=site.tls_context(domain), timeout=timeout,
                                         source_address=(source, 0))
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__, b""
    finally:
        connection.close()


class Bystander:
    """Another client, from its own address, asking for / on prod four times a second on a
    new connection each time (the costliest way for nginx) while an attack runs."""

    def __init__(self, site: Site, source: str) -> None:
        self.site, self.source = site, source
        self.results: list[tuple[float, int | str]] = []  # (seconds taken, status)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            status, _ = https_status(self.site, self.site.domains["prod"], "/", self.source)
            self.results.append((time.monotonic() - started, status))
            self._stop.wait(max(0.0, 0.25 - (time.monotonic() - started)))

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join(timeout=SERVED_WITHIN_SECONDS + 5)

    def assert_served(self, seconds: float) -> None:
        failed = [(round(taken, 2), status) for taken, status in self.results
                  if status != 200 or taken > SERVED_WITHIN_SECONDS]
        assert len(self.results) >= seconds * 4 * 0.5, self.results
        assert failed == [], (f"{len(failed)} of {len(self.results)} requests of another "
                              f"client failed or took over {SERVED_WITHIN_SECONDS} s: "
                              f"{failed[:10]}")


def worker_kills(site: Site) -> list[str]:
    """Lines of nginx's error log saying a worker was killed (by the kernel's OOM killer)."""
    log = (site.tree.logs / "error.log").read_text(errors="replace")
    return [line for line in log.splitlines() if "exited on signal" in line]


def close_all(sockets: Sequence[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()


def wait_until_the_app_holds_nothing(site: Site, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while site.app.held and time.monotonic() < deadline:
        time.sleep(0.1)
    assert site.app.held == 0


def slow_requests(site: Site, domain: str, source: str, count: int,
                  seconds: float) -> list[ssl.SSLSocket]:
    """`count` connections from `source`, each with a request the app holds `seconds`;
    the answers are left unread."""
    request = (f"GET /slow?seconds={seconds} HTTP/1.1\r\nHost: {domain}\r\n\r\n").encode()
    sockets = []
    for _ in range(count):
        sock = tls_socket(site, domain, source)
        sock.sendall(request)
        sockets.append(sock)
    return sockets


def still_open(sock: ssl.SSLSocket) -> bool:
    """Whether nginx has neither closed nor answered on a non-blocking connection."""
    try:
        sock.recv(1)
        return False  # an answer, or b"": closed
    except (ssl.SSLWantReadError, BlockingIOError):
        return True
    except OSError:
        return False


def drip(sock: ssl.SSLSocket) -> bool:
    """One more byte of a request's headers on a non-blocking connection; False when nginx
    has closed it (or answered: it is done with it either way)."""
    if not still_open(sock):
        return False
    try:
        sock.send(b"a")
    except (ssl.SSLWantWriteError, BlockingIOError):
        pass
    except OSError:
        return False
    return True


def test_slow_and_idle_clients_are_cut_off_and_cannot_take_nginx_from_the_others(site):
    """From one address, 50 new TLS connections a second for 20 s (1,000 in all), each
    sending a request's headers one byte a second and never finishing them, while another
    address asks for / four times a second: that one is answered throughout, nginx closes
    each slow connection within SLOW_CLIENT_CUT_WITHIN_SECONDS, and its worker lives on.
    A third address's kept-alive connection, idle after one request, is closed within
    IDLE_CLIENT_CUT_WITHIN_SECONDS.

    Bounded in connections and time. Before the fix nginx waited 30 s for headers: at this
    rate the connections it holds outgrow its memory limit (a TLS connection costs its
    worker ~34 KB), the kernel kills the worker with every connection of every domain, and
    a new one fills up again. Idle connections were kept 30 s."""
    rate, seconds = 50, 20
    domain = site.domains["prod"]
    kills_before = len(worker_kills(site))
    idle = tls_socket(site, domain, "127.0.1.5")
    idle.sendall(f"GET / HTTP/1.1\r\nHost: {domain}\r\n\r\n".encode())
    assert read_status(idle, timeout=SERVED_WITHIN_SECONDS) == 200
    idle.setblocking(False)
    idle_since, idle_lasted = time.monotonic(), None
    partial = f"GET / HTTP/1.1\r\nHost: {domain}\r\nX-Slow: ".encode()
    held: dict[ssl.SSLSocket, float] = {}  # open slow connections → when they were opened
    lifetimes: list[float] = []  # how long each one lasted until nginx closed it
    refused = 0
    with Bystander(site, "127.0.1.2") as bystander:
        started = time.monotonic()
        opened = 0
        next_drip = started + 1
        while (now := time.monotonic()) < started + seconds:
            while opened < rate * seconds and opened < (now - started) * rate:
                opened += 1
                try:
                    sock = tls_socket(site, domain, "127.0.1.1", timeout=2)
                    sock.sendall(partial)
                    sock.setblocking(False)
                    held[sock] = time.monotonic()
                except OSError:
                    refused += 1
            if now >= next_drip:  # one more byte of header on each connection still open
                next_drip += 1
                if idle_lasted is None and not still_open(idle):
                    idle_lasted = now - idle_since
                for sock, opened_at in list(held.items()):
                    if not drip(sock):
                        lifetimes.append(now - opened_at)
                        del held[sock]
                        sock.close()
            time.sleep(0.005)
        oldest = max((time.monotonic() - opened_at for opened_at in held.values()), default=0)
        close_all([*held, idle])
    print(f"slowloris: {opened} opened, {refused} refused, {len(lifetimes)} cut by nginx "
          f"after {min(lifetimes, default=0):.1f}-{max(lifetimes, default=0):.1f} s, "
          f"{len(held)} still open (oldest {oldest:.1f} s); the other client: "
          f"{len(bystander.results)} requests, slowest "
          f"{max((taken for taken, _ in bystander.results), default=0):.2f} s; the idle "
          f"connection closed after {idle_lasted} s")
    assert worker_kills(site)[kills_before:] == [], "nginx's worker was killed"
    bystander.assert_served(seconds)
    assert lifetimes, "nginx never closed a slow client"
    assert max(lifetimes) <= SLOW_CLIENT_CUT_WITHIN_SECONDS + 1.5, max(lifetimes)
    assert oldest <= SLOW_CLIENT_CUT_WITHIN_SECONDS + 1.5, oldest
    assert refused == 0
    assert idle_lasted is not None and idle_lasted <= IDLE_CLIENT_CUT_WITHIN_SECONDS + 1.5


def test_a_flood_of_requests_from_one_address_leaves_the_others_served(site):
    """From one address, 100 new TLS connections a second for 10 s (1,000 in all), each
    with a request the app answers after 15 s, closed by the client once refused, while
    another address asks for / four times a second: the app is handed at most
    platform.nginx.connections_per_address of them at once, nginx refuses the rest at once
    (503), and the other address is served throughout.

    Bounded in connections and time. Before the fix nothing limited the requests one
    address had in progress (the rate limit's burst lets 400 through at once, then 200 a
    second): each held two of nginx's 1,024 connections (the client's and the app's) until
    none was left for anyone."""
    rate, seconds = 100, 10
    nginx = site.stack.settings.platform.nginx
    domain = site.domains["prod"]
    request = f"GET /slow?seconds=15 HTTP/1.1\r\nHost: {domain}\r\n\r\n".encode()
    kills_before = len(worker_kills(site))
    site.app.most_held = 0
    waiting: list[ssl.SSLSocket] = []  # no answer yet: in progress at the app, or queued
    answers: dict[int | str, int] = {}
    opened = 0
    with Bystander(site, "127.0.1.4") as bystander:
        started = time.monotonic()
        try:
            # Then a second without new connections, for the last answers to arrive.
            while (now := time.monotonic()) < started + seconds + 1:
                while opened < rate * seconds and opened < (now - started) * rate:
                    opened += 1
                    try:
                        sock = tls_socket(site, domain, "127.0.1.3", timeout=2)
                        sock.sendall(request)
                        sock.setblocking(False)
                        waiting.append(sock)
                    except OSError as error:
                        answers[type(error).__name__] = answers.get(type(error).__name__, 0) + 1
                for sock in list(waiting):  # a refused request's connection is closed
                    try:
                        head = sock.recv(64)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        continue
                    except OSError as error:
                        head = type(error).__name__.encode()
                    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else "closed"
                    answers[status] = answers.get(status, 0) + 1
                    waiting.remove(sock)
                    sock.close()
                time.sleep(0.005)
            most_held, in_progress = site.app.most_held, len(waiting)
        finally:
            close_all(waiting)
    wait_until_the_app_holds_nothing(site)
    print(f"flood: {opened} connections in {seconds} s, answers {answers}, {in_progress} "
          f"unanswered; the app held {most_held} at once; the other client: "
          f"{len(bystander.results)} requests, slowest "
          f"{max((taken for taken, _ in bystander.results), default=0):.2f} s")
    assert worker_kills(site)[kills_before:] == [], "nginx's worker was killed"
    bystander.assert_served(seconds)
    assert most_held <= nginx.connections_per_address
    assert in_progress <= nginx.connections_per_address
    assert answers.get(503, 0) >= opened - nginx.connections_per_address - 5, answers


def test_one_environment_at_its_limit_leaves_the_other_and_the_status_domain_served(site):
    """prod's requests in progress, from several addresses (each under its own limit), up
    to platform.nginx.connections_per_environment and beyond: the app is handed no more than
    that, a further prod request is refused at once, and staging (its upstream here: the
    placeholder that answers before a first release) and the status domain (nginx's 502,
    the dashboard being down here) still answer at once. Before the fix no limit applied."""
    nginx = site.stack.settings.platform.nginx
    limit, per_address = nginx.connections_per_environment, nginx.connections_per_address
    domain = site.domains["prod"]
    site.app.most_held = 0
    total, share = limit + 8, per_address - 1
    sources = [f"127.0.1.{10 + index}" for index in range(-(-total // share))]
    sockets: list[ssl.SSLSocket] = []
    try:
        for index, source in enumerate(sources):
            sockets += slow_requests(site, domain, source,
                                     min(share, total - index * share), seconds=4)
        time.sleep(0.5)
        prod = https_status(site, domain, "/", "127.0.1.9")
        staging = https_status(site, site.domains["staging"], "/", "127.0.1.9")
        status = https_status(site, site.domains["status"], "/", "127.0.1.9")
        most_held = site.app.most_held
    finally:
        close_all(sockets)
        wait_until_the_app_holds_nothing(site)
    assert most_held <= limit, most_held
    assert prod[0] == 503, prod
    assert staging[0] == 503 and b"no release deployed yet" in staging[1], staging
    assert status[0] == 502, status


def websocket_status(site: Site, source: str) -> tuple[int | str, ssl.SSLSocket | None]:
    """Opens a WebSocket to prod's /ws/echo/ from `source`: (status, the socket if 101)."""
    domain = site.domains["prod"]
    sock = tls_socket(site, domain, source)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws/echo/ HTTP/1.1\r\nHost: {domain}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    status = read_status(sock, timeout=SERVED_WITHIN_SECONDS)
    if status == 101:
        return status, sock
    sock.close()
    return status, None


def test_websockets_are_limited_per_address_and_per_environment(site):
    """An address opens WebSockets up to platform.nginx.websockets_per_address: the next
    one is refused, another address's is not; more addresses up to
    websockets_per_environment: then a new address's is refused too. Before the fix every
    WebSocket was accepted (and held an hour)."""
    nginx = site.stack.settings.platform.nginx
    per_address, per_environment = nginx.websockets_per_address, nginx.websockets_per_environment
    held: list[ssl.SSLSocket] = []

    def open_from(source: str, count: int) -> None:
        for _ in range(count):
            status, sock = websocket_status(site, source)
            assert status == 101, (source, status)
            held.append(sock)

    try:
        open_from("127.0.1.30", per_address)
        assert websocket_status(site, "127.0.1.30")[0] == 503
        open_from("127.0.1.31", 1)
        address = 32
        while len(held) < per_environment:
            open_from(f"127.0.1.{address}", min(per_address, per_environment - len(held)))
            address += 1
        assert websocket_status(site, f"127.0.1.{address}")[0] == 503
        # Plain requests of the same environment are still served.
        assert https_status(site, site.domains["prod"], "/", f"127.0.1.{address}")[0] == 200
    finally:
        close_all(held)


def post_status(site: Site, path: str, size: int, source: str) -> tuple[int | str, bytes]:
    """A POST of `size` bytes to prod: the headers first, then (unless nginx has answered
    already, as it does for a body over its limit) the body."""
    domain = site.domains["prod"]
    sock = tls_socket(site, domain, source, timeout=10)
    try:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {domain}\r\nContent-Length: {size}\r\n"
                      "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
                      ).encode())
        early = read_status(sock, timeout=0.5)
        if early != "timeout":
            return early, b""
        sock.sendall(b"x" * size)
        sock.settimeout(10)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
        head, _, body = response.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body
    finally:
        sock.close()


def test_request_bodies_are_small_except_on_the_upload_paths(site):
    """Bodies over platform.nginx.max_body_mb are refused (413) before they are read, except
    under upload_paths (/api/ by default), which take up to upload_max_body_mb. Before the fix
    every location took 20 MB, each buffered to the cache volume's disk."""
    nginx = site.stack.settings.platform.nginx
    assert tuple(nginx.upload_paths) == ("/api/",)
    small, large = nginx.max_body_mb * 2**20, nginx.upload_max_body_mb * 2**20
    assert post_status(site, "/", small + 1, "127.0.1.40")[0] == 413
    assert post_status(site, "/ws/echo/", small + 1, "127.0.1.40")[0] == 413
    assert post_status(site, "/", small, "127.0.1.40")[0] == 200
    status, body = post_status(site, "/api/notes/", small * 2, "127.0.1.40")
    assert status == 200 and json.loads(body)["received"] == small * 2
    assert post_status(site, "/api/notes/", large + 1, "127.0.1.40")[0] == 413


def test_the_health_endpoint_costs_the_app_one_check_a_second_from_outside(site):
    """/healthz/ queries PgBouncer and Redis. From outside, 200 requests in about 2 s, with
    every variation a client can add (query strings, cookies, credentials, encodings,
    HEAD): each is answered with the app's own answer, and the app sees about one a second.
    From the platform's own addresses (here 127.0.0.1: the release's watch runs inside
    nginx's container; the dashboard's probes come from the network), every request reaches
    the app. Before the fix every request reached the app, at up to 200 a second an address."""
    domain = site.domains["prod"]
    before = site.app.reached("/healthz/")
    statuses: list[int] = []
    started = time.monotonic()
    connection = LoopbackHTTPSConnection(domain, site.https_port,
                                         context=site.tls_context(domain), timeout=5,
                                         source_address=("127.0.1.50", 0))
    try:
        for index in range(200):
            variation = [{}, {"Cookie": f"sessionid={index}"},
                         {"Authorization": f"Basic {index}"}, {"Accept-Encoding": f"x{index}"},
                         {"Cache-Control": "no-cache", "Pragma": "no-cache"}][index % 5]
            method = "HEAD" if index % 7 == 0 else "GET"
            connection.request(method, f"/healthz/?nocache={index}" if index % 2 else "/healthz/",
                               headers=variation)
            response = connection.getresponse()
            body = response.read()
            statuses.append(response.status)
            if method == "GET":
                assert json.loads(body)["path"].startswith("/healthz/")
            time.sleep(0.01)
    finally:
        connection.close()
    elapsed = time.monotonic() - started
    from_outside = site.app.reached("/healthz/") - before
    for _ in range(5):
        assert https_status(site, domain, "/healthz/", "127.0.0.1")[0] == 200
    from_inside = site.app.reached("/healthz/") - before - from_outside
    print(f"/healthz/: 200 requests from outside in {elapsed:.1f} s reached the app "
          f"{from_outside} times; 5 from inside, {from_inside} times")
    assert set(statuses) == {200}
    assert from_outside <= elapsed + 2, (from_outside, elapsed)
    assert from_inside == 5


@contextlib.contextmanager
def dashboard_asking_for_credentials(port: int) -> Iterator[list[str]]:
    """A stand-in for the dashboard on `port`: 401 with a Basic challenge to everything, as
    dashboard/server.py answers a request without valid credentials; yields the list of the
    paths it was asked for. Down again afterwards, its connections with nginx cut too."""

    connections: set[socket.socket] = set()
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            connections.add(self.connection)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            asked.append(self.path)
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="aiia status"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()
        for connection in connections:  # nginx keeps its connections to an upstream alive
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def test_password_guesses_reach_the_dashboard_once_a_second_per_address(site):
    """40 guesses as fast as one client goes: the dashboard (whose every new guess costs
    200,000 rounds of PBKDF2 in a server limited to a fifth of a core) is asked about ten at
    once and then one a second; nginx answers the rest 429 itself, which fail2ban's abuse
    jail counts. Another address still gets through. Before the fix the status domain took
    the general limit: 200 a second, 50 at once (review M3)."""
    status_domain = site.domains["status"]
    statuses: list[int | str] = []
    with dashboard_asking_for_credentials(site.dashboard_port) as asked:
        started = time.monotonic()
        connection = LoopbackHTTPSConnection(
            status_domain, site.https_port, context=site.tls_context(status_domain),
            timeout=5, source_address=("127.0.1.70", 0))
        try:
            for attempt in range(40):
                guess = base64.b64encode(f"admin:guess-{attempt}".encode()).decode()
                connection.request("GET", "/api/status",
                                   headers={"Authorization": f"Basic {guess}"})
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
        finally:
            connection.close()
        elapsed = time.monotonic() - started
        reached = len(asked)
        other = https_status(site, status_domain, "/", "127.0.1.71")[0]
    print(f"status domain: 40 guesses in {elapsed:.1f} s, {reached} reached the dashboard")
    assert reached <= 11 + elapsed, (reached, elapsed)
    assert set(statuses) == {401, 429} and statuses[0] == 401
    assert other == 401


def test_fail2ban_counts_quoted_paths_and_only_nginx_s_own_refusals(site, rendered, tmp_path):
    """The real access log of this nginx, read by the rendered fail2ban filters in the VPS
    stand-in (fail2ban-regex): a password guessed on the status domain under a path with a
    `"` in it (escaped `\\"` by escape=json) is counted, and so are nginx's own refusals
    (429 from a rate limit, 400, 444) whatever the path or Host; an app's own 429 is not.

    Before the fix `"uri":"[^"]*"` stopped at the escaped quote: `GET /%22` guessed passwords
    and flooded unbanned (review M3), and the abuse jail counted the app's answers (L1)."""
    from tests.rendered.test_host import IMAGES, in_vps

    source = "127.0.1.60"
    status_domain = site.domains["status"]
    with dashboard_asking_for_credentials(site.dashboard_port):
        for attempt in range(50):  # password guesses, until past the status domain's limit
            connection = LoopbackHTTPSConnection(
                status_domain, site.https_port, context=site.tls_context(status_domain),
                timeout=5, source_address=(source, 0))
            guess = base64.b64encode(f"admin:guess-{attempt}".encode()).decode()
            connection.request("GET", '/%22' if attempt % 2 else '/x%22,%22status%22:200',
                               headers={"Authorization": f"Basic {guess}"})
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status == 429:
                break
    for request in (b'GET /%22 HTTP/1.1\r\nHost: scan"ner.invalid\r\n\r\n',  # unknown host
                    b"GET /%22 HTTP/1.1\r\nHost: x\r\nBroken header\r\n\r\n"):  # malformed
        with socket.create_connection(("127.0.0.1", site.http_port), timeout=5,
                                      source_address=(source, 0)) as raw:
            raw.sendall(request)
            with contextlib.suppress(OSError):
                raw.recv(4096)
    for _ in range(3):  # the app's own 429: its business, not an attack on nginx
        assert https_status(site, site.domains["prod"], "/too-many", source)[0] == 429
    time.sleep(0.3)  # nginx writes a log line when it closes the connection

    lines = [line for line in (site.tree.logs / "access.log").read_text().splitlines()
             if json.loads(line)["addr"] == source]
    entries = [json.loads(line) for line in lines]
    guesses = [e for e in entries if e["env"] == "status" and e["status"] == 401]
    nginx_refusals = [e for e in entries if e["status"] in (400, 429, 444)
                      and e["upstream_status"] in ("", "-")]
    files = rendered["prod"].files
    filters = {path: files[path] for path in files if path.startswith("/etc/fail2ban/filter.d/")}
    log = "/var/log/aiia-test/access.log"
    script = " && echo @@ && ".join(
        f"fail2ban-regex {log} {path}" for path in sorted(filters))
    expected = {"/etc/fail2ban/filter.d/aiia-nginx-status-auth.conf": len(guesses),
                "/etc/fail2ban/filter.d/aiia-nginx-abuse.conf": len(nginx_refusals)}
    for debian in sorted(IMAGES):  # fail2ban 1.0 (Debian 12) and 1.1 (Debian 13)
        result = in_vps(debian, {**filters, log: "\n".join(lines) + "\n"}, script, tmp_path)
        outputs = dict(zip(sorted(filters), result.stdout.split("@@"), strict=True))
        for path, count in expected.items():
            found = re.search(r"Lines: .*", outputs[path])
            assert found and found.group(0).startswith(
                f"Lines: {len(lines)} lines, 0 ignored, {count} matched"), (debian, path,
                                                                            outputs[path])
    # What the log held: quoted paths and hosts, nginx's refusals of each kind, the app's 429.
    assert any('"' in e["uri"] for e in guesses), entries
    refused = {e["status"] for e in nginx_refusals}
    assert 429 in refused and refused & {400, 444}, entries
    assert any('"' in e["uri"] or '"' in e["host"] for e in nginx_refusals), entries
    assert any(e["status"] == 429 and e["upstream_status"] == "429" for e in entries), entries


# --- maintenance (issue #27 item 4) -----------------------------------------------------------


def test_maintenance_answers_503_with_retry_after_but_the_health_path_and_allowed_addresses(
        rendered, standin_nginx):
    """releases.prod.maintenance: true, as the release writes it: prod's visitors get the page
    (503, Retry-After, not cached), the app sees none of their requests but the health
    path's, staging is untouched; an address in maintenance_allow is served, and turning
    maintenance off is a graceful reload."""
    from components.platform.nginx import render_maintenance
    from components.release.maintenance import PAGE_FILE

    def switch(tree: NginxTree, allow: tuple[str, ...], enabled: bool = True) -> None:
        (tree.directory / "conf" / "maintenance" / "prod.conf").write_text(
            render_maintenance("prod", enabled, allow, retry_after_seconds=120))

    def prepare(tree: NginxTree) -> None:
        switch(tree, ("203.0.113.0/24",))
        page = tree.www / "prod" / "maintenance" / PAGE_FILE
        page.parent.mkdir(parents=True)
        page.write_text("<h1>Down for maintenance</h1>")

    names: list[str] = []
    with running_site(rendered["prod"], prepare, names) as site:
        prod, staging = site.domains["prod"], site.domains["staging"]
        for path in ("/", "/api/notes/", "/static/app.css", "/ws/echo/"):
            response = https_get(site, prod, path)
            assert response.status == 503, (path, response.status)
            assert response.header("Retry-After") == ["120"], path
            assert response.header("Cache-Control") == ["no-store"]
            assert response.body == b"<h1>Down for maintenance</h1>"
        assert site.app.reached("/") == site.app.reached("/api/notes/") == 0
        health = https_get(site, prod, "/healthz/")
        assert health.status == 200 and health.header("X-Release") == ["test"]
        # staging (no release here: its placeholder answers) is not in maintenance.
        assert b"no release deployed yet" in https_get(site, staging, "/").body
        # The operators' address: served. Then maintenance off: served, one reload each.
        for allow, enabled in ((("127.0.0.1",), True), ((), False)):
            switch(site.tree, allow, enabled)
            reload = run(["docker", "exec", names[0], *site.tree.command("-s", "reload")])
            assert reload.returncode == 0, reload.stderr
            assert wait_for_status(site, prod, "/", 200), (allow, enabled)
            assert https_get(site, prod, "/").header("X-Release") == ["test"]


def test_a_contracts_own_health_path_is_the_one_cached_and_kept_out_of_maintenance(
        rendered, standin_nginx):
    """releases.prod.health.path: /ht/?format=json, as the release writes it
    (components/release/health_route.py), with maintenance on: /ht/ still reaches the app —
    from outside about once a second whatever the query, from the platform's own address
    every time — while /healthz/, no longer prod's health path, gets the maintenance page.
    Before, the exception and the cached location named /healthz/ alone, so a stock app's
    health check answered 503 during maintenance and its release's watch failed."""
    from components.platform.nginx import (
        health_route_path,
        render_health_route,
        render_maintenance,
    )
    from components.release.maintenance import PAGE_FILE

    def prepare(tree: NginxTree) -> None:
        (tree.directory / "conf" / health_route_path("prod")).write_text(
            render_health_route("prod", "/ht/?format=json"))
        (tree.directory / "conf" / "maintenance" / "prod.conf").write_text(
            render_maintenance("prod", True))
        page = tree.www / "prod" / "maintenance" / PAGE_FILE
        page.parent.mkdir(parents=True)
        page.write_text("<h1>Down for maintenance</h1>")

    with running_site(rendered["prod"], prepare) as site:
        prod = site.domains["prod"]
        assert https_status(site, prod, "/healthz/", "127.0.1.60")[0] == 503
        assert https_status(site, prod, "/", "127.0.1.60")[0] == 503
        started = time.monotonic()
        statuses = [https_status(site, prod, f"/ht/?format=json&n={index}", "127.0.1.60")[0]
                    for index in range(30)]
        elapsed = time.monotonic() - started
        from_outside = site.app.reached("/ht/")
        assert set(statuses) == {200}, statuses
        assert 1 <= from_outside <= elapsed + 2, (from_outside, elapsed)
        for _ in range(3):
            assert https_status(site, prod, "/ht/?format=json", "127.0.0.1")[0] == 200
        assert site.app.reached("/ht/") == from_outside + 3


def wait_for_status(site: Site, domain: str, path: str, status: int,
                    seconds: float = 10) -> bool:
    """Until a new worker answers `status` (a reload starts new workers in a moment)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if https_get(site, domain, path).status == status:
            return True
        time.sleep(0.2)
    return False
