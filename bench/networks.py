"""Benchmark: an existing stack moved onto the separated networks, under load.

Not a test: it prints numbers and the conditions they were measured under.

    python3 -m bench.networks [--from a560bf2] [--rate 40]

As root, with dockerd up and the stand-in images built (tests/images/build-standins.sh).
It stands up a `local` stack with the program of an earlier commit (`--from`, one network
for everything; run from a `git archive` of that commit in a subprocess, its recorded
resources replayed by this checkout's replay), then runs this checkout's program on the
same stack, as an operator's first `pulumi up` after the change does, while a paced load
of `GET /healthz/` (PostgreSQL through PgBouncer, and Redis) runs through nginx on each
environment's domain. The baseline is the same load before the update, in the same run.

It prints, per environment: requests and failures by kind during the update; the steps
the replay carried out on the platform's containers (a `replace` of one would be a
restart); what the join steps said (nginx and Redis stay on the data network while the
earlier releases run there); and, after a second run of those steps (the runbook's
`--replace`), whether they left it. The stack is removed at the end, also on error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.harness.engine import DockerEngine
from tests.harness.load import Load
from tests.harness.local_stack import (
    ROOT,
    build_images,
    e2e_config,
    free_port,
    free_subnets,
    image_map,
    release_tags,
    remove_everything,
    tag_releases,
)
from tests.harness.program import (
    ProgramRun,
    RecordedResource,
    host_scripts,
    made_up_secrets,
    run_program,
)
from tests.harness.replay import CONTAINER, Replay

# Run inside the earlier commit's tree: its own harness makes its config and records its
# program, so that what is replayed first is exactly what that program declared.
BEFORE = """
import dataclasses, json, sys
from pathlib import Path
from tests.harness.local_stack import e2e_config
from tests.harness.program import made_up_secrets, run_program
prefix, root, subnet, http, https, out = sys.argv[1:7]
config = e2e_config(prefix, Path(root), subnet, int(http), int(https),
                    {"a": "release-a"})
secrets = made_up_secrets(config)
run = run_program("local", config=config, secrets=secrets)
json.dump({"config": config, "secrets": secrets,
           "resources": [dataclasses.asdict(r) for r in run.resources]},
          open(out, "w"), default=str, sort_keys=True)
"""


def earlier_program(commit: str, prefix: str, root: Path, subnet: str, http_port: int,
                    https_port: int) -> tuple[dict, dict, ProgramRun]:
    with tempfile.TemporaryDirectory(prefix="aiia-bench-before-") as tree:
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        out = Path(tree) / "run.json"
        subprocess.run([sys.executable, "-c", BEFORE, prefix, str(root), subnet,
                        str(http_port), str(https_port), str(out)], cwd=tree, check=True,
                       env={"PYTHONPATH": tree, "PATH": "/usr/bin:/bin",
                            "PYTHONDONTWRITEBYTECODE": "1"}, capture_output=True)
        recorded = json.loads(out.read_text())
    fields = RecordedResource.__dataclass_fields__
    resources = [RecordedResource(**{k: v for k, v in item.items() if k in fields})
                 for item in recorded["resources"]]
    return recorded["config"], recorded["secrets"], ProgramRun(resources=resources, exports={})


def normalized(run: ProgramRun) -> ProgramRun:
    """Inputs through the same JSON round trip as the earlier run's (key order aside, the
    replay compares them as they are)."""
    resources = []
    for resource in run.resources:
        item = json.loads(json.dumps(dataclasses.asdict(resource), default=str, sort_keys=True))
        resources.append(RecordedResource(**item))
    return ProgramRun(resources=resources, exports=run.exports)


def loads(https_port: int, config: dict, rate: float, seconds: float) -> dict[str, Load]:
    domains = {env: values["domain"]
               for env, values in config["aiia:platform"]["environments"].items()}
    return {env: Load(https_port, domain, path="/healthz/", rate=rate,
                      total=int(rate * seconds), connections=4).start()
            for env, domain in domains.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="commit", default="a560bf2",
                        help="the commit whose program made the stack (one network)")
    parser.add_argument("--rate", type=float, default=40, help="requests/s per environment")
    parser.add_argument("--seconds", type=float, default=150,
                        help="how long each load runs (it must outlast the update)")
    args = parser.parse_args()

    engine = DockerEngine()
    build_images()
    prefix = f"bench{int(time.time()) % 100000:05d}"
    root = Path(f"/tmp/aiia-{prefix}")
    http_port, https_port = free_port(), free_port()
    subnets = free_subnets(engine, 4)
    releases = {"a": release_tags(engine)["a"]}
    tag_releases(engine, prefix, releases)
    log: list[str] = []
    try:
        before_config, secrets, before = earlier_program(args.commit, prefix, root,
                                                         subnets[0], http_port, https_port)
        replay = Replay(engine, image_map(before_config), log=log.append)
        replay.apply(before)
        print(f"stack {prefix} up with the program of {args.commit} (one network, "
              f"{subnets[0]})")
        config = e2e_config(prefix, root, subnets, http_port, https_port, releases)
        after = normalized(run_program("local", config=config,
                                       secrets=made_up_secrets(config)))
        baseline = loads(https_port, config, args.rate, 10)
        for load in baseline.values():
            load.wait(timeout=60)
            load.stop()
        running = loads(https_port, config, args.rate, args.seconds)
        time.sleep(3)
        first = len(log)
        started = time.monotonic()
        replay.apply(after)
        took = time.monotonic() - started
        for load in running.values():
            load.wait(timeout=args.seconds * 2 + 60)
            load.stop()
        print(f"\nthis checkout's program on it: `pulumi up` took {took:.1f} s; "
              f"{args.rate:.0f} r/s of GET /healthz/ per environment, 4 keep-alive "
              "connections each, from 127.0.0.1 through nginx")
        for env in running:
            print(f"  {env:8} baseline: {baseline[env].summary().line()}")
            print(f"  {env:8} during:   {running[env].summary().line()}")
        containers = {r.name for r in after.resources if r.type == CONTAINER}
        print("\nsteps on containers:")
        for line in log[first:]:
            if any(f" {name}" in line for name in containers) and \
                    line.split()[0] in ("create", "replace", "update", "delete"):
                print(f"  {line}")
        print("\nthe join steps said:")
        for applied in replay.state.values():
            if applied.name.endswith("-networks"):
                said = (applied.real.get("stdout") or "").strip().splitlines()
                print(f"  {applied.name}: " + "; ".join(said))
        print("\nthe join steps again, now that the earlier releases are gone "
              "(docs/runbooks.md, --replace):")
        for name, script in host_scripts(after).items():
            if name.endswith("-networks"):
                result = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                                        timeout=120)
                print(f"  {name}: " + "; ".join(result.stdout.strip().splitlines()
                                                 + result.stderr.strip().splitlines()))
    finally:
        remove_everything(engine, prefix, root)


if __name__ == "__main__":
    main()
