"""A PostgreSQL major upgrade on the real engine: a stack made on 15 (the stand-ins of
postgres:15 and postgres:17, tests/images/), with data in both environments, moved to 17 by
scripts/pg_upgrade.py while an app writes, its switch being the program's `up` with the
committed values (what `make pg-upgrade` commits; the replay stands in for `pulumi up`).

In order, on one stack: 17 over the 15 data without the upgrade is refused by the step
before the server (15 keeps serving); an upgrade whose switch fails leaves 15 serving and
writable; the upgrade keeps every row, role and password, and its downtime is measured from
the app's side too. Not modelled: `git commit` of the stack file and the real Pulumi CLI
(tests/unit/test_pg_upgrade_script.py has them).
"""

from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from components.names import database_name, database_role
from scripts.pg_cluster import Cluster, Docker, UpgradeError
from scripts.pg_upgrade import Plan, upgrade
from tests.harness.local_stack import (
    ROOT,
    LocalStack,
    image_map,
    remove_everything,
    start_local_stack,
)
from tests.harness.replay.errors import ReplayError

pytestmark = pytest.mark.e2e

ENVIRONMENTS = ("prod", "staging")
OLD_IMAGE = "postgres:15.20-bookworm"
NEW_IMAGE = "postgres:17.12-trixie"
NEW_STANDIN = "aiia-standin/postgres:17"
BULK_ROWS = 20000
# The environment's role has the database's name (components/names.py).
BULK_SQL = """
CREATE TABLE bulk (id bigint PRIMARY KEY, body text);
INSERT INTO bulk SELECT n, md5(n::text) FROM generate_series(1, 20000) n;
SELECT format('ALTER TABLE bulk OWNER TO %I', current_database()) \\gexec
"""


def on_15(config: dict) -> None:
    """A stack as made before this change: 15, no data_major in its file."""
    platform = config["aiia:platform"]
    platform.setdefault("images", {})["postgres"] = OLD_IMAGE
    platform.get("postgres", {}).pop("data_major", None)


def on_17(config: dict) -> dict:
    """What `make pg-upgrade TO=postgres:17.12-trixie` commits to the stack file."""
    config = copy.deepcopy(config)
    config["aiia:platform"]["images"]["postgres"] = NEW_IMAGE
    config["aiia:platform"].setdefault("postgres", {})["data_major"] = 17
    return config


@pytest.fixture(scope="module")
def standins() -> None:
    subprocess.run(["bash", str(ROOT / "tests/images/build-standins.sh"), "postgres",
                    "postgres-17"], check=True, capture_output=True, timeout=1800)


@pytest.fixture(scope="module")
def stack(engine, app_images, dashboard_image, standins) -> Iterator[LocalStack]:
    stack = start_local_stack(engine, app_images, change=on_15)
    # The 17 image the switch names, to its stand-in (the map was made from the 15 config).
    stack.replay.image_map.update(image_map(on_17(stack.config)))
    try:
        yield stack
    finally:
        remove_everything(engine, stack.prefix, stack.root)


def postgres(stack: LocalStack) -> Cluster:
    return Cluster(Docker(), stack.container("postgres"))


def post_note(stack: LocalStack, environment: str, text: str) -> int:
    try:
        return stack.get(environment, "/api/notes/", method="POST",
                         body=json.dumps({"text": text}).encode(),
                         headers={"Content-Type": "application/json"}, timeout=5).status
    except OSError:
        return 0


@pytest.fixture(scope="module")
def data(stack: LocalStack) -> dict[str, int]:
    """Notes written through each app, and a bulk table in prod's database."""
    for environment in ENVIRONMENTS:
        for number in range(20):
            assert post_note(stack, environment, f"before-{number}") == 201
    prod = database_name(stack.prefix, "prod")
    postgres(stack).sql(BULK_SQL, prod)
    return postgres(stack).row_counts(postgres(stack).databases())


def serves_writes(stack: LocalStack, text: str, within: float = 10) -> bool:
    """Each environment's app writes a note within `within` seconds (PgBouncer may hand out
    one server connection the server has just ended)."""
    deadline = time.monotonic() + within
    pending = set(ENVIRONMENTS)
    while pending and time.monotonic() < deadline:
        pending = {environment for environment in pending
                   if post_note(stack, environment, f"{text}-{environment}") != 201}
        time.sleep(0.2)
    return not pending


def test_17_over_the_15_data_is_refused_before_the_server_is_touched(stack, data):
    assert postgres(stack).major() == 15
    before = stack.engine.request("GET", f"/containers/{stack.container('postgres')}/json")["Id"]
    as_it_was = copy.deepcopy(stack.config)
    with pytest.raises(ReplayError) as failed:
        stack.up(on_17(as_it_was))
    message = str(failed.value)
    assert "holds a PostgreSQL 15 cluster (pgdata)" in message
    assert "make pg-upgrade STACK=local" in message
    after = stack.engine.request("GET", f"/containers/{stack.container('postgres')}/json")
    assert (after["Id"], after["State"]["Running"]) == (before, True)
    stack.up(as_it_was)
    assert postgres(stack).major() == 15
    assert serves_writes(stack, "after-refusal")


def test_a_failed_upgrade_leaves_15_serving_and_writable(stack, data):
    def failing_switch() -> None:
        raise UpgradeError("injected: the switch failed")

    plan = Plan(prefix=stack.prefix, image=NEW_STANDIN, major=17)
    with pytest.raises(UpgradeError, match="injected"):
        upgrade(Docker(), plan, failing_switch)
    assert postgres(stack).major() == 15
    assert postgres(stack).data_directory().endswith("/pgdata")
    assert serves_writes(stack, "after-failure")
    leftovers = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "ls", "-v",
         f"{plan.volume}:/var/lib/postgresql/data", NEW_STANDIN, "/var/lib/postgresql/data"],
        capture_output=True, text=True, check=True).stdout.split()
    assert leftovers == ["pgdata"]
    assert subprocess.run(["docker", "inspect", f"{stack.prefix}-postgres-upgrade"],
                          capture_output=True, check=False).returncode != 0


class Writer(threading.Thread):
    """A client that writes a note every 0.1 s and records the longest stretch without a
    successful write: the downtime as an app's user sees it."""

    def __init__(self, stack: LocalStack):
        super().__init__(daemon=True)
        self.stack, self.stop, self.failures, self.longest = stack, threading.Event(), 0, 0.0

    def run(self) -> None:
        last_success, number = time.monotonic(), 0
        while not self.stop.is_set():
            number += 1
            if post_note(self.stack, "prod", f"writer-{number}") == 201:
                now = time.monotonic()
                self.longest = max(self.longest, now - last_success)
                last_success = now
            else:
                self.failures += 1
            time.sleep(0.1)


def test_the_upgrade_keeps_every_row_role_and_password(stack, data):
    old = postgres(stack)
    databases = old.databases()
    roles_before = old.rows("SELECT rolname, rolpassword FROM pg_authid "
                            "WHERE rolname NOT LIKE 'pg\\_%' ORDER BY 1")
    writer = Writer(stack)
    writer.start()
    time.sleep(1)
    report = upgrade(Docker(), Plan(prefix=stack.prefix, image=NEW_STANDIN, major=17),
                     lambda: stack.up(on_17(stack.config)))
    time.sleep(2)
    writer.stop.set()
    writer.join()
    for line in report.lines():
        print(line)
    print(f"the app's writes: longest stretch without one {writer.longest:.1f} s, "
          f"{writer.failures} failed")

    new = postgres(stack)
    assert new.major() == 17
    assert new.data_directory().endswith("/pgdata-17")
    # Every row the window froze is there (the writer's before it are counted in `report`).
    assert report.rows["{}/public.bulk".format(database_name(stack.prefix, "prod"))] \
        == BULK_ROWS
    assert all(report.rows[table] >= count for table, count in data.items())
    assert new.rows("SELECT rolname, rolpassword FROM pg_authid "
                    "WHERE rolname NOT LIKE 'pg\\_%' ORDER BY 1") == roles_before
    # The apps reconnect with the same credentials, through PgBouncer, and write.
    assert serves_writes(stack, "after-upgrade")
    for environment in ENVIRONMENTS:  # and each role logs in with its password over TCP
        password = stack.secrets[f"aiia:{environment}_db_password"]
        login = subprocess.run(
            ["docker", "exec", "-e", f"PGPASSWORD={password}",
             stack.container("pgbouncer"), "psql", "-h", stack.container("postgres"), "-U",
             database_role(stack.prefix, environment), "-d",
             database_name(stack.prefix, environment), "-tAc", "SELECT 1"],
            capture_output=True, text=True, check=False)
        assert login.stdout.strip() == "1", login.stderr
    assert set(new.databases()) == set(databases)
    assert report.downtime_seconds < 60
