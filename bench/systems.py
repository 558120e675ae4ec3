"""Debian 12 against Debian 13 (issue #26): the same `prod` stack on each VPS stand-in, one
after the other in one run, timed as an operator meets it.

Per system (aiia-standin/vps:12: docker.io 20.10, Engine API 1.41, so the health checks
declare no start_interval; aiia-standin/vps:13: docker.io 26.1, API 1.45, start_interval 1 s):
- the first `pulumi up` on the bare host (tests/harness/vps.py: provisioning, the platform,
  the first release), replayed over SSH and Docker's ssh:// onto the stand-in;
- `--releases` releases, alternating two tags: `up` → the first request nginx serves from the
  new release (a GET / each 0.1 s from 127.0.0.1, read from `X-Release`), and the whole `up`
  (which ends after the release's watch, `releases.prod.watch_seconds`: 12 s here);
- an `up` with nothing changed (what a re-run or a scheduled drift check costs).
The host services' memory on each (dockerd, containerd, sshd, journald, fail2ban …) is
`tests/e2e/test_vps.py`'s own measurement; a platform `up` that replaces every platform
container is `bench.health_gates` (Debian 13, with and without start_interval).

Run as root from the repository root, the engine up and the stand-in images built
(tests/run.sh does both): `python3 -m bench.systems [--releases N]`. About six minutes per
system; each stand-in is removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.health_gates import release_up
from tests.harness.engine import DockerEngine
from tests.harness.local_stack import build_images, release_tags
from tests.harness.vps import RELEASES, prod_on_vps

SYSTEMS = {"Debian 13 (docker.io 26.1)": "aiia-standin/vps:13",
           "Debian 12 (docker.io 20.10)": "aiia-standin/vps:12"}


def measure(engine: DockerEngine, image: str, releases: int) -> dict[str, list[float]]:
    result: dict[str, list[float]] = {"first up": [], "first": [], "release": [], "same": []}
    with tempfile.TemporaryDirectory() as keys:
        start = time.monotonic()
        with prod_on_vps(engine, image, Path(keys)) as provisioned:
            result["first up"].append(time.monotonic() - start)
            release = RELEASES[0]
            for _ in range(releases):
                release = RELEASES[1] if release == RELEASES[0] else RELEASES[0]
                first, total = release_up(provisioned, provisioned.with_release(release))
                result["first"].append(first)
                result["release"].append(total)
                print(f"{image}: release {release}: first request {first:.1f} s, "
                      f"up {total:.1f} s", flush=True)
            start = time.monotonic()
            provisioned.up(provisioned.with_release(release))
            result["same"].append(time.monotonic() - start)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=2)
    args = parser.parse_args()
    engine = DockerEngine()
    build_images()
    release_tags(engine)
    results = {name: measure(engine, image, args.releases) for name, image in SYSTEMS.items()}
    print(f"\nprod stack, replay of `pulumi up` over SSH; {args.releases} release(s) each, "
          "median; this machine's 2 cores")
    print(f"{'':40}" + "".join(f"{name:>30}" for name in SYSTEMS))
    rows = (("first up on the bare host", "first up"),
            ("release: up → first request", "first"),
            ("release: whole up", "release"),
            ("up with nothing changed", "same"))
    for label, key in rows:
        print(f"{label:40}" + "".join(
            f"{statistics.median(results[name][key]):>28.1f} s" for name in SYSTEMS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
