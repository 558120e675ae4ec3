"""Test scaffolding: the `local` stack on a real Docker engine, for the e2e tests and the
benchmarks. Each instance has its own name prefix, subnet, 127.0.0.1 ports and host root,
and `remove_everything` deletes what it created."""

from __future__ import annotations

import copy
import ipaddress
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from components.names import database_name
from components.platform.nginx import reload_command
from components.settings.platform import ImageSettings
from components.settings.postgres import image_major
from tests.harness.client import Response, https_request
from tests.harness.engine import DockerEngine
from tests.harness.program import ProgramRun, made_up_secrets, run_program, stack_config
from tests.harness.replay import Replay

ROOT = Path(__file__).resolve().parents[2]
# Upstream image (by repository) → the stand-in built by tests/images/build-standins.sh;
# PostgreSQL's by its major (postgres:15.20-bookworm → aiia-standin/postgres:15).
STANDINS = {
    "postgres": "aiia-standin/postgres:{major}",
    "edoburu/pgbouncer": "aiia-standin/pgbouncer:1",
    "valkey/valkey": "aiia-standin/valkey:8",
    "redis": "aiia-standin/redis:7",  # a stack that keeps Redis 7.2 as its cache
    "nginx": "aiia-standin/nginx:1",
    "certbot/certbot": "aiia-standin/certbot:5",
}
APP_IMAGE = "aiia-e2e-app"
DASHBOARD_IMAGE = "aiia-e2e-dashboard:test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_subnet(engine: DockerEngine, besides: list[str] = ()) -> str:
    """A /24 that no network of the engine (nor any of `besides`) overlaps."""
    taken = [ipaddress.ip_network(subnet) for subnet in besides]
    for network in engine.request("GET", "/networks"):
        for config in (network.get("IPAM") or {}).get("Config") or []:
            if config.get("Subnet"):
                taken.append(ipaddress.ip_network(config["Subnet"]))
    for _ in range(200):
        candidate = ipaddress.ip_network(
            f"172.{secrets.choice(range(20, 31))}.{secrets.randbelow(256)}.0/24")
        if not any(candidate.overlaps(network) for network in taken):
            return str(candidate)
    raise RuntimeError("no free /24 for the test network")


def free_subnets(engine: DockerEngine, count: int) -> list[str]:
    """`count` distinct free /24s: a stack's data, status and environment networks get
    subnets of their own, so that no test stack depends on Docker's default pools."""
    subnets: list[str] = []
    for _ in range(count):
        subnets.append(free_subnet(engine, besides=subnets))
    return subnets


def newer_patch_release(reference: str) -> str:
    """The same image one patch release later: the tag's last number before any suffix (or the
    pgbouncer image's revision, -pN) plus one: postgres:15.20-bookworm → postgres:15.21-bookworm,
    edoburu/pgbouncer:v1.23.1-p3 → …-p4. Derived from the pins, so a pin update (renovate.json)
    never leaves a "newer" release that is not newer."""
    repository, tag = reference.split("@")[0].rsplit(":", 1)
    match = re.fullmatch(r"(?P<head>.*?)(?P<number>\d+)(?P<tail>(?:-[a-z]+)?)", tag)
    if match is None:
        raise ValueError(f"{reference}: no release number in the tag")
    return f"{repository}:{match['head']}{int(match['number']) + 1}{match['tail']}"


# A newer patch release of each platform image, to bump to (image_map maps it to the same
# stand-in): bench/restarts.py measures the restart, tests/unit/test_preview.py the plan.
NEWER_PATCH_RELEASES = {
    service: newer_patch_release(getattr(ImageSettings(), service))
    for service in ("postgres", "pgbouncer", "redis", "nginx")
}


def image_map(config: dict) -> dict[str, str]:
    """Every upstream image the config names (or the defaults it leaves) → its stand-in."""
    images = {**vars(ImageSettings()), **config["aiia:platform"].get("images", {})}
    mapping = {}
    for reference in images.values():
        repository = reference.split("@")[0].rsplit(":", 1)[0]
        mapping[reference] = STANDINS[repository].format(major=image_major(reference))
    return mapping


def tag_image(engine: DockerEngine, source: str, target: str) -> None:
    repository, tag = target.rsplit(":", 1)
    engine.request("POST", f"/images/{source}/tag?repo={repository}&tag={tag}", ok=(201,))


@dataclass
class LocalStack:
    """The `local` stack as it runs on the engine, with what tests need to reach it."""

    prefix: str
    root: Path
    config: dict
    secrets: dict[str, str]
    http_port: int
    https_port: int
    replay: Replay
    run: ProgramRun
    engine: DockerEngine

    def domain(self, environment: str) -> str:
        return self.config["aiia:platform"]["environments"][environment]["domain"]

    def get(self, environment: str, path: str, **kwargs) -> Response:
        return https_request(self.https_port, self.domain(environment), path, **kwargs)

    def container(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def exec(self, container: str, *command: str, stdin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", "-i", container, *command], input=stdin,
                              capture_output=True, text=True, timeout=60, check=check)

    def program(self, config: dict | None = None) -> ProgramRun:
        return run_program("local", config=config or self.config, secrets=self.secrets)

    def up(self, config: dict | None = None) -> ProgramRun:
        """`pulumi up` of this stack with `config` (default: its current config)."""
        if config is not None:
            self.config = config
        self.run = self.program()
        self.replay.apply(self.run)
        return self.run

    def with_release(self, environment: str, release: str) -> dict:
        config = copy.deepcopy(self.config)
        config["aiia:releases"][environment]["release"] = release
        return config

    def notes_written(self, environment: str, prefix: str) -> dict[str, int]:
        """{text: count} of the environment's notes whose text starts with `prefix` (what a
        tests/harness/strict.py StrictPosts run wrote), read with psql in the postgres
        container; the prefix travels as a psql variable, quoted by psql."""
        query = ("SELECT text, count(*) FROM notes_note WHERE text LIKE :'prefix' || '%' "
                 "GROUP BY text;\n")
        result = self.exec(self.container("postgres"), "psql", "-U", "postgres", "-d",
                           database_name(self.prefix, environment), "-tA", "-F", "\t",
                           "-v", "ON_ERROR_STOP=1", "-v", f"prefix={prefix}", "-f", "-",
                           stdin=query)
        return {text: int(count) for text, _, count in
                (line.partition("\t") for line in result.stdout.splitlines()) if text}

    def renew_certificate(self, environment: str) -> None:
        """What a certificate renewal does to nginx: new files for the environment's domain
        (a fresh self-signed pair here), then the program's reload command, as certbot's
        deploy hook and renewal script do (templates/certbot/)."""
        domain = self.domain(environment)
        tls = self.root / "nginx" / "tls" / domain
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                        "-subj", f"/CN={domain}", "-addext", f"subjectAltName=DNS:{domain}",
                        "-keyout", str(tls / "privkey.pem.new"),
                        "-out", str(tls / "fullchain.pem.new")],
                       check=True, capture_output=True, timeout=60)
        (tls / "privkey.pem.new").chmod(0o600)
        (tls / "fullchain.pem.new").chmod(0o644)
        for name in ("privkey.pem", "fullchain.pem"):
            (tls / f"{name}.new").replace(tls / name)
        subprocess.run(["bash", "-c", reload_command(self.container("nginx"))], check=True,
                       capture_output=True, timeout=60)

    def wait_healthy(self, container: str, timeout: float = 90) -> float:
        started = time.monotonic()
        self.engine.wait_healthy(container, timeout)
        return time.monotonic() - started


def e2e_config(prefix: str, root: Path, subnets: list[str], http_port: int, https_port: int,
               releases: dict[str, str]) -> dict:
    """The local stack's config for a test stack; `subnets`: its data network's, its status
    network's (a /27 of it is used) and one per environment."""
    config = copy.deepcopy(stack_config("local"))
    config["aiia:prefix"] = prefix
    config["aiia:host"]["root_dir"] = str(root)
    platform = config["aiia:platform"]
    data, status, *environments = subnets
    platform["network_subnet"] = data
    platform["status_subnet"] = str(next(ipaddress.ip_network(status).subnets(new_prefix=27)))
    for environment, subnet in zip(platform["environments"].values(), environments,
                                   strict=True):
        environment["network_subnet"] = subnet
    platform["nginx"].update({"http_port": http_port, "https_port": https_port})
    platform["dashboard"] = {**platform.get("dashboard", {}), "image": DASHBOARD_IMAGE}
    for environment in config["aiia:releases"]:
        # A shorter watch than production's 30 s keeps the suite quick; long enough for the
        # watch to see a bad release's 5xx under the tests' load.
        # The stack file's smoke checks stay: the reference app's front page and WebSocket
        # echo, which the delivery tests' broken release fails.
        smoke = config["aiia:releases"][environment].get("smoke")
        config["aiia:releases"][environment] = {"image": app_repository(prefix),
                                                "release": releases["a"],
                                                "watch_seconds": 12,
                                                **({"smoke": smoke} if smoke else {})}
    return config


def remove_everything(engine: DockerEngine, prefix: str, root: Path) -> None:
    for container in engine.request("GET", "/containers/json?all=1"):
        if any(name.lstrip("/").startswith(f"{prefix}-") for name in container["Names"]):
            engine.remove_container(container["Id"])
    for network in engine.request("GET", "/networks"):
        if network["Name"] == prefix or network["Name"].startswith(f"{prefix}-"):
            engine.remove_network(network["Name"])
    for image in engine.request("GET", "/images/json"):
        for reference in image.get("RepoTags") or []:
            if reference.startswith(f"{app_repository(prefix)}:"):
                engine.request("DELETE", f"/images/{reference}", ok=(200, 404, 409))
    for volume in (engine.request("GET", "/volumes").get("Volumes") or []):
        if volume["Name"].startswith(f"{prefix}-"):
            engine.remove_volume(volume["Name"])
    shutil.rmtree(root, ignore_errors=True)




def build_images() -> None:
    """The app and dashboard images from this checkout (a no-op when inputs are unchanged)."""
    subprocess.run(["bash", str(ROOT / "tests/e2e/build-images.sh")], check=True)


VARIANTS = ("unhealthy", "broken", "schema-b", "bad-migration", "lock-migration", "ordinary",
            "slow-start", "stock")


def release_tags(engine: DockerEngine) -> dict[str, str]:
    """The releases a stack can deploy: two of the reference app (the app reports its
    release name) and the misbehaving variants built by tests/e2e/build-images.sh."""
    return {"a": "release-a", "b": "release-b",
            **{variant: variant for variant in VARIANTS
               if engine.image(f"{APP_IMAGE}:{variant}") is not None}}


def app_repository(prefix: str) -> str:
    """Each stack deploys from a repository of its own, so pruning old release images in
    one stack never touches another's."""
    return f"{prefix}-app"


def tag_releases(engine: DockerEngine, prefix: str, releases: dict[str, str]) -> None:
    for release in releases.values():
        source = "aiia-e2e-app:build" if release.startswith("release-") else \
            f"{APP_IMAGE}:{release}"
        tag_image(engine, source, f"{app_repository(prefix)}:{release}")


def start_local_stack(engine: DockerEngine, releases: dict[str, str],
                      change: Callable[[dict], None] | None = None) -> LocalStack:
    """A fresh local stack, up (its config first changed by `change`, if given); the caller
    removes it with `remove_everything`."""
    prefix = f"e2e{secrets.token_hex(3)}"
    root = Path(f"/tmp/aiia-{prefix}")
    http_port, https_port = free_port(), free_port()
    environments = stack_config("local")["aiia:platform"]["environments"]
    config = e2e_config(prefix, root, free_subnets(engine, 2 + len(environments)), http_port,
                        https_port, releases)
    if change is not None:
        change(config)
    tag_releases(engine, prefix, releases)
    stack = LocalStack(prefix=prefix, root=root, config=config,
                       secrets=made_up_secrets(config), http_port=http_port,
                       https_port=https_port, replay=Replay(engine, image_map(config)),
                       run=None, engine=engine)  # type: ignore[arg-type]
    try:
        stack.up()
    except BaseException:
        remove_everything(engine, prefix, root)
        raise
    return stack
