"""Test scaffolding: a stand-in for the `docker` CLI, for the scripts that call it (make doctor,
logs, exec, restart). Not Docker.

`install(bin_dir, scenario)` writes an executable `docker` into bin_dir (put it first on
PATH). Each run appends its arguments, the DOCKER_HOST it was given and the content of an
--env-file it was handed to `calls.jsonl` beside it, and answers from the scenario: the
first rule whose `args` are a prefix of the arguments gives stdout, stderr and the exit
code; with no rule it prints nothing and exits 0. `calls(bin_dir)` reads back what was run,
`runs(bin_dir)` the whole records.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SCENARIO = "docker-scenario.json"
CALLS = "calls.jsonl"


def rule(args: list[str], stdout: str = "", stderr: str = "", exit: int = 0) -> dict:
    return {"args": args, "stdout": stdout, "stderr": stderr, "exit": exit}


def install(bin_dir: Path, scenario: list[dict]) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / SCENARIO).write_text(json.dumps(scenario))
    stand_in = bin_dir / "docker"
    stand_in.write_text(f"#!{sys.executable}\n# TEST STAND-IN for the docker CLI: "
                        "tests/harness/fake_docker.py\nimport sys\n"
                        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
                        "from tests.harness.fake_docker import main\nsys.exit(main())\n")
    stand_in.chmod(0o755)
    return stand_in


def runs(bin_dir: Path) -> list[dict]:
    path = bin_dir / CALLS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def calls(bin_dir: Path) -> list[list[str]]:
    return [run["args"] for run in runs(bin_dir)]


def main() -> int:
    here = Path(sys.argv[0]).resolve().parent
    args = sys.argv[1:]
    env_file = args[args.index("--env-file") + 1] if "--env-file" in args else None
    with open(here / CALLS, "a") as log:
        log.write(json.dumps({"args": args, "docker_host": os.environ.get("DOCKER_HOST"),
                              "env_file": Path(env_file).read_text() if env_file else None})
                  + "\n")
    for entry in json.loads((here / SCENARIO).read_text()):
        if args[:len(entry["args"])] == entry["args"]:
            sys.stdout.write(entry["stdout"])
            sys.stderr.write(entry["stderr"])
            return entry["exit"]
    return 0
