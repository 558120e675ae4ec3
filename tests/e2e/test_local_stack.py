"""The `local` stack on a real Docker engine, checked from the outside (through nginx from
127.0.0.1, or inside the project's own containers)."""

import copy
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from components.platform.redis import cache_programs
from components.settings.platform import ImageSettings
from tests.harness.client import assert_websocket_echoes
from tests.harness.local_stack import image_map

pytestmark = pytest.mark.e2e

# linux/capability.h
CAPABILITY_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3,
                   "SETGID": 6, "SETUID": 7, "NET_BIND_SERVICE": 10}
PLATFORM = ("postgres", "pgbouncer", "redis", "nginx", "dashboard", "dashboard-collector")


def inspect(stack, name):
    return stack.engine.container(name)


def test_every_container_is_healthy_with_the_declared_memory(local_stack):
    declared = {c.plain["name"]: c.plain for c in local_stack.run.of_type(
        "docker:index/container:Container")}
    assert {local_stack.container(s) for s in PLATFORM} <= set(declared)
    for name, inputs in declared.items():
        details = inspect(local_stack, name)
        assert details["State"]["Health"]["Status"] == "healthy", name
        assert details["HostConfig"]["Memory"] == inputs["memory"] * 1024 * 1024, name
        assert details["HostConfig"]["MemorySwap"] == inputs["memory_swap"] * 1024 * 1024, name
        assert details["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped", name
        assert details["HostConfig"]["LogConfig"]["Config"] == {"max-size": "10m",
                                                                "max-file": "3"}, name


def test_every_container_serves_with_its_capabilities_dropped(local_stack):
    # Healthy (above) with only what it was given back, on a read-only root; its processes
    # hold no more.
    for name, inputs in {c.plain["name"]: c.plain for c in local_stack.run.of_type(
            "docker:index/container:Container")}.items():
        host_config = inspect(local_stack, name)["HostConfig"]
        assert host_config["CapDrop"] == ["ALL"], name
        assert host_config["ReadonlyRootfs"] is True, name
        assert sorted(host_config["CapAdd"] or []) == inputs["capabilities"].get("adds", []), name
        # PID 1's bounding set, as the kernel sees it (/proc/1/status, CapBnd in hex).
        status = local_stack.exec(name, "cat", "/proc/1/status").stdout
        bounding = int(next(line.split()[1] for line in status.splitlines()
                            if line.startswith("CapBnd:")), 16)
        allowed = sum(1 << CAPABILITY_BITS[cap] for cap in inputs["capabilities"].get("adds", []))
        assert bounding == allowed, (name, hex(bounding))
    postgres = inspect(local_stack, local_stack.container("postgres"))
    assert postgres["Config"]["User"] == "999:999"


def test_the_app_runs_as_its_configured_user_and_owns_what_it_writes(local_stack):
    for env in ("prod", "staging"):
        (app,) = [name for name in local_stack.run.containers()
                  if name.startswith(f"{local_stack.prefix}-app-{env}-")]
        assert inspect(local_stack, app)["Config"]["User"] == "10001:10001"
        assert local_stack.exec(app, "id", "-u").stdout.strip() == "10001"
        static = local_stack.root / "www" / env / "static"
        assert any(static.iterdir()), "collectstatic wrote into it as that user"
        if os.geteuid() == 0:  # an unprivileged local stack leaves them to its user
            for directory in (static, local_stack.root / "logs" / env):
                owner = (directory.stat().st_uid, directory.stat().st_gid)
                assert owner == (10001, 10001), directory


def test_no_container_environment_holds_a_secret_that_has_a_file_alternative(local_stack):
    # PostgreSQL read its superuser password from a file on first start (the stack is up);
    # `docker inspect` shows no password variable for it.
    postgres = inspect(local_stack, local_stack.container("postgres"))["Config"]["Env"]
    assert not [env for env in postgres if env.startswith("POSTGRES_PASSWORD=")]
    assert local_stack.secrets["aiia:postgres_password"] not in repr(postgres)
    # …and the password from the file is the superuser's (over TCP, where it is asked).
    password = local_stack.secrets["aiia:postgres_password"]
    result = local_stack.exec(
        local_stack.container("postgres"), "env", f"PGPASSWORD={password}", "psql", "-X",
        "-At", "-h", "127.0.0.1", "-U", "postgres", "-c", "SELECT current_user", check=False)
    assert result.stdout.strip() == "postgres", result.stderr
    # The apps' secrets are files for their user alone; their environments hold none.
    for env in ("prod", "staging"):
        (app,) = [name for name in local_stack.run.containers()
                  if name.startswith(f"{local_stack.prefix}-app-{env}-")]
        variables = inspect(local_stack, app)["Config"]["Env"]
        assert "SECRET_KEY_FILE=/run/secrets/aiia/secret_key" in variables
        for key in (f"aiia:{env}_secret_key", f"aiia:{env}_db_password",
                    f"aiia:{env}_redis_password"):
            assert local_stack.secrets[key] not in repr(variables), key
        for file in ("secret_key", "database_password", "redis_password"):
            path = local_stack.root / "secrets" / env / file
            if os.geteuid() == 0:
                status = path.stat()
                assert (status.st_mode & 0o777, status.st_uid) == (0o400, 10001), path
            # …and the app, as its user, reads it (it served above with them).
            assert local_stack.exec(app, "test", "-r", f"/run/secrets/aiia/{file}").returncode == 0


def test_only_nginx_is_published_and_only_on_loopback(local_stack):
    for name in [local_stack.container(s) for s in PLATFORM] + [
            c for c in local_stack.run.containers() if "-app-" in c]:
        ports = inspect(local_stack, name)["NetworkSettings"]["Ports"] or {}
        bindings = [binding for value in ports.values() for binding in (value or [])]
        if name == local_stack.container("nginx"):
            assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}
            assert {int(b["HostPort"]) for b in bindings} == {local_stack.http_port,
                                                              local_stack.https_port}
        else:
            assert bindings == [], f"{name} publishes {bindings}"


def psql_through_pgbouncer(stack, environment, database, sql):
    """A query from the app network (a throwaway client in the postgres image) through
    PgBouncer, as the environment's own role."""
    password = stack.secrets[f"aiia:{environment}_db_password"]
    return stack.exec(
        stack.container("postgres"), "env", f"PGPASSWORD={password}", "psql",
        "-h", stack.container("pgbouncer"), "-p", "6432", "-U", f"{stack.prefix}_{environment}",
        "-d", database, "-tAc", sql, check=False)


@pytest.mark.parametrize("environment", ["prod", "staging"])
def test_each_environment_reaches_its_own_database_through_pgbouncer(local_stack, environment):
    database = f"{local_stack.prefix}_{environment}"
    result = psql_through_pgbouncer(local_stack, environment, database,
                                    "SELECT current_database() || ' ' || current_user")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{database} {database}"
    # The app's migration ran into its own database.
    tables = psql_through_pgbouncer(local_stack, environment, database,
                                    "SELECT count(*) FROM django_migrations "
                                    "WHERE app = 'notes'")
    assert int(tables.stdout.strip()) >= 1, tables.stderr


def test_one_environment_cannot_read_the_others_database(local_stack):
    other = f"{local_stack.prefix}_prod"
    result = psql_through_pgbouncer(local_stack, "staging", other, "SELECT 1")
    assert result.returncode != 0
    # PgBouncer's rules refuse it first (PostgreSQL's would next, then CONNECT).
    assert "login rejected" in result.stderr or "permission denied" in result.stderr \
        or "no pg_hba.conf entry" in result.stderr, result.stderr


def cache_cli(stack):
    """The cache's client as the program names it for the stack's image: valkey-cli (the
    default), redis-cli for a stack that keeps Redis."""
    image = stack.config["aiia:platform"].get("images", {}).get("redis", ImageSettings().redis)
    return cache_programs(image)[1]


def redis(stack, user, *command):
    password = stack.secrets[f"aiia:{user}_redis_password"]
    return stack.exec(stack.container("redis"), cache_cli(stack), "--no-auth-warning", "--user",
                      user, "--pass", password, *command, check=False).stdout.strip()


def resp(*arguments: str) -> str:
    """One command in Redis's wire protocol, for `redis-cli --pipe`."""
    return f"*{len(arguments)}\r\n" + "".join(
        f"${len(argument.encode())}\r\n{argument}\r\n" for argument in arguments)


def test_redis_keeps_environments_apart(local_stack):
    assert redis(local_stack, "prod", "SET", "prod:probe", "1") == "OK"
    assert redis(local_stack, "staging", "SET", "staging:probe", "2") == "OK"
    assert "NOPERM" in redis(local_stack, "staging", "GET", "prod:probe")
    assert "NOPERM" in redis(local_stack, "prod", "GET", "staging:probe")
    assert "NOPERM" in redis(local_stack, "prod", "FLUSHALL")
    anonymous = local_stack.exec(local_stack.container("redis"), cache_cli(local_stack), "GET",
                                 "prod:probe", check=False).stdout
    assert "NOPERM" in anonymous


def test_redis_evicts_at_its_50_mb_cap(local_stack):
    # The environment users may not read CONFIG or INFO (by design), so the cap is shown by
    # what Redis does: 80 MiB written, fewer than 50 MiB kept, the container under its limit.
    value = "x" * (1024 * 1024)
    password = local_stack.secrets["aiia:prod_redis_password"]
    commands = resp("AUTH", "prod", password) + "".join(
        resp("SET", f"prod:big:{index}", value) for index in range(80))
    local_stack.exec(local_stack.container("redis"), cache_cli(local_stack), "--pipe",
                     stdin=commands)
    kept = sum(int(redis(local_stack, "prod", "EXISTS", f"prod:big:{index}"))
               for index in range(80))
    assert 0 < kept < 50
    stats = local_stack.engine.request(
        "GET", f"/containers/{local_stack.container('redis')}/stats?stream=false")
    assert stats["memory_stats"]["usage"] < 64 * 1024 * 1024


@pytest.mark.parametrize("environment", ["prod", "staging"])
def test_each_domain_reaches_its_own_release(local_stack, environment):
    response = local_stack.get(environment, "/")
    assert response.status == 200
    assert json.loads(response.body)["environment"] == environment
    assert response.headers["x-release"] == "release-a"


def test_http_redirects_to_https(local_stack):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", local_stack.http_port, timeout=5)
    connection.request("GET", "/x", headers={"Host": local_stack.domain("prod")})
    response = connection.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://{local_stack.domain('prod')}/x"


SECURITY_HEADERS = ("strict-transport-security", "x-content-type-options", "x-frame-options",
                    "referrer-policy", "content-security-policy")


@pytest.mark.parametrize("path,status", [("/", 200), ("/healthz/", 200),
                                         ("/static/does-not-exist.css", 404),
                                         ("/no-such-page/", 404)])
def test_security_headers_on_normal_and_error_responses(local_stack, path, status):
    response = local_stack.get("prod", path)
    assert response.status == status
    for header in SECURITY_HEADERS:
        assert header in response.headers, f"{header} missing on {path} ({status})"
    assert "max-age=63072000" in response.headers["strict-transport-security"]


def test_static_files_are_served_by_nginx(local_stack):
    response = local_stack.get("staging", "/static/notes/hello.txt")
    assert response.status == 200
    assert "x-release" not in response.headers  # nginx served it, not the app
    assert "max-age=604800" in response.headers.get("cache-control", "")


def test_websocket_upgrades_and_echoes_through_nginx(local_stack):
    assert_websocket_echoes(local_stack.https_port, local_stack.domain("prod"),
                            "hello through nginx")


@pytest.mark.parametrize("environment", ["prod", "staging"])
def test_health_endpoint_passes_both_checks(local_stack, environment):
    response = local_stack.get(environment, "/healthz/")
    body = json.loads(response.body)
    assert response.status == 200
    assert body["checks"] == {"database": "ok", "cache": "ok"}
    assert "no-store" in response.headers.get("cache-control", "")


def test_concurrent_health_checks_all_pass(local_stack):
    # Docker's health check, the dashboard's probe and an outside monitor can arrive at
    # once; each must see its own write read back (a shared key gave 30 of 240 a 503).
    # 240 requests in bursts of 16, within nginx's burst allowance.
    def check(_):
        response = local_stack.get("prod", "/healthz/")
        return response.status, response.body[:200]

    with ThreadPoolExecutor(16) as pool:
        outcomes = [outcome for _ in range(15) for outcome in pool.map(check, range(16))]
    failed = [outcome for outcome in outcomes if outcome[0] != 200]
    assert not failed, f"{len(failed)} of {len(outcomes)} failed, e.g. {failed[:2]}"


def test_health_fails_without_pgbouncer_and_recovers_by_itself(local_stack):
    pgbouncer = local_stack.container("pgbouncer")
    subprocess_run(["docker", "stop", "-t", "5", pgbouncer])
    try:
        # From outside nginx answers /healthz/ from a cache at most 1 s old (review H2): the
        # failure shows within a second or two, not necessarily on the first request.
        deadline = time.monotonic() + 10
        response = local_stack.get("prod", "/healthz/")
        while response.status != 503 and time.monotonic() < deadline:
            time.sleep(0.5)
            response = local_stack.get("prod", "/healthz/")
        body = json.loads(response.body)
        assert response.status == 503
        assert body["checks"]["database"] != "ok"
        assert body["checks"]["cache"] == "ok"
    finally:
        subprocess_run(["docker", "start", pgbouncer])
    local_stack.wait_healthy(pgbouncer)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if local_stack.get("prod", "/healthz/").status == 200:
            break
        time.sleep(1)
    assert local_stack.get("prod", "/healthz/").status == 200


def test_rate_limit_answers_429_beyond_the_burst(local_stack):
    # 200 r/s with a burst of 400: 700 requests as fast as one keep-alive connection goes
    # must see some 429s; bounded to that many requests and a few seconds.
    from tests.harness.client import SniHTTPSConnection

    connection = SniHTTPSConnection(local_stack.https_port, local_stack.domain("staging"))
    statuses = []
    deadline = time.monotonic() + 20
    for _ in range(700):
        if time.monotonic() > deadline:
            break
        connection.request("GET", "/static/notes/hello.txt",
                           headers={"Host": local_stack.domain("staging")})
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    connection.close()
    assert 429 in statuses, f"no 429 in {len(statuses)} requests"
    assert statuses[0] == 200


def test_access_log_is_json_per_environment(local_stack):
    local_stack.get("prod", "/")
    log = (local_stack.root / "logs/nginx/access.log").read_text().splitlines()
    records = [json.loads(line) for line in log[-20:]]
    assert {"time", "env", "host", "status", "request_time", "release"} <= set(records[-1])
    assert any(r["env"] == "prod" and r["status"] == 200 for r in records)


def subprocess_run(command):
    import subprocess

    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("service", ["postgres", "pgbouncer", "redis", "nginx"])
def test_a_crashed_service_comes_back_through_its_restart_policy(local_stack, service):
    name = local_stack.container(service)
    pid = inspect(local_stack, name)["State"]["Pid"]
    restarts = inspect(local_stack, name)["RestartCount"]
    # A crash, not an operator's stop: `docker kill` marks the container manually stopped,
    # which disables its restart policy; SIGKILL to its main process does not.
    os.kill(pid, signal.SIGKILL)
    other = "staging"
    served_meanwhile = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        details = inspect(local_stack, name)
        if details["RestartCount"] > restarts and \
                details["State"].get("Health", {}).get("Status") == "healthy":
            break
        if service != "nginx":
            served_meanwhile.append(local_stack.get(other, "/static/notes/hello.txt").status)
        time.sleep(1)
    details = inspect(local_stack, name)
    assert details["RestartCount"] > restarts
    assert details["State"]["Health"]["Status"] == "healthy"
    assert set(served_meanwhile) <= {200}
    # The whole stack is healthy again before the next test.
    for environment in ("prod", "staging"):
        deadline = time.monotonic() + 30
        while local_stack.get(environment, "/healthz/").status != 200:
            assert time.monotonic() < deadline, f"{environment} did not recover after {service}"
            time.sleep(1)


def test_the_dashboard_behind_nginx_asks_for_credentials_and_shows_this_stack(local_stack):
    import base64

    domain = local_stack.config["aiia:platform"]["status_domain"]
    from tests.harness.client import https_request

    anonymous = https_request(local_stack.https_port, domain, "/api/status")
    assert anonymous.status == 401
    password = local_stack.secrets["aiia:dashboard_password"]
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    deadline = time.monotonic() + 90
    while True:
        response = https_request(local_stack.https_port, domain, "/api/status",
                                 headers={"Authorization": f"Basic {token}"})
        assert response.status == 200
        status = json.loads(response.body)
        services = {s["name"]: s for s in status.get("services") or []}
        ready = services and all(s.get("health") == "healthy" for name, s in services.items()
                                 if name in ("postgres", "pgbouncer", "redis", "nginx",
                                             "app-prod", "app-staging"))
        if ready:
            break
        assert time.monotonic() < deadline, f"dashboard never saw a healthy stack: {services}"
        time.sleep(5)
    names = [s["name"] for s in status["services"]]
    assert len(names) == len(set(names)), f"another stack's containers listed: {names}"
    containers = [s.get("container") or "" for s in status["services"]]
    assert all(c.startswith(local_stack.prefix) for c in containers if c)


# --- what a release can reach (review M7) ---------------------------------------------------

REACH = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    address = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
except socket.gaierror:
    print("no such host"); sys.exit()
try:
    socket.create_connection(address, timeout=3).close()
    print("open")
except OSError as error:
    print("closed: " + type(error).__name__)
"""

LOGIN = """
import sys, psycopg2
host, user, password, database = sys.argv[1:5]
try:
    psycopg2.connect(host=host, port=int(sys.argv[5]), user=user, password=password,
                     dbname=database, connect_timeout=5).close()
    print("logged in")
except psycopg2.OperationalError as error:
    print("refused: " + " ".join(str(error).split()))
"""


def serving_release(stack, environment: str) -> str:
    (name,) = [name for name in stack.run.containers()
               if name.startswith(f"{stack.prefix}-app-{environment}-")]
    return name


def address_of(stack, container: str) -> str:
    networks = inspect(stack, container)["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


def reach(stack, container: str, host: str, port: int) -> str:
    return stack.exec(container, "python3", "-c", REACH, host, str(port)).stdout.strip()


def test_a_release_reaches_what_it_uses_and_nothing_else(local_stack):
    staging = serving_release(local_stack, "staging")
    prod = serving_release(local_stack, "prod")
    # What it uses, by name on its own network.
    for service, port in (("pgbouncer", 6432), ("redis", 6379), ("nginx", 443)):
        assert reach(local_stack, staging, local_stack.container(service), port) == "open", \
            service
    # PostgreSQL: not even a name; its address does not answer either.
    assert reach(local_stack, staging, local_stack.container("postgres"), 5432) == \
        "no such host"
    postgres = address_of(local_stack, local_stack.container("postgres"))
    assert reach(local_stack, staging, postgres, 5432).startswith("closed")
    # The other environment's release, by name or address, past nginx.
    assert reach(local_stack, staging, prod, 8000) == "no such host"
    assert reach(local_stack, staging, address_of(local_stack, prod), 8000).startswith("closed")
    # The dashboard's server (the status network's, nginx's alone).
    platform = local_stack.run.named("platform-network-status").plain
    dashboard = local_stack.run.containers()[local_stack.container("dashboard")].plain
    address = dashboard["networks_advanced"][0]["ipv4_address"]
    assert dashboard["networks_advanced"][0]["name"] == platform["name"]
    answered = local_stack.exec(local_stack.container("nginx"), "curl", "-s", "-o", "/dev/null",
                                "-w", "%{http_code}", f"http://{address}:9100/").stdout
    assert answered == "401", answered  # nginx's own path to it (it asks for credentials)
    assert reach(local_stack, staging, address, 9100).startswith("closed")


def test_a_release_cannot_log_in_to_the_other_environments_database_even_knowing_its_password(
        local_stack):
    staging = serving_release(local_stack, "staging")
    pgbouncer = local_stack.container("pgbouncer")
    database = f"{local_stack.prefix}_prod"
    prod_password = local_stack.secrets["aiia:prod_db_password"]
    superuser_password = local_stack.secrets["aiia:postgres_password"]
    attempts = {
        "prod's role, through PgBouncer": (pgbouncer, database, prod_password, database, 6432),
        "the superuser, through PgBouncer": (pgbouncer, "postgres", superuser_password,
                                             "postgres", 6432),
    }
    for what, (host, user, password, dbname, port) in attempts.items():
        said = local_stack.exec(staging, "python3", "-c", LOGIN, host, user, password, dbname,
                                str(port)).stdout.strip()
        assert said.startswith("refused"), f"{what}: {said}"
    # Its own role, to its own database, is let in (the same path the app takes).
    own = f"{local_stack.prefix}_staging"
    said = local_stack.exec(staging, "python3", "-c", LOGIN, pgbouncer, own,
                            local_stack.secrets["aiia:staging_db_password"], own, "6432")
    assert said.stdout.strip() == "logged in", said.stdout + said.stderr


def test_a_rotated_dashboard_password_refuses_the_old_one(local_stack):
    """Review M4: `pulumi up` with a new aiia:dashboard_password restarts the server, which
    reads its config once; the old password is refused from then on."""
    import base64

    from tests.harness.client import https_request

    domain = local_stack.config["aiia:platform"]["status_domain"]

    def status_with(password: str) -> int:
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        deadline = time.monotonic() + 30  # the restarted server starts listening
        while True:
            response = https_request(local_stack.https_port, domain, "/api/status",
                                     headers={"Authorization": f"Basic {token}"})
            if response.status != 502 or time.monotonic() > deadline:
                return response.status
            time.sleep(0.5)

    old = local_stack.secrets["aiia:dashboard_password"]
    assert status_with(old) == 200
    local_stack.secrets["aiia:dashboard_password"] = "rotated-" + old
    local_stack.up()
    assert status_with(old) == 401
    assert status_with("rotated-" + old) == 200


def test_nginx_leaves_the_data_network_once_no_release_runs_there(local_stack):
    """What an earlier program left (nginx on the one shared network, a release there): the
    join step keeps nginx there while a release of the stack runs on it, and takes it off
    once none does, without a restart."""
    import subprocess

    from tests.harness.program import host_scripts

    nginx, data = local_stack.container("nginx"), local_stack.prefix
    join = host_scripts(local_stack.run)["platform-nginx-networks"]
    started = inspect(local_stack, nginx)["State"]["StartedAt"]
    subprocess.run(["docker", "network", "connect", data, nginx], check=True, timeout=60)
    earlier = f"{local_stack.prefix}-app-prod-earlier"
    subprocess.run(["docker", "run", "-d", "--name", earlier, "--network", data,
                    "--label", f"aiia.stack={local_stack.prefix}", "--label", "aiia.service=app",
                    "--entrypoint", "sleep", f"{local_stack.prefix}-app:release-a", "300"],
                   check=True, capture_output=True, timeout=60)
    try:
        said = subprocess.run(["bash", "-c", join], capture_output=True, text=True, check=True,
                              timeout=60).stdout
        assert f"stays on {data} while releases run there ({earlier})" in said, said
        assert data in inspect(local_stack, nginx)["NetworkSettings"]["Networks"]
    finally:
        subprocess.run(["docker", "rm", "-f", earlier], capture_output=True, timeout=60)
    said = subprocess.run(["bash", "-c", join], capture_output=True, text=True, check=True,
                          timeout=60).stdout
    assert f"left {data}" in said, said
    assert data not in inspect(local_stack, nginx)["NetworkSettings"]["Networks"]
    assert inspect(local_stack, nginx)["State"]["StartedAt"] == started  # no restart
    assert local_stack.get("prod", "/healthz/").status == 200


def test_a_stack_on_redis_7_2_and_one_on_valkey_move_between_them(local_stack):
    """images.redis from Valkey (the default) to redis:7.2 (what a stack made before Valkey
    runs, and keeps while its operator leaves the line alone) and back: each image runs its own
    programs, with the same ACL users and key prefixes; the cache starts empty after a switch
    (nothing is saved to disk); both environments serve their health checks again."""
    original = copy.deepcopy(local_stack.config)
    cache = local_stack.container("redis")

    def switch_to(image):
        config = copy.deepcopy(original)
        config["aiia:platform"].setdefault("images", {})["redis"] = image
        local_stack.replay.image_map = image_map(config)
        local_stack.up(config)
        local_stack.wait_healthy(cache)
        assert inspect(local_stack, cache)["Config"]["Cmd"][0] == cache_programs(image)[0]
        assert redis(local_stack, "prod", "GET", "prod:before-switch") == "", "a cold cache"
        assert redis(local_stack, "prod", "SET", "prod:before-switch", "1") == "OK"
        assert "NOPERM" in redis(local_stack, "staging", "GET", "prod:before-switch")
        assert "NOPERM" in redis(local_stack, "prod", "CONFIG", "GET", "maxmemory")
        for environment in ("prod", "staging"):
            deadline = time.monotonic() + 30
            while local_stack.get(environment, "/healthz/").status != 200:
                assert time.monotonic() < deadline, f"{environment} on {image}"
                time.sleep(1)

    assert redis(local_stack, "prod", "SET", "prod:before-switch", "1") == "OK"
    try:
        switch_to("redis:7.2.12-bookworm")
    finally:
        switch_to(ImageSettings().redis)

