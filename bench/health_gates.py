"""One-second health gates (issue #26 item 5): a release and a platform `up` on the Debian 13
VPS stand-in, with every health check's start_interval (1 s) and without it, side by side.

The `prod` stack is provisioned once on a new Debian 13 stand-in (tests/harness/vps.py: the
program under mocks, replayed over SSH and Docker's ssh:// onto the stand-in's own docker.io
26.1, Engine API 1.45). Then, per round and per mode (without first, then with):
- a release (`releases.prod.release` changed, `pulumi up`): the time from the start of the
  up to the first request nginx serves from the new release (a GET / each 0.1 s from
  127.0.0.1 through nginx, read from the app's `X-Release` header), and the whole up (which
  ends after the release's watch, `releases.prod.watch_seconds`: 12 s here);
- a platform `up` that replaces every platform container (PostgreSQL, PgBouncer, Redis,
  nginx): the switch between the modes itself, since the health check is part of each
  container's inputs. Its time from the start of the up to the last platform container's
  gate, each container's create-to-healthy time, and how many checks each gate took (the
  engine's health log at the gate). The same up also starts a new generation of the
  release (the generation names its health check): the whole up is printed apart.
"Without" is the program with `host.docker_api_version: "1.41"`, i.e. what it declares on a
Debian 12 host: the field left out, each gate waiting for the next `interval` check.

Run as root from the repository root, the engine up and the stand-in images built
(tests/run.sh does both): `python3 -m bench.health_gates [--rounds N]`. It takes about
five minutes to provision and two or three per round; the stand-in is removed at the end.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import threading
import time
from pathlib import Path

from tests.harness.engine import DockerEngine, gate_checks
from tests.harness.local_stack import build_images, release_tags
from tests.harness.vps import RELEASES, Provisioned, prod_on_vps

VPS_IMAGE = "aiia-standin/vps:13"
PLATFORM_CONTAINERS = ("aiia-postgres", "aiia-pgbouncer", "aiia-redis", "aiia-nginx")
MODES = {"start_interval 1s": None, "without (API 1.41)": "1.41"}


def in_mode(config: dict, docker_api_version: str | None, release: str) -> dict:
    config = copy.deepcopy(config)
    host = config["aiia:host"]
    host.pop("docker_api_version", None)
    if docker_api_version:
        host["docker_api_version"] = docker_api_version
    config["aiia:releases"]["prod"]["release"] = release
    return config


class FirstServed:
    """The first response from `release` through nginx after `start` (monotonic clock)."""

    def __init__(self, provisioned: Provisioned, release: str):
        self.provisioned, self.release = provisioned, release
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> FirstServed:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _poll(self) -> None:
        while not self._stop.is_set() and self.at is None:
            try:
                response = self.provisioned.get("prod", "/")
                if response.status == 200 and response.headers.get("x-release") == self.release:
                    self.at = time.monotonic()
            except OSError:
                pass
            self._stop.wait(0.1)


def release_up(provisioned: Provisioned, config: dict) -> tuple[float, float]:
    """(seconds to the first request served by the new release, seconds of the whole up)."""
    release = config["aiia:releases"]["prod"]["release"]
    start = time.monotonic()
    with FirstServed(provisioned, release) as served:
        provisioned.up(config)
        end = time.monotonic()
        deadline = time.monotonic() + 10
        while served.at is None and time.monotonic() < deadline:
            time.sleep(0.1)
    if served.at is None:
        raise RuntimeError(f"no request was served by {release} after the up")
    return served.at - start, end - start


def platform_up(provisioned: Provisioned, config: dict) -> dict:
    """A platform `up` replacing every platform container: its timings and gates."""
    events_before = len(provisioned.replay.events)
    start = time.monotonic()
    provisioned.up(config)
    end = time.monotonic()
    creates = {name: (began, ended) for action, name, began, ended
               in provisioned.replay.events[events_before:]
               if action == "create" and name.startswith("platform-")
               and name.endswith("-container")}
    gates = {}
    for engine in provisioned.replay.engines.values():
        gates.update(engine.gates)
    checks = {}
    for name in PLATFORM_CONTAINERS:
        _, log = gate_checks(gates[name])
        checks[name] = len(log)
    return {"ready": max(ended for _, ended in creates.values()) - start, "total": end - start,
            "services": {name.removeprefix("platform-").removesuffix("-container"):
                         ended - began for name, (began, ended) in creates.items()},
            "checks": checks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    engine = DockerEngine()
    build_images()
    release_tags(engine)
    results: dict[str, dict[str, list]] = {mode: {"first": [], "release": [], "ready": [],
                                                  "platform": [], "services": [], "checks": []}
                                           for mode in MODES}
    with tempfile.TemporaryDirectory() as keys, \
            prod_on_vps(engine, VPS_IMAGE, Path(keys)) as provisioned:
        base = provisioned.config
        release = RELEASES[0]
        # Provisioned with start_interval. Each round switches to the other mode (the
        # platform up), releases there, and does the same in the first mode again.
        for round_ in range(args.rounds):
            for mode, api in reversed(MODES.items()):
                measured = platform_up(provisioned, in_mode(base, api, release))
                for key in ("ready", "services", "checks"):
                    results[mode][key].append(measured[key])
                results[mode]["platform"].append(measured["total"])
                release = RELEASES[1] if release == RELEASES[0] else RELEASES[0]
                first, total = release_up(provisioned, in_mode(base, api, release))
                results[mode]["first"].append(first)
                results[mode]["release"].append(total)
                print(f"round {round_ + 1}, {mode}: platform up {measured['total']:.1f} s "
                      f"(gates {measured['ready']:.1f} s); release up → first request served "
                      f"{first:.1f} s (up {total:.1f} s)", flush=True)
    report(results, args.rounds)
    return 0


def report(results: dict[str, dict[str, list]], rounds: int) -> None:
    print(f"\nDebian 13 stand-in ({VPS_IMAGE}: docker.io 26.1, API 1.45), prod stack, replay "
          f"of `pulumi up`; {rounds} round(s); median of the runs; this machine's 2 cores "
          "shared with other work")
    print(f"{'':28}" + "".join(f"{mode:>24}" for mode in MODES))

    def row(label: str, values: list) -> None:
        print(f"{label:28}" + "".join(f"{value:>24}" for value in values))

    def median(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} s" if values else "-"

    row("release: up → first request", [median(results[m]["first"]) for m in MODES])
    row("release: whole up", [median(results[m]["release"]) for m in MODES])
    row("platform up: all gates", [median(results[m]["ready"]) for m in MODES])
    row("platform up: whole up", [median(results[m]["platform"]) for m in MODES])
    for service in ("postgres", "pgbouncer", "redis", "nginx"):
        row(f"  {service}: create → healthy",
            [median([run[service] for run in results[m]["services"]]) for m in MODES])
        row(f"  {service}: checks to gate",
            [",".join(str(run[f"aiia-{service}"]) for run in results[m]["checks"]) or "-"
             for m in MODES])


if __name__ == "__main__":
    raise SystemExit(main())
