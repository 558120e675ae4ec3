"""The release's watch (templates/app/release-watch.sh.j2) with a contract of the stack's
own — another health path and status, no release header — run for real against a stand-in
`docker`: it asks the configured path through nginx, and recognises the release by the
upstream address nginx logs for its request, switching back when it is not the new one."""

import copy
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.harness.program import run_program, stack_config
from tests.rendered.test_shellcheck import shellcheck

pytestmark = pytest.mark.rendered

# `docker exec <nginx> curl … -w '%{http_code}' … URL`: answers $FAKE_STATUS and logs the
# request as nginx's access log would, sent to $FAKE_UPSTREAM; `docker inspect` of the new
# container's address on its network answers ADDRESS (the engine's, not Pulumi's state's);
# every other call succeeds quietly (no nginx running: `docker ps` prints nothing, so no
# reload happens).
ADDRESS = "172.18.0.7"
FAKE_DOCKER = """#!/bin/bash
if [ "$1" = inspect ] && [[ "$3" == *'Networks "aiia-local-prod"'* ]]; then
  echo 172.18.0.7
  exit 0
fi
if [ "$1" = exec ] && [ "$3" = curl ]; then
  url=${*: -1}
  path=/${url#https://*/}
  printf '{"env":"prod","uri":"%s","status":%s,"upstream":"%s"}\\n' \\
    "$path" "$FAKE_STATUS" "$FAKE_UPSTREAM" >> "$FAKE_LOG"
  printf '%s' "$FAKE_STATUS"
  exit 0
fi
if [ "$1" = exec ]; then exit 1; fi  # test -d /proc/<old worker>: gone
exit 0
"""


@pytest.fixture(scope="module")
def watch(tmp_path_factory) -> tuple[str, str, Path]:
    root = tmp_path_factory.mktemp("host")
    config = copy.deepcopy(stack_config("local"))
    config["aiia:host"]["root_dir"] = str(root)
    config["aiia:releases"]["prod"].update(
        health={"path": "/ht/", "status": 204}, release_header=None, watch_seconds=1)
    run = run_program("local", config=config)
    script = run.named("app-prod-watch").plain["create"]
    upstream = run.named("app-prod-upstream-install").plain["stdin"]
    port = re.search(r"server @ADDRESS@:(\d+) max_fails", upstream).group(1)
    return script, f"{ADDRESS}:{port}", root


def run_watch(watch, tmp_path, status: int, upstream: str) -> subprocess.CompletedProcess:
    script, _, root = watch
    (root / "logs/nginx").mkdir(parents=True, exist_ok=True)
    log = root / "logs/nginx/access.log"
    log.write_text("")
    state = root / "state"
    state.mkdir(exist_ok=True)
    (root / "nginx/upstreams").mkdir(parents=True, exist_ok=True)
    (root / "nginx/upstreams/prod.conf").write_text("server new\n")
    (state / "release-prod.previous-upstream").write_text("server old\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                   "FAKE_STATUS": str(status), "FAKE_UPSTREAM": upstream, "FAKE_LOG": str(log)}
    return subprocess.run(["bash", "-c", script], text=True, capture_output=True,
                          env=environment, cwd=tmp_path, timeout=60, check=False)


def test_the_release_served_from_its_own_address_passes(watch, tmp_path):
    _, address, root = watch
    result = run_watch(watch, tmp_path, 204, address)
    assert result.returncode == 0, result.stderr
    assert "recorded as succeeded" in result.stdout
    logged = (root / "logs/nginx/access.log").read_text()
    assert '"uri":"/ht/"' in logged  # the configured path, not /healthz/
    assert (root / "nginx/upstreams/prod.conf").read_text() == "server new\n"


def test_a_request_nginx_sent_elsewhere_fails_the_release_and_switches_back(watch, tmp_path):
    _, address, root = watch
    result = run_watch(watch, tmp_path, 204, "172.31.0.99:8080")
    assert result.returncode == 1
    assert "nginx did not send the watch's request to aiia-local-app-prod-local-1-" in \
        result.stderr and f"({address})" in result.stderr
    assert (root / "nginx/upstreams/prod.conf").read_text() == "server old\n"
    assert "recorded as switched_back" in result.stdout


def test_the_watch_script_is_shellcheck_clean(watch):
    assert shellcheck(watch[0], "bash") == ""
