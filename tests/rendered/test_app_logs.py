"""Review M5: each environment's Django log ({root}/logs/<env>/*.log, the app's LOG_FILE)
rotated by the host's logrotate (templates/host/logrotate.conf.j2), run for real in the VPS
stand-ins of both releases, with the app's uid owning the directory as a release leaves it
(templates/app/release-begin.sh.j2)."""

from __future__ import annotations

import pytest

from tests.rendered.test_host import IMAGES, host_files, in_vps

pytestmark = pytest.mark.rendered
APP_UID = "10001:10001"  # releases.<env>.run_as's default


@pytest.fixture(params=sorted(IMAGES), ids=lambda version: f"debian{version}")
def debian(request) -> str:
    return request.param


def test_each_environment_s_django_log_past_its_cap_is_rotated_and_stays_the_app_s(
        debian, rendered, tmp_path):
    config = {"/etc/logrotate.d/aiia": host_files(rendered)["/etc/logrotate.d/aiia"]}
    root = rendered["prod"].root_dir
    environments = [env.name for env in rendered["prod"].settings.platform.environments]
    assert environments == ["prod", "staging"]
    uid = APP_UID.split(":")[0]
    # 51 MB of numbered lines written by the app's uid; a symbolic link the app planted to a
    # root-owned file, which logrotate must neither truncate nor hand over.
    script = "; ".join([
        "set -e",
        "echo precious > /root/secret",
        *[f"install -d -o {uid} -g {uid} -m 0755 {root}/logs/{env}" for env in environments],
        *[f"setpriv --reuid={uid} --regid={uid} --clear-groups bash -c "
          f"'seq 1 7000000 > {root}/logs/{env}/django.log; "
          f"ln -s /root/secret {root}/logs/{env}/planted.log'" for env in environments],
        "logrotate -s /tmp/state /etc/logrotate.d/aiia 2>/tmp/errors || true",
        *[f"echo @@{env}; ls -ln {root}/logs/{env} | tail -n +2; "
          f"cat {root}/logs/{env}/django.log* | wc -l" for env in environments],
        "echo @@secret; stat -c '%u %s' /root/secret",
    ])
    output = in_vps(debian, config, script, tmp_path).stdout
    sections = dict(part.split("\n", 1) for part in output.split("@@")[1:])
    for env in environments:
        listing = sections[env].splitlines()
        files = {line.split()[-1] if "->" not in line else line.split()[-3]:
                 line.split() for line in listing[:-1]}
        rotated = [name for name in files if name.startswith("django.log-")]
        assert len(rotated) == 1, listing
        # Every line once, the live file emptied in place and still the app's.
        assert listing[-1] == "7000000", listing
        assert files["django.log"][4] == "0" and files["django.log"][2:4] == [uid, uid], listing
        assert files[rotated[0]][2:4] == [uid, uid], listing
    assert sections["secret"].split() == ["0", "9"], sections["secret"]
