"""Releases on the real engine: zero dropped requests, health-gated, watched, rolled back by
config, migrations first; then the failure paths of a real `pulumi up` (issue #28): a release
that missed its gate deployed again, an update interrupted between a delete and a create.
The tests run in order on one stack, like an operator's day."""

import copy
import json
import re
import subprocess
import threading
import time

import pytest

from tests.harness.client import WebSocket
from tests.harness.load import Load
from tests.harness.local_stack import NEWER_PATCH_RELEASES, image_map
from tests.harness.replay import Interrupted, ReplayError
from tests.harness.traffic import (
    RATE,
    REQUESTS,
    assert_no_client_noticed,
    assert_paced,
    finish,
    strict_clients,
    under_load,
)

pytestmark = pytest.mark.e2e



def history(stack, environment="prod") -> list[dict]:
    path = stack.root / "state" / "releases.jsonl"
    latest: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["environment"] == environment:
            latest[record["id"]] = record
    return list(latest.values())


def wait_for_outcome(stack, release, outcome, timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in history(stack) if r["release"] == release]
        if records and records[-1]["outcome"] == outcome:
            return records[-1]
        assert time.monotonic() < deadline, f"{release}: no {outcome} record in {records}"
        time.sleep(1)


def served_by(stack, release) -> list[dict]:
    lines = (stack.root / "logs/nginx/access.log").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("release") == release]


def running_generations(stack, release, all_states=True) -> list[str]:
    """The containers of every generation of `release` in prod (their names end in the
    generation's digest)."""
    mine = f"{stack.prefix}-app-prod-{release}-"
    query = "/containers/json?all=1" if all_states else "/containers/json"
    return [c["Names"][0].lstrip("/") for c in stack.engine.request("GET", query)
            if c["Names"][0].lstrip("/").startswith(mine)]


def release_under_load(stack, release, rate=RATE, total=REQUESTS, strict=None):
    """`pulumi up` of `release` in prod under load (under_load)."""
    return under_load(stack, lambda: stack.up(stack.with_release("prod", release)),
                      rate=rate, total=total, strict=strict)


def test_release_a_to_b_drops_no_request_and_keeps_websockets(local_stack):
    stack = local_stack
    socket = WebSocket(stack.https_port, stack.domain("prod"), "/ws/echo/")
    assert socket.status == 101
    socket.send_text("before the switch")
    assert socket.receive() == (1, b"before the switch")
    strict = strict_clients(stack)
    load, error = release_under_load(stack, "release-b", strict=strict)
    assert error is None, error
    summary = load.summary()
    print("A → B:", summary.line())
    assert_paced(summary, RATE)
    assert summary.failures == 0, summary.failure_kinds
    # nginx's reload kept every kept-alive connection: not even the browser-like client had
    # to send a request again.
    assert summary.retries == 0, summary.line()
    assert_no_client_noticed(stack, strict)
    releases = [seen.release for seen in summary.releases]
    assert releases == ["release-a", "release-b"], releases
    switch_end = next(end for action, name, _, end in stack.replay.events
                      if action == "update" and name == "app-prod-upstream-install")
    late_a = [r for r in load.results if r.release == "release-a" and r.started > switch_end + 1]
    assert not late_a, f"{len(late_a)} requests served by A after the switch completed"
    # The WebSocket opened on A was not reset: it still echoed after the switch, or it was
    # closed with a close frame when A drained.
    try:
        socket.send_text("after the switch")
        opcode, payload = socket.receive()
        assert (opcode, payload) in ((1, b"after the switch"),) or opcode == 8
        if opcode == 1:
            opcode, payload = socket.receive()
            assert opcode == 8, "expected a normal close frame when A drained"
    finally:
        socket.close()
    assert wait_for_outcome(stack, "release-b", "succeeded")["previous_release"] == "release-a"
    assert not running_generations(stack, "release-a", all_states=False)


def test_rollback_b_to_a_by_config_drops_no_request(local_stack):
    strict = strict_clients(local_stack)
    load, error = release_under_load(local_stack, "release-a", strict=strict)
    assert error is None, error
    summary = load.summary()
    print("B → A:", summary.line())
    assert summary.failures == 0, summary.failure_kinds
    assert summary.retries == 0, summary.line()
    assert_no_client_noticed(local_stack, strict)
    assert [seen.release for seen in summary.releases] == ["release-b", "release-a"]
    wait_for_outcome(local_stack, "release-a", "succeeded")


def test_a_certificate_renewal_and_a_config_change_reload_nginx_unnoticed(local_stack):
    stack = local_stack
    config = copy.deepcopy(stack.config)
    config["aiia:platform"].setdefault("nginx", {})["api_rate_per_second"] = 499

    def reloads():
        stack.renew_certificate("prod")  # nginx reload: the renewal's
        time.sleep(5)
        stack.up(config)  # nginx reload: a HostFile's follow-up

    strict = strict_clients(stack)
    load, error = under_load(stack, reloads, strict=strict)
    assert error is None, error
    summary = load.summary()
    print("certificate and config reloads:", summary.line())
    assert summary.failures == 0 and summary.retries == 0, summary.line()
    assert_no_client_noticed(stack, strict)


def test_an_unhealthy_release_never_takes_traffic(local_stack):
    stack = local_stack
    # A shorter gate than the default 60 s (releases.<env>.health_gate_seconds): it fails
    # alike, sooner; the stack keeps it from here on.
    stack.config["aiia:releases"]["prod"]["health_gate_seconds"] = 30
    load, error = release_under_load(stack, "unhealthy", rate=40, total=40 * 90)
    assert error is not None and "not healthy after 30s" in str(error), error
    summary = load.summary()
    assert summary.failures == 0, summary.failure_kinds
    assert [seen.release for seen in summary.releases] == ["release-a"]
    assert served_by(stack, "unhealthy") == []
    assert stack.get("prod", "/").headers["x-release"] == "release-a"
    record = wait_for_outcome(stack, "unhealthy", "failed_health_check")
    assert "unhealthy" in record["reason"]


def test_the_unhealthy_release_deployed_again_still_never_takes_traffic(local_stack):
    # The engine kept the unhealthy container with init errors; this `pulumi up` updates it
    # without a health gate (pulumi/pulumi#21458): the switch itself must refuse it.
    stack = local_stack
    load, error = release_under_load(stack, "unhealthy", rate=40, total=40 * 20)
    assert error is not None and "refusing to switch prod" in str(error), error
    summary = load.summary()
    assert summary.failures == 0, summary.failure_kinds
    assert [seen.release for seen in summary.releases] == ["release-a"]
    assert served_by(stack, "unhealthy") == []
    upstream = (stack.root / "nginx/upstreams/prod.conf").read_text()
    assert "release release-a:" in upstream, upstream


def test_rollback_right_after_a_failed_health_gate(local_stack):
    load, error = release_under_load(local_stack, "release-a", total=RATE * 40)
    assert error is None, error
    assert load.summary().failures == 0, load.summary().failure_kinds
    assert not running_generations(local_stack, "unhealthy")


def test_a_release_that_fails_on_real_traffic_is_switched_back(local_stack):
    stack = local_stack
    load, error = release_under_load(stack, "broken", rate=60, total=60 * 60)
    assert error is not None
    message = str(error)
    assert "misbehaves" in message
    assert "pulumi config set --path 'aiia:releases.prod.release' release-a" in message
    summary = load.summary()
    broken = [r for r in load.results if r.release == "broken"]
    print(f"broken episode: {len(broken)} requests reached it, "
          f"{sum(not r.ok for r in broken)} failed; overall {summary.line()}")
    assert broken, "the broken release never received traffic"
    assert load.results[-1].release == "release-a"
    assert stack.get("prod", "/").headers["x-release"] == "release-a"
    record = wait_for_outcome(stack, "broken", "switched_back")
    assert "5xx" in record["reason"] or "health" in record["reason"]


def test_rollback_right_after_a_switch_back(local_stack):
    load, error = release_under_load(local_stack, "release-a", total=RATE * 40)
    assert error is None, error
    summary = load.summary()
    assert summary.failures == 0, summary.failure_kinds
    assert [seen.release for seen in summary.releases] == ["release-a"]
    assert not running_generations(local_stack, "broken")


def test_a_failing_migration_leaves_the_previous_release_serving(local_stack):
    stack = local_stack
    with pytest.raises(ReplayError, match="migrate"):
        stack.up(stack.with_release("prod", "bad-migration"))
    assert stack.get("prod", "/").headers["x-release"] == "release-a"
    assert not running_generations(stack, "bad-migration")
    wait_for_outcome(stack, "bad-migration", "failed_migration")


def test_a_migration_that_cannot_take_its_lock_fails_without_holding_the_site(local_stack):
    """Issue #27 item 3: a long transaction has read the notes table (a report, a stuck
    worker); the release's migration needs an exclusive lock on it. Each attempt waits at
    most the lock timeout (5 s), during which the requests reading the table queue behind
    it and are then answered; after three attempts the release fails saying why, and the
    previous release keeps serving."""
    stack = local_stack
    postgres, database = stack.container("postgres"), f"{stack.prefix}_prod"
    holder = subprocess.Popen(
        ["docker", "exec", postgres, "psql", "-U", "postgres", "-d", database, "-c",
         "BEGIN; LOCK TABLE notes_note IN ACCESS SHARE MODE; SELECT pg_sleep(300); COMMIT"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answers: list[int | str] = []
    stop = threading.Event()

    def read_notes() -> None:  # a reader of the table, never retrying: ~2 a second
        while not stop.wait(0.5):
            try:
                answers.append(stack.get("prod", "/api/notes/", timeout=30).status)
            except OSError as error:
                answers.append(type(error).__name__)

    reader = threading.Thread(target=read_notes, daemon=True)
    try:
        wait_until_locked(stack, postgres, database)
        reader.start()
        with pytest.raises(ReplayError, match="migrate"):
            stack.up(stack.with_release("prod", "lock-migration"))
    finally:
        stop.set()
        stack.exec(postgres, "psql", "-U", "postgres", "-d", database, "-tAc",
                   "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE query LIKE '%pg_sleep(300)%' AND pid <> pg_backend_pid()")
        holder.wait(timeout=30)
        reader.join(timeout=40)
    record = wait_for_outcome(stack, "lock-migration", "failed_migration")
    assert "could not take a lock within 5 s in 3 attempts" in record["reason"], record
    assert "releases.prod.migrate_lock_timeout_seconds" in record["reason"]
    # Every reader's request was answered, those queued behind a waiting attempt included.
    assert answers and set(answers) == {200}, answers
    assert stack.get("prod", "/").headers["x-release"] == "release-a"
    assert not running_generations(stack, "lock-migration")
    # Nothing of the migration was applied.
    applied = stack.exec(postgres, "psql", "-U", "postgres", "-d", database, "-tAc",
                         "SELECT count(*) FROM django_migrations "
                         "WHERE name = '0002_locks_the_notes_table'").stdout
    assert applied.strip() == "0"


def wait_until_locked(stack, postgres: str, database: str, timeout: float = 30) -> None:
    """Until a session holds a lock on notes_note (the holder started above)."""
    deadline = time.monotonic() + timeout
    query = ("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
             "WHERE c.relname = 'notes_note' AND l.granted")
    while int(stack.exec(postgres, "psql", "-U", "postgres", "-d", database, "-tAc",
                         query).stdout.strip() or 0) == 0:
        assert time.monotonic() < deadline, "the holder never locked notes_note"
        time.sleep(0.5)


def test_migrations_run_before_the_new_release_serves(local_stack):
    stack = local_stack
    stack.up(stack.with_release("prod", "schema-b"))
    events = {(action, name): (start, end) for action, name, start, end in stack.replay.events}
    migrated = events[("create", "app-prod-migrate-schema-b")][1]
    created = events[("create", "app-prod-app-schema-b")][0]
    assert migrated <= created
    password = stack.secrets["aiia:prod_db_password"]
    # From the data network (the container's own address there), where pg_hba.conf lets
    # the environment's role in.
    tables = stack.exec(stack.container("postgres"), "env", f"PGPASSWORD={password}", "psql",
                        "-h", stack.container("postgres"), "-U", f"{stack.prefix}_prod", "-d",
                        f"{stack.prefix}_prod", "-tAc",
                        "SELECT count(*) FROM django_migrations WHERE app = 'notes'").stdout
    assert int(tables.strip()) >= 2
    assert stack.get("prod", "/").headers["x-release"] == "schema-b"


def test_staging_releases_never_touch_prod_and_old_images_are_pruned(local_stack):
    stack = local_stack
    mine = f"/{stack.prefix}-app-prod-"  # the engine may run other stacks too
    prod_before = {c["Names"][0]: c["Id"] for c in stack.engine.request(
        "GET", "/containers/json") if c["Names"][0].startswith(mine)}
    config = stack.with_release("staging", "release-b")
    # Keep one release image per environment: staging's previous one (release-a, which
    # no container runs any more) goes; what each environment runs stays.
    config["aiia:releases"]["staging"]["keep_images"] = 1
    stack.up(config)
    prod_after = {c["Names"][0]: c["Id"] for c in stack.engine.request(
        "GET", "/containers/json") if c["Names"][0].startswith(mine)}
    assert prod_before == prod_after
    assert stack.get("staging", "/").headers["x-release"] == "release-b"
    assert stack.get("prod", "/").headers["x-release"] == "schema-b"
    repository = stack.config["aiia:releases"]["staging"]["image"]
    assert stack.engine.image(f"{repository}:release-a") is None
    assert stack.engine.image(f"{repository}:release-b") is not None
    assert stack.engine.image(f"{repository}:schema-b") is not None


# Threads are tasks as processes are, and cost the app's memory limit far less: 400 forked
# processes were the container's OOM kill before its task limit.
TASK_LOOP = """
import threading, time
threading.stack_size(256 * 1024)
release, started, error = threading.Event(), [], "none"
for _ in range(400):
    thread = threading.Thread(target=release.wait, args=(30,))
    try:
        thread.start()
    except RuntimeError as failure:
        error = str(failure)
        break
    started.append(thread)
print(len(started), error, flush=True)
time.sleep(6)
release.set()
for thread in started:
    thread.join()
"""


def test_a_task_leak_in_one_app_stops_at_its_task_limit(local_stack):
    """Review L7: every container of the stack is held to a task limit (the platform's by
    its running check, each release's by its switch), so a fork bomb or a thread leak in
    prod's app fails there, while staging, PostgreSQL and nginx serve on, and prod recovers
    once it ends."""
    stack = local_stack
    mine = f"/{stack.prefix}-"
    limits = {c["Names"][0][1:]: stack.engine.container(c["Id"])["HostConfig"]["PidsLimit"]
              for c in stack.engine.request("GET", "/containers/json")
              if c["Names"][0].startswith(mine) and "aiia.environment" in c["Labels"]
              and "(healthy)" in c["Status"]}  # not a release whose gate failed earlier
    services = {name: limit for name, limit in limits.items() if "-app-" not in name}
    apps = {name: limit for name, limit in limits.items() if "-app-" in name}
    assert {services[stack.container(s)] for s in ("nginx", "pgbouncer", "redis")} == {128}
    assert services[stack.container("postgres")] == 2 * 50 + 64
    assert apps and set(apps.values()) == {256}, apps
    prod_app = next(name for name in apps if "-app-prod-" in name)
    # 400 threads asked for from the app's own user, until one cannot start; held 6 s.
    bomb = subprocess.Popen(["docker", "exec", prod_app, "python3", "-c", TASK_LOOP],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert stack.get("staging", "/healthz/").status == 200
        select = stack.exec(stack.container("postgres"), "psql", "-U", "postgres", "-tAc",
                            "SELECT 1")
        assert select.stdout.strip() == "1"
    finally:
        out, err = bomb.communicate(timeout=60)
    assert bomb.returncode == 0, err
    forked, error = out.split(maxsplit=1)
    assert 200 < int(forked) < 256 and "can't start new thread" in error, (out, err)
    deadline = time.monotonic() + 30
    while stack.get("prod", "/healthz/").status != 200:
        assert time.monotonic() < deadline, "prod did not recover after the fork loop ended"
        time.sleep(1)


def test_a_second_up_with_nothing_changed_changes_nothing(local_stack):
    stack = local_stack
    before = len(stack.replay.events)
    stack.up()
    assert stack.replay.events[before:] == []


def test_rotating_secrets_starts_a_new_generation_beside_the_serving_one(local_stack):
    # pulumi-docker would replace the container delete-before-create on a changed
    # variable; the generation in its name makes it a side-by-side switch instead.
    stack = local_stack
    old = running_generations(stack, "schema-b", all_states=False)
    assert len(old) == 1, old
    stack.secrets = {**stack.secrets, "aiia:prod_secret_key": "rotated-django-secret-key",
                     "aiia:prod_db_password": "rotated-prod-db-password"}
    load, error = under_load(stack, stack.up)
    assert error is None, error
    summary = load.summary()
    print("secret rotation:", summary.line())
    assert_paced(summary, RATE)
    assert summary.failures == 0, summary.failure_kinds
    new = running_generations(stack, "schema-b", all_states=True)
    assert len(new) == 1 and new != old, (old, new)
    assert stack.get("prod", "/healthz/").status == 200


def test_both_environments_released_in_one_up_with_concurrent_steps(local_stack):
    stack = local_stack
    assert stack.replay.parallel > 1
    # Images still on the host (the staging test pruned release-a).
    config = stack.with_release("prod", "release-b")
    config["aiia:releases"]["staging"]["release"] = "schema-b"
    loads = {env: Load(stack.https_port, stack.domain(env), rate=60, total=60 * 60,
                       connections=4).start() for env in ("prod", "staging")}
    time.sleep(3)
    stack.up(config)
    finish(loads.values(), time.monotonic())
    for env, load in loads.items():
        summary = load.summary()
        print(f"{env}, released together:", summary.line())
        assert summary.failures == 0, (env, summary.failure_kinds)
    assert [seen.release for seen in loads["prod"].summary().releases] == \
        ["schema-b", "release-b"]
    assert [seen.release for seen in loads["staging"].summary().releases] == \
        ["release-b", "schema-b"]
    # The two releases ran side by side: their migrations overlapped in time.
    spans = {name: (start, end) for action, name, start, end in stack.replay.events
             if name in ("app-prod-migrate-release-b", "app-staging-migrate-schema-b")}
    (prod_start, prod_end), (staging_start, staging_end) = spans.values()
    assert prod_start < staging_end and staging_start < prod_end, spans


def test_a_release_that_missed_its_gate_switches_when_deployed_again(local_stack):
    """Issue #28 item 2. The first `up` of a slow starter (healthy after 35 s) fails its
    health gate (health_gate_seconds: 20): Pulumi
    keeps the container with init errors and never reads it back, so its address is unknown
    to Pulumi from then on (tests/unit/harness/test_replay.py pins that the replay follows
    terraform-provider-docker here). The same release deployed again is an update of that
    container without a gate; the switch reads the container's health and address from the
    engine, and points nginx at it."""
    stack = local_stack
    serving = stack.get("prod", "/").headers["x-release"]
    slow = stack.with_release("prod", "slow-start")
    slow["aiia:releases"]["prod"]["health_gate_seconds"] = 20
    with pytest.raises(ReplayError, match="not healthy"):
        stack.up(slow)
    # The gate failed: the previous release serves, and Pulumi knows no address for the new
    # container (the create never reached its read-back).
    assert stack.get("prod", "/").headers["x-release"] == serving
    (applied,) = [a for a in stack.replay.state.values()
                  if a.name.startswith("app-prod-app-slow-start")]
    assert applied.init_errors and "ip_address" not in applied.real
    container = applied.real["name"]
    stack.wait_healthy(container, timeout=90)  # it was only slow

    stack.up(slow)  # the same release again: an update of the container, no gate

    assert stack.get("prod", "/").headers["x-release"] == "slow-start"
    assert "ip_address" not in stack.replay.state[applied.urn].real  # still never read back
    networks = stack.engine.container(container)["NetworkSettings"]["Networks"]
    address = networks[f"{stack.prefix}-prod"]["IPAddress"]
    upstream = (stack.root / "nginx/upstreams/prod.conf").read_text()
    assert re.search(rf"server {re.escape(address)}:\d+ max_fails=0;", upstream), upstream
    assert not any(a.name.startswith(f"app-prod-app-{serving}")
                   for a in stack.replay.state.values())  # the previous one deleted at the end


def test_an_interrupted_replacement_is_repaired_by_the_runbook(local_stack):
    """Issue #28 item 4 (docs/runbooks.md, "An interrupted or cancelled pulumi up"). Redis is
    replaced delete-before-create (an image bump); the CLI is killed while the new container
    is created: the old one is gone, the new one exists but Pulumi's state holds only a
    pending CREATE. The next `up` creates it again and clashes on its fixed name, so the
    outage lasts until someone repairs it: `pulumi refresh --clear-pending-creates`,
    `docker rm -f` of the half-created container, `pulumi up`. Last in this module: the
    stack keeps the newer Redis."""
    stack = local_stack
    config = copy.deepcopy(stack.config)
    config["aiia:platform"].setdefault("images", {})["redis"] = NEWER_PATCH_RELEASES["redis"]
    stack.replay.image_map = image_map(config)
    redis = stack.container("redis")
    resource = stack.run.containers()[redis].name
    assert stack.get("prod", "/healthz/").status == 200

    stack.replay.interrupt.add(resource)
    with pytest.raises(Interrupted, match=f"interrupted while creating {resource}"):
        stack.up(config)
    # Half-created: the container exists, Pulumi's state does not have it.
    assert stack.engine.container(redis) is not None
    assert resource not in {applied.name for applied in stack.replay.state.values()}

    # Running `pulumi up` again does not repair it: the same name clashes.
    with pytest.raises(ReplayError, match=f"a container named {redis} already exists"):
        stack.up(config)

    # The runbook: clear the pending create, remove what it half-made, up again.
    assert stack.replay.clear_pending_creates() == [resource]
    stack.engine.remove_container(redis)
    stack.up(config)

    assert resource in {applied.name for applied in stack.replay.state.values()}
    stack.wait_healthy(redis, timeout=60)
    assert stack.get("prod", "/healthz/").status == 200
