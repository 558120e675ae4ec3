"""Updates that take effect (review M9), read by the real programs of both releases:
unattended-upgrades' reboot settings through apt-config (apt's own parser, as
unattended-upgrade reads them with apt_pkg), and needrestart's drop-in through needrestart
itself (its list-only run, the program's check) and through Perl as needrestart loads it
(`do` of needrestart.conf, then conf.d/*.conf: /usr/sbin/needrestart)."""

from __future__ import annotations

import copy

import pytest

from tests.harness.program import host_files as program_host_files
from tests.harness.program import run_program, stack_config
from tests.rendered.test_host import debian, in_vps  # noqa: F401 - the fixture, per release

pytestmark = pytest.mark.rendered
UNATTENDED = "/etc/apt/apt.conf.d/52aiia-unattended-upgrades"
NEEDRESTART = "/etc/needrestart/conf.d/50-aiia.conf"
INSTALL = ("apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "
           "-q --no-install-recommends needrestart >/dev/null 2>&1\n")
# What needrestart's own config loading makes of the files: its restart mode, and whether
# each service would be restarted (override_rc: the first matching pattern's value).
NEEDRESTART_SETTINGS = r"""
perl -e '
our %nrconf;
for my $file ("/etc/needrestart/needrestart.conf", glob("/etc/needrestart/conf.d/*.conf")) {
  do $file; die "$file: $@" if $@;
}
print "restart=$nrconf{restart}\n";
for my $unit (qw(docker.service containerd.service ssh.service cron.service
                 fail2ban.service aiia-docker-firewall.service)) {
  my $restart = 1;
  for my $re (keys %{$nrconf{override_rc}}) {
    if ($unit =~ /$re/) { $restart = $nrconf{override_rc}->{$re}; last }
  }
  print "$unit=$restart\n";
}
my @containers = keys %{$nrconf{override_cont}};
print "containers=", (grep { "aiia-postgres" =~ /$_/ && !$nrconf{override_cont}->{$_} }
                      @containers) ? "never" : "restarted", "\n";
'
"""


def rendered_with(automatic_reboot) -> dict[str, str]:
    config = copy.deepcopy(stack_config("prod"))
    config["aiia:host"].setdefault("provision", {})["automatic_reboot"] = automatic_reboot
    return program_host_files(run_program("prod", config=config))


def apt_reboot_settings(release: str, files: dict[str, str], tmp_path) -> dict[str, str]:
    dumped = in_vps(release, {UNATTENDED: files[UNATTENDED]},
                    "apt-config dump | grep Automatic-Reboot || true", tmp_path).stdout
    return dict(line.rstrip(";").replace('"', "").split(" ", 1) for line in dumped.splitlines())


def test_by_default_a_needed_reboot_happens_at_0430_unless_someone_is_logged_in(
        debian, tmp_path):  # noqa: F811
    settings = apt_reboot_settings(debian, rendered_with("04:30"), tmp_path)
    assert settings == {"Unattended-Upgrade::Automatic-Reboot": "true",
                        "Unattended-Upgrade::Automatic-Reboot-Time": "04:30",
                        "Unattended-Upgrade::Automatic-Reboot-WithUsers": "false"}, settings


def test_off_leaves_the_reboot_to_an_operator(debian, tmp_path):  # noqa: F811
    settings = apt_reboot_settings(debian, rendered_with("off"), tmp_path)
    assert settings == {"Unattended-Upgrade::Automatic-Reboot": "false"}, settings


def test_needrestart_restarts_services_but_never_docker_containerd_or_a_container(
        debian, rendered, tmp_path):  # noqa: F811
    files = {NEEDRESTART: rendered["prod"].files[NEEDRESTART]}
    shown = in_vps(debian, files, INSTALL + "needrestart -r l -b >/dev/null\n"
                   + NEEDRESTART_SETTINGS, tmp_path, network="bridge").stdout
    assert dict(line.split("=", 1) for line in shown.split()) == {
        "restart": "a", "docker.service": "0", "containerd.service": "0",
        "ssh.service": "1", "cron.service": "1", "fail2ban.service": "1",
        "aiia-docker-firewall.service": "0", "containers": "never"}, shown


def test_needrestarts_check_refuses_a_file_it_cannot_parse(debian, tmp_path):  # noqa: F811
    """The check the program runs after installing the drop-in (so a bad one is put back)."""
    broken = {NEEDRESTART: "$nrconf{restart} = 'a'\n$nrconf{override_rc}->{qr(^docker) = 0;\n"}
    result = in_vps(debian, broken, INSTALL + "needrestart -r l -b >/dev/null", tmp_path,
                    network="bridge", check=False)
    assert result.returncode != 0 and "50-aiia.conf" in result.stderr, result.stderr
