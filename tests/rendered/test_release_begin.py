"""Review L5: the release's first host step (templates/app/release-begin.sh.j2) hands the
environment's directories to the uid the app runs as, as root, without following a symbolic
link the previous app left there. Run for real in the Debian 13 VPS stand-in, with `docker`
a stub (its jobs are tests/e2e's), and the links planted as the old app could."""

from __future__ import annotations

import pytest

from tests.rendered.test_host import in_vps

pytestmark = pytest.mark.rendered
DOCKER_STUB = "#!/bin/sh\nexit 0\n"


def test_handing_the_directories_over_follows_no_symlink(rendered, tmp_path):
    (name,) = [name for name in rendered["prod"].scripts if name.startswith("app-prod-migrate-")]
    script = rendered["prod"].script(name)
    root = rendered["prod"].root_dir
    (release,) = [r for r in rendered["prod"].settings.releases if r.environment == "prod"]
    run_as = release.run_as
    uid = run_as.split(":")[0]
    old = "10002"  # the uid the previous release ran as
    media, logs = f"{root}/media/prod", f"{root}/logs/prod"
    setup = "; ".join([
        "set -e",
        "echo precious > /root/media-target && echo precious > /root/log-target",
        f"install -d -o {old} -g {old} {media} {logs}",
        f"echo upload > {media}/upload.png && chown {old}:{old} {media}/upload.png",
        f"ln -s /root/media-target {media}/planted && chown -h {old}:{old} {media}/planted",
        f"ln -s /root/log-target {logs}/planted.log && chown -h {old}:{old} {logs}/planted.log",
        "bash /opt/release-begin.sh < /dev/null > /tmp/out 2>&1 || { cat /tmp/out; exit 1; }",
        "stat -c '%n %u' /root/media-target /root/log-target",
        f"stat -c '%n %u' {media}/upload.png {media}/planted {logs}/planted.log",
    ])
    files = {"/opt/release-begin.sh": script, "/usr/local/bin/docker": DOCKER_STUB}
    output = in_vps("13", files, setup, tmp_path,
                    modes={"/usr/local/bin/docker": 0o755}).stdout
    owners = dict(line.rsplit(" ", 1) for line in output.splitlines() if line.startswith("/"))
    # The link targets stay root's; what the app owns (links included) is the new uid's.
    assert owners["/root/media-target"] == owners["/root/log-target"] == "0", output
    assert owners[f"{media}/upload.png"] == owners[f"{media}/planted"] == uid, output
    assert owners[f"{logs}/planted.log"] == uid, output
