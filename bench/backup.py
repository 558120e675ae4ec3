"""Benchmark: the backup, its verification and the restore drill of a generated database,
against a plain `pg_dump | gzip` of the same data in the same run.

    python3 -m bench.backup                 # as root, dockerd up, stand-in images built
    python3 -m bench.backup --sizes 100     # MB of table data to generate (default 100 1000)

It stands up a `local` stack of its own (tests/harness/local_stack.py: the replay of what the
program declares onto the real engine) and removes it at the end, even on error. For each
size, prod's database gets one table of that much generated data (random md5 text, which
compresses about 2:1, and an indexed bigint key); then, on the same PostgreSQL:

- baseline: `pg_dump <db> | gzip > file`, in a transient container of the same image and
  the same memory limit as the backup job's (--memory {memory}m, no swap);
- backup: `{root}/bin/backup.sh run` (pg_dump -Fc in one snapshot, read through twice by
  pg_restore, gpg to the drill key; both environments, media, config; verification);
- verify: `backup.sh verify` (SHA-256 of every file against the manifest);
- drill: `backup.sh drill` (verify, decrypt, pg_restore into a scratch database, count
  every table's rows, the app's migrate --check, drop).

Peak memory is the transient containers' cgroup high-water mark (memory.max_usage_in_bytes,
cgroup v1, or memory.peak, v2: page cache of the files they write included, which the
kernel reclaims at the limit) and, apart, the highest anonymous memory seen (memory.stat,
sampled every 50 ms while they run). PostgreSQL's own container (the server side of a
dump, the restore's backends) is reported apart.
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
from pathlib import Path

from components.names import database_name
from tests.harness.engine import DockerEngine
from tests.harness.local_stack import (
    LocalStack,
    build_images,
    release_tags,
    remove_everything,
    start_local_stack,
)

CGROUP_DIRS = ("/sys/fs/cgroup/memory/docker/{id}", "/sys/fs/cgroup/system.slice/docker-{id}.scope",
               "/sys/fs/cgroup/docker/{id}")


def cgroup_peak(container_id: str) -> int | None:
    """The cgroup's high-water mark: anonymous memory and the page cache it charges (files
    written or read), which the kernel reclaims at the limit rather than OOM-killing."""
    for pattern in CGROUP_DIRS:
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            try:
                return int((Path(pattern.format(id=container_id)) / name).read_text())
            except (OSError, ValueError):
                continue
    return None


def cgroup_anonymous(container_id: str) -> int | None:
    """Its anonymous (process) memory now: what cannot be reclaimed, short of swap."""
    for pattern in CGROUP_DIRS:
        try:
            stat = (Path(pattern.format(id=container_id)) / "memory.stat").read_text()
        except OSError:
            continue
        fields = dict(line.split() for line in stat.splitlines() if len(line.split()) == 2)
        for key in ("total_rss", "anon"):
            if key in fields:
                return int(fields[key])
    return None


class PeakMemory:
    """The highest cgroup memory of any container whose name starts with `prefix`."""

    def __init__(self, prefix: str):
        self.prefix, self.peak, self.anonymous = prefix, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            ids = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter",
                                  f"name=^{self.prefix}"], capture_output=True, text=True,
                                 check=False).stdout.split()
            for container_id in ids:
                self.peak = max(self.peak, cgroup_peak(container_id) or 0)
                self.anonymous = max(self.anonymous, cgroup_anonymous(container_id) or 0)
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def postgres_container(stack: LocalStack) -> dict:
    return stack.engine.request("GET", f"/containers/{stack.container('postgres')}/json")


def postgres_peak(stack: LocalStack) -> int:
    return cgroup_peak(postgres_container(stack)["Id"]) or 0


def timed(prefix: str, command: list[str]) -> tuple[float, str, str]:
    """Elapsed seconds, "peak (of it anonymous)" and stdout of `command`."""
    with PeakMemory(prefix) as peak:
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n"
                         f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return elapsed, f"{mb(peak.peak)} ({mb(peak.anonymous)} anon)", result.stdout


def psql(stack: LocalStack, sql: str) -> str:
    return stack.exec(stack.container("postgres"), "psql", "-U", "postgres", "-X", "-qAt",
                      "-v", "ON_ERROR_STOP=1", "-d", database_name(stack.prefix, "prod"),
                      "-f", "-", stdin=sql).stdout.strip()


def generate(stack: LocalStack, megabytes: int) -> int:
    rows = megabytes * 1024 * 1024 // 110  # ~110 bytes a row on disk, index excluded
    psql(stack, "DROP TABLE IF EXISTS bench_rows;")
    psql(stack, "CREATE TABLE bench_rows (id bigint PRIMARY KEY, n integer, payload text);")
    batch = 1_000_000
    for start in range(0, rows, batch):
        psql(stack, "INSERT INTO bench_rows SELECT g, (random() * 1e6)::int, "  # noqa: S608
             "md5(random()::text) || md5(random()::text) FROM generate_series("
             f"{start + 1}, {min(start + batch, rows)}) g;")
    psql(stack, "VACUUM ANALYZE bench_rows;")
    return int(psql(stack, "SELECT pg_database_size(current_database());"))


def baseline(stack: LocalStack, memory_mb: int, out: Path) -> tuple[float, str, int]:
    image = postgres_container(stack)["Image"]
    out.mkdir(parents=True, exist_ok=True)
    name = f"{stack.prefix}-bench-baseline"
    elapsed, peak, _ = timed(name, [
        "docker", "run", "--rm", "--name", name, "--network", stack.prefix,
        "--memory", f"{memory_mb}m", "--memory-swap", f"{memory_mb}m", "--entrypoint", "bash",
        "-v", f"{stack.root}/postgres/superuser-password:/run/pw:ro", "-v", f"{out}:/out",
        "--cap-drop", "ALL", "--cap-add", "DAC_READ_SEARCH", "--user", "0:0", image, "-c",
        f"set -o pipefail; PGPASSWORD=$(cat /run/pw) pg_dump -h {stack.container('postgres')} "
        f"-U postgres {database_name(stack.prefix, 'prod')} | gzip > /out/plain.sql.gz"])
    size = (out / "plain.sql.gz").stat().st_size
    (out / "plain.sql.gz").unlink()
    return elapsed, peak, size


def mb(value: int) -> str:
    return f"{value / 1048576:.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000],
                        help="MB of table data to generate, one run each")
    args = parser.parse_args()
    build_images()
    engine = DockerEngine()
    stack = start_local_stack(engine, release_tags(engine))
    memory_mb = 64
    try:
        script = str(stack.root / "bin" / "backup.sh")
        job = f"{stack.prefix}-backup-run-"
        print(f"host: {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}"
              f" cores (shared), PostgreSQL stand-in 15, backup job --memory {memory_mb}m")
        for size in args.sizes:
            started = time.monotonic()
            database_bytes = generate(stack, size)
            print(f"\n== {size} MB of generated rows: database {mb(database_bytes)}, "
                  f"generated in {time.monotonic() - started:.0f} s")
            base_s, base_peak, base_size = baseline(stack, memory_mb, stack.root / "bench")
            print(f"baseline pg_dump | gzip    {base_s:7.1f} s  peak {base_peak:>24}  "
                  f"output {mb(base_size)}")
            backup_s, backup_peak, _ = timed(job, [script, "run"])
            newest = sorted(p for p in (stack.root / "backups").iterdir()
                            if not p.name.startswith("."))[-1]
            backup_size = sum(p.stat().st_size for p in newest.iterdir())
            print(f"backup (dump+check+gpg)    {backup_s:7.1f} s  peak {backup_peak:>24}  "
                  f"output {mb(backup_size)}  ({backup_s / base_s:.1f}x the baseline's time)")
            verify_s, _, _ = timed(job, [script, "verify"])
            print(f"verify (SHA-256 of files)  {verify_s:7.1f} s")
            drill_s, drill_peak, _ = timed(job, [script, "drill"])
            print(f"drill (restore+count+check){drill_s:7.1f} s  peak {drill_peak:>24}")
            print(f"postgres container peak so far: {mb(postgres_peak(stack))} "
                  "(its limit: 120 MB)")
            for old in (stack.root / "backups").iterdir():
                subprocess.run(["rm", "-rf", str(old)], check=True)
    finally:
        remove_everything(engine, stack.prefix, stack.root)


if __name__ == "__main__":
    main()
