"""Benchmark: the downtime of a PostgreSQL major upgrade (15 → 17, scripts/pg_upgrade.py) with
a generated database of each size, on the stand-ins (tests/images/postgres, postgres-17).

    python3 -m bench.pg_upgrade                  # as root, dockerd up, stand-ins built
    python3 -m bench.pg_upgrade --sizes 100      # MB of table data, one fresh stack each

For each size: a stack made on 15, the rows generated in prod's database (bench.backup's
generator), then the upgrade with its switch being the program's up (the replay). Printed:
the window (writes refused: the copy, then the switch), the rows kept, and the longest
stretch without a served `GET /healthz/` (which reads through PgBouncer) under a paced load.
The baseline, in the same run and on the same data: a plain `pg_dump -Fc` of the database to
/dev/null in the old server's container, the part of the window no dump and restore avoids.
"""

from __future__ import annotations

import argparse
import subprocess
import time

from bench.backup import generate, mb
from bench.restarts import gap
from components.names import database_name
from scripts.pg_cluster import Docker
from scripts.pg_upgrade import Plan, upgrade
from tests.harness.engine import DockerEngine
from tests.harness.load import Load
from tests.harness.local_stack import (
    ROOT,
    build_images,
    image_map,
    release_tags,
    remove_everything,
    start_local_stack,
)

NEW_STANDIN = "aiia-standin/postgres:17"


def on_15(config: dict) -> None:
    platform = config["aiia:platform"]
    platform.setdefault("images", {})["postgres"] = "postgres:15.20-bookworm"
    platform.get("postgres", {}).pop("data_major", None)


def on_17(config: dict) -> dict:
    platform = {**config["aiia:platform"],
                "images": {**config["aiia:platform"]["images"],
                           "postgres": "postgres:17.12-trixie"},
                "postgres": {**config["aiia:platform"].get("postgres", {}), "data_major": 17}}
    return {**config, "aiia:platform": platform}


def run(engine: DockerEngine, size: int, rate: float) -> None:
    stack = start_local_stack(engine, release_tags(engine), change=on_15)
    # The 17 image the switch names, to its stand-in (the map was made from the 15 config),
    # as tests/e2e/test_pg_upgrade.py does.
    stack.replay.image_map.update(image_map(on_17(stack.config)))
    try:
        started = time.monotonic()
        database_bytes = generate(stack, size)
        print(f"\n== {size} MB of generated rows: database {mb(database_bytes)}, generated in "
              f"{time.monotonic() - started:.0f} s")
        dump = time.monotonic()
        subprocess.run(["docker", "exec", stack.container("postgres"), "bash", "-c",
                        "pg_dump -U postgres -Fc "
                        f"{database_name(stack.prefix, 'prod')} > /dev/null"], check=True)
        print(f"baseline pg_dump -Fc > /dev/null   {time.monotonic() - dump:7.1f} s")
        load = Load(stack.https_port, stack.domain("prod"), path="/healthz/", rate=rate,
                    total=int(rate * 3600), max_seconds=3600).start()
        since = time.monotonic()
        report = upgrade(Docker(), Plan(prefix=stack.prefix, image=NEW_STANDIN, major=17),
                         lambda: stack.up(on_17(stack.config)), say=lambda line: None)
        time.sleep(3)
        load.stop()
        failed, longest, _, _ = gap(load, since)
        for line in report.lines():
            print(line)
        print(f"GET /healthz/ at {rate:.0f}/s: {failed} failed, the longest stretch without "
              f"one served {longest:.1f} s")
    finally:
        remove_everything(engine, stack.prefix, stack.root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000],
                        help="MB of table data to generate, one fresh stack each")
    parser.add_argument("--rate", type=float, default=10, help="health requests a second")
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "tests/images/build-standins.sh"), "postgres",
                    "postgres-17"], check=True)
    build_images()
    engine = DockerEngine()
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    print(f"host: {cores} cores (shared); stand-ins PostgreSQL 15 (bookworm) → 17 (trixie); "
          "each server limited to 120 MB")
    for size in args.sizes:
        run(engine, size, args.rate)


if __name__ == "__main__":
    main()
