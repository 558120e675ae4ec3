"""Benchmark: what point-in-time recovery loses and how long it takes (RPO and RTO), beside
the daily dump's, on the stand-ins with the program's own scripts ({root}/bin/pitr.sh,
backup.sh), for databases of each size.

    python3 -m bench.pitr                      # as root, dockerd up, stand-ins built
    python3 -m bench.pitr --sizes 100 --write-seconds 120

For each size, one fresh local stack: the rows generated in prod's database (bench.backup's
generator), a PITR base backup and a daily backup taken (timed), then a steady writer (one
committed row every 20 ms, in the server) for --write-seconds. At T the server is killed
(SIGKILL: no last segment switch, as when a host dies). Then:

- rows written by T: counted after the server restarts (its own crash recovery);
- a lost host: the archive as it was at T (copied before the restart) replayed to its end in
  the scratch server (pitr.sh inspect latest): rows lost, seconds lost, and the time;
- a bad afternoon on a live host: `pitr.sh restore prod T` (the archive has everything: it
  switches first), rows lost and the whole time including the copy and the swap;
- the daily dump beside them: what a host lost just before its next dump loses (a day of
  rows at this rate), its dump time and its restore time (backup.sh restore-database);
- memory: PostgreSQL's container while it archives under the writer (cgroup peak of its
  limit), and the archive_command alone on one real 16 MB segment in a 32 MB container.
The off-host copy adds the tick's 15 s and the transfer to the lost-host RPO (not modelled:
the archive directory stands for the target).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time

from bench.backup import PeakMemory, mb, postgres_container, psql, timed
from tests.harness.engine import DockerEngine
from tests.harness.local_stack import (
    ROOT,
    LocalStack,
    build_images,
    release_tags,
    remove_everything,
    start_local_stack,
)

PAUSE_SECONDS = 0.02


def generate(stack: LocalStack, megabytes: int) -> int:
    """bench.backup's rows (~110 bytes each), in batches without a client timeout: a loaded
    2-core machine takes more than the harness's 60 s for a million."""
    rows = megabytes * 1024 * 1024 // 110

    def sql(statement: str) -> str:
        return subprocess.run(["docker", "exec", "-i", stack.container("postgres"), "psql",
                               "-U", "postgres", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-d",
                               f"{stack.prefix}_prod", "-c", statement], capture_output=True,
                              text=True, check=True).stdout.strip()

    sql("CREATE TABLE bench_rows (id bigint PRIMARY KEY, n integer, payload text)")
    for start in range(0, rows, 250_000):
        sql("INSERT INTO bench_rows SELECT g, (random() * 1e6)::int, "  # noqa: S608
            "md5(random()::text) || md5(random()::text) FROM generate_series("
            f"{start + 1}, {min(start + 250_000, rows)}) g")
    sql("VACUUM ANALYZE bench_rows")
    return int(sql("SELECT pg_database_size(current_database())"))


def script(stack: LocalStack, name: str, *args: str) -> tuple[float, str, str]:
    """The host script, timed; the peak is of the containers it starts (pitr.sh's jobs and
    scratch server are <prefix>-pitr-*, backup.sh's <prefix>-backup-*)."""
    jobs = f"{stack.prefix}-{name.removesuffix('.sh')}-"
    return timed(jobs, [str(stack.root / "bin" / name), *args])


def wait_ready(stack: LocalStack) -> None:
    for _ in range(120):
        ready = subprocess.run(["docker", "exec", stack.container("postgres"), "pg_isready",
                                "-U", "postgres", "-h", "127.0.0.1"], capture_output=True,
                               check=False)
        if ready.returncode == 0:
            return
        time.sleep(1)
    raise SystemExit("PostgreSQL did not come back")


def count_until(stack: LocalStack, target: float,
                container: str | None = None) -> tuple[int, float]:
    """Rows of bench_writes committed at or before `target`, and the newest one's time."""
    sql = ("SELECT count(*), coalesce(extract(epoch FROM max(at)), 0) FROM bench_writes "  # noqa: S608
           f"WHERE at <= to_timestamp({float(target)})")
    if container is None:
        out = psql(stack, sql)
    else:
        database = f"{stack.prefix}_prod"
        out = subprocess.run(["docker", "exec", container, "psql", "-U", "postgres", "-qAt",
                              "-d", database, "-c", sql], capture_output=True, text=True,
                             check=True).stdout.strip()
    rows, newest = out.split("|")
    return int(rows), float(newest)


def archiver_alone(stack: LocalStack) -> str:
    """archive.sh on one real segment, in a 32 MB container of the server's image, into a
    scratch archive (never the stack's)."""
    image = postgres_container(stack)["Image"]
    work = stack.root / "pitr" / "bench-archiver"
    (work / "data" / "pg_wal" / "archive_status").mkdir(parents=True, exist_ok=True)
    (work / "archive").mkdir(exist_ok=True)
    pgdata = subprocess.run(["docker", "exec", stack.container("postgres"), "printenv", "PGDATA"],
                            capture_output=True, text=True, check=True).stdout.strip()
    segment = subprocess.run(
        ["docker", "exec", stack.container("postgres"), "bash", "-c",
         'ls "$PGDATA/pg_wal" | grep -E "^[0-9A-F]{24}$" | tail -n 1'],
        capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["docker", "cp", f"{stack.container('postgres')}:{pgdata}/pg_wal/{segment}",
                    str(work / "data" / "pg_wal" / segment)], check=True, capture_output=True)
    subprocess.run(["chown", "-R", "999:999", str(work)], check=True)
    name = f"{stack.prefix}-bench-archiver"
    _, peak, _ = timed(name, [
        "docker", "run", "--rm", "--name", name, "--memory", "32m", "--memory-swap", "32m",
        "--user", "999:999", "--entrypoint", "bash", "--tmpfs", "/tmp:size=8m,mode=1777",
        "-v", f"{stack.root}/postgres:/etc/postgresql/aiia:ro",
        "-v", f"{work / 'archive'}:/var/lib/postgresql/wal-archive",
        "-v", f"{work / 'data'}:/data", "-w", "/data", image,
        "/etc/postgresql/aiia/pitr-archive.sh", f"pg_wal/{segment}", segment, "99"])
    shutil.rmtree(work, ignore_errors=True)
    return peak


def run(engine: DockerEngine, size: int, write_seconds: int) -> None:
    stack = start_local_stack(engine, release_tags(engine))
    pg = stack.container("postgres")
    try:
        started = time.monotonic()
        database_bytes = generate(stack, size)
        print(f"\n== {size} MB of generated rows: database {mb(database_bytes)}, generated in "
              f"{time.monotonic() - started:.0f} s")
        base_seconds, base_peak, _ = script(stack, "pitr.sh", "base")
        base = sorted((stack.root / "pitr" / "base").glob("pg*/2*/base.tar.gpg"))[-1]
        dump_seconds, dump_peak, _ = script(stack, "backup.sh", "run")
        print(f"PITR base backup   {base_seconds:7.1f} s  {mb(base.stat().st_size)} encrypted, "
              f"job peak {base_peak}")
        print(f"daily backup (dump) {dump_seconds:6.1f} s  job peak {dump_peak}")

        psql(stack, "CREATE TABLE bench_writes (id bigserial PRIMARY KEY, "
             "at timestamptz NOT NULL DEFAULT clock_timestamp());"
             "CREATE PROCEDURE bench_write(n int, pause float8) LANGUAGE plpgsql AS $$ BEGIN "
             "FOR i IN 1..n LOOP INSERT INTO bench_writes DEFAULT VALUES; COMMIT; "
             "PERFORM pg_sleep(pause); END LOOP; END $$;")
        limit = postgres_container(stack)["HostConfig"]["Memory"]
        writer = subprocess.Popen(["docker", "exec", pg, "psql", "-U", "postgres", "-qAt", "-d",
                                   f"{stack.prefix}_prod", "-c",
                                   f"CALL bench_write(10000000, {PAUSE_SECONDS})"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with PeakMemory(pg) as during:
            time.sleep(write_seconds)
        target = time.time()
        subprocess.run(["docker", "kill", pg], check=True, capture_output=True)
        writer.wait(timeout=60)
        archive = stack.root / "pitr" / "wal"
        at_death = stack.root / "pitr" / "wal-at-death"
        shutil.copytree(archive, at_death, symlinks=True)
        # The archive is the server's uid's (it writes it; the scratch server reads it).
        subprocess.run(["chown", "-R", "999:999", str(at_death)], check=True)
        archived = len(list(at_death.glob("pg*/wal/0*.gpg")))
        subprocess.run(["docker", "start", pg], check=True, capture_output=True)
        wait_ready(stack)
        written, newest_written = count_until(stack, target)
        rate = written / write_seconds
        print(f"writer: {written} rows in {write_seconds} s ({rate:.1f}/s); PostgreSQL's "
              f"container peak {mb(during.peak)} ({mb(during.anonymous)} anon) of its "
              f"{mb(limit)} while archiving {archived} segments")
        print(f"archive_command alone on one 16 MB segment, 32 MB container: peak "
              f"{archiver_alone(stack)}; nothing resident between segments")

        # A lost host: only what was archived by T.
        subprocess.run(["docker", "stop", pg], check=True, capture_output=True)
        archive.rename(stack.root / "pitr" / "wal-after")
        at_death.rename(archive)
        lost_seconds, lost_peak, _ = script(stack, "pitr.sh", "inspect", "latest")
        restored, newest = count_until(stack, target, f"{stack.prefix}-pitr-scratch")
        subprocess.run([str(stack.root / "bin" / "pitr.sh"), "inspect-stop"], check=True)
        shutil.rmtree(archive)
        (stack.root / "pitr" / "wal-after").rename(archive)
        subprocess.run(["docker", "start", pg], check=True, capture_output=True)
        wait_ready(stack)
        print(f"lost host at T (archive as it was): {written - restored} rows lost, "
              f"{target - newest:.1f} s of writes lost (the newest restored row "
              f"{newest_written - newest:.1f} s before the newest written); cluster "
              f"replayed in {lost_seconds:.1f} s, peak {lost_peak}")

        # A bad afternoon on a live host: restore prod to T.
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(target)) + \
            f".{int(target % 1 * 1e6):06d}+00"
        restore_seconds, restore_peak, _ = script(stack, "pitr.sh", "restore", "prod", when)
        after, _ = count_until(stack, target)
        record = json.loads((stack.root / "state" / "pitr-restores.jsonl").read_text()
                            .splitlines()[-1])
        print(f"restore prod to T on the live host: {written - after} rows lost, "
              f"{restore_seconds:.1f} s in all (prod answered 503 for {record['swap_seconds']} s), "
              f"peak {restore_peak}")

        dump_restore_seconds, _, _ = script(stack, "backup.sh", "restore-database", "prod")
        print(f"daily dump instead: a host lost just before its next dump loses a day of writes "
              f"({rate * 86400:,.0f} rows at this rate); its restore took "
              f"{dump_restore_seconds:.1f} s")
    finally:
        remove_everything(engine, stack.prefix, stack.root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000],
                        help="MB of table data to generate, one fresh stack each")
    parser.add_argument("--write-seconds", type=int, default=150,
                        help="how long the steady writer runs before the host 'dies'")
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "tests/images/build-standins.sh"), "postgres",
                    "postgres-17"], check=True)
    build_images()
    engine = DockerEngine()
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    print(f"host: {cores} cores (shared); PostgreSQL stand-in; the writer commits a row every "
          f"{PAUSE_SECONDS * 1000:.0f} ms in the server")
    for size in args.sizes:
        run(engine, size, args.write_seconds)


if __name__ == "__main__":
    main()

