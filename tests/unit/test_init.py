"""make init (scripts/init/) on copies of the project's stack files, with a stand-in Pulumi CLI
(tests/harness/pulumi_stacks_standin.py) and a stand-in ssh-keyscan that offers a real key
made here (test scaffolding: no CLI and no network here); ssh-keygen and gpg are the real
ones. Shown: a first run does everything and the result passes the program's settings; a
second changes nothing; a secret that is set is never replaced, and none is ever on a
command line or in the output; a wrong fingerprint, a missing flag or a private key stops it
before anything is written."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from components.settings import parse_settings
from scripts.init.dns import dns_records
from scripts.init.questions import KEEP, Question, resolve
from scripts.stack_file import config_of
from tests.harness.make import stand_in
from tests.harness.program import TEST_BACKUP_KEY
from tests.harness.pulumi_stacks_standin import calls, plaintext, stacks, wrapper

ROOT = Path(__file__).resolve().parents[2]
STACK_FILES = ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.staging.yaml", "Pulumi.local.yaml")
HOST = "203.0.113.10"


def keypair(directory: Path, name: str) -> Path:
    """A fresh ed25519 key pair; the path of its private half."""
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True, timeout=30)
    return key


def fingerprint_of(public: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(public)], capture_output=True, text=True,
                          check=True, timeout=30).stdout.split()[1]


class Project:
    """A copy of the project's stack files, the stand-ins first on PATH, the operator's keys."""

    def __init__(self, directory: Path):
        self.directory = directory / "project"
        self.directory.mkdir()
        for name in STACK_FILES:
            shutil.copy(ROOT / name, self.directory)
        self.state = directory / "pulumi-state"
        self.state.mkdir()
        self.bin = directory / "bin"
        stand_in(self.bin / "pulumi", wrapper(self.state, ROOT))
        keys = directory / "keys"
        keys.mkdir()
        self.vps_key = keypair(keys, "vps-host-key")
        self.operator_key = keypair(keys, "operator")
        self.gpg_key = keys / "operator.asc"
        self.gpg_key.write_text(TEST_BACKUP_KEY)
        self.offer(self.vps_key)

    def offer(self, key: Path) -> None:
        """What the stand-in ssh-keyscan answers: `host type base64` as the real one prints."""
        public = key.with_suffix(".pub").read_text().split()
        stand_in(self.bin / "ssh-keyscan",
                 "#!/bin/sh\n# TEST STAND-IN for ssh-keyscan: the VPS's key, made by the test\n"
                 f"echo \"$*\" >> '{self.state / 'keyscan-calls'}'\n"
                 "for host; do :; done\n"
                 "echo \"# $host:22 SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\" >&2\n"
                 f"echo \"$host {public[0]} {public[1]}\"\n")

    def text(self, stack: str) -> str:
        return (self.directory / f"Pulumi.{stack}.yaml").read_text()

    def texts(self) -> dict[str, str]:
        return {name: (self.directory / name).read_text() for name in STACK_FILES}

    def keyscans(self) -> int:
        path = self.state / "keyscan-calls"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def flags(self, **changes: str | None) -> list[str]:
        """Every value as a flag (a change of None leaves that flag out)."""
        values = {"--org": "acme", "--host": HOST, "--status-domain": "status.acme.example",
                  "--email": "ops@acme.example", "--image": "ghcr.io/acme/backend",
                  "--ssh-key-file": f"{self.operator_key}.pub",
                  "--gpg-key-file": str(self.gpg_key),
                  "--host-key-fingerprint": fingerprint_of(self.vps_key.with_suffix(".pub"))}
        values.update(changes)
        flags = [word for flag, value in values.items() if value is not None
                 for word in (flag, value)]
        return [*flags, "--domain", "prod=api.acme.example",
                "--domain", "staging=staging.acme.example"]

    def init(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "scripts.init", "--stack", "prod", *args],
            cwd=self.directory, input=stdin, capture_output=True, text=True, timeout=120,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT),
                 "PATH": f"{self.bin}:{os.environ['PATH']}"})

    def secret(self, stack: str, key: str) -> str:
        return plaintext(config_of(self.text(stack))[f"aiia:{key}"]["secure"])


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path)


def settings_of(project: Project, stack: str):
    """What the program's settings make of a stack file, its secrets as the file holds them."""
    config = config_of(project.text(stack))
    secure = {key.split(":", 1)[1] for key, value in config.items()
              if isinstance(value, dict) and "secure" in value}
    raw = {key.split(":", 1)[1]: value for key, value in config.items()
           if key.split(":", 1)[1] not in secure}
    return parse_settings(stack, raw, lambda key: "set" if key in secure else None,
                          given_keys={key.split(":", 1)[1] for key in config},
                          secret_keys=secure)


PROD_SECRETS = ["dashboard_password", "postgres_password", "prod_db_password",
                "prod_redis_password", "prod_secret_key", "staging_db_password",
                "staging_redis_password"]
STAGING_SECRETS = ["staging_db_password", "staging_redis_password", "staging_secret_key"]


def test_a_first_run_does_everything_and_the_result_passes_the_settings(project):
    before = project.texts()
    result = project.init(*project.flags())
    assert result.returncode == 0, result.stdout + result.stderr
    assert stacks(project.state) == ["acme/aiia/prod", "acme/aiia/staging"]
    secret_sets = [argv for argv in calls(project.state) if argv[:2] == ["config", "set"]]
    assert [argv[-2].split(":")[1] for argv in secret_sets] == PROD_SECRETS + \
        STAGING_SECRETS
    # Each value came on stdin: the command line ends with the key, as `ps` would show it.
    assert all(argv[-1] == "--non-interactive" and argv[-3] == "--secret"
               for argv in secret_sets)
    values = [project.secret("prod", key) for key in PROD_SECRETS] + \
        [project.secret("staging", "staging_secret_key")]
    assert len(set(values)) == len(values) and all(len(value) == 64 for value in values)
    # staging's release reads its passwords from its own stack: the values prod's roles have.
    for key in ("staging_db_password", "staging_redis_password"):
        assert project.secret("staging", key) == project.secret("prod", key)
    for value in values:
        assert value not in result.stdout + result.stderr
    prod, staging = settings_of(project, "prod"), settings_of(project, "staging")
    assert prod.host.ssh.host == staging.host.ssh.host == HOST
    assert prod.host.ssh.host_key == staging.host.ssh.host_key == \
        " ".join(project.vps_key.with_suffix(".pub").read_text().split()[:2])
    assert prod.host.docker_host == f"ssh://deploy@{HOST}"
    assert [env.domain for env in prod.platform.environments] == [
        "api.acme.example", "staging.acme.example"]
    assert prod.platform.status_domain == "status.acme.example"
    assert prod.host.provision.admin_ssh_keys == (
        (project.operator_key.with_suffix(".pub")).read_text().strip(),)
    assert [key.armored for key in prod.platform.backup.keys] == [TEST_BACKUP_KEY]
    assert {release.image for release in (*prod.releases, *staging.releases)} == {
        "ghcr.io/acme/backend"}
    assert staging.platform_stack == "acme/aiia/prod"
    # Every line of the stack files as they were is still there but for the values changed,
    # and the local stack's file is not touched.
    after = project.texts()
    assert after["Pulumi.local.yaml"] == before["Pulumi.local.yaml"]
    for name in ("Pulumi.prod.yaml", "Pulumi.staging.yaml"):
        comments = [line for line in before[name].splitlines() if line.lstrip().startswith("#")]
        assert all(comment in after[name].splitlines() for comment in comments), name
    # What is left, and the DNS records for the three domains.
    assert "What is left, in order" in result.stdout
    for domain in ("api.acme.example.", "staging.acme.example.", "status.acme.example."):
        assert f"{domain} " in result.stdout and f"A     {HOST}" in result.stdout
    assert f"({HOST} has no IPv6 address here" in result.stdout
    assert "adduser --disabled-password --gecos '' deploy" in result.stdout
    assert f"ssh-add {project.operator_key}\n" in result.stdout


def test_the_workflows_read_the_new_names_from_the_stack_files(project):
    assert project.init(*project.flags()).returncode == 0
    for args, printed in ((["org"], "acme"), (["stack-name", "staging"], "acme/aiia/staging"),
                          (["url", "prod"], "https://api.acme.example"),
                          (["url", "staging"], "https://staging.acme.example")):
        result = subprocess.run([sys.executable, "-m", "scripts.stack_file", *args],
                                cwd=project.directory, capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
        assert result.stdout == f"{printed}\n", result.stderr


def test_a_second_run_changes_nothing_and_says_so(project):
    assert project.init(*project.flags()).returncode == 0
    after_first, made = project.texts(), len(calls(project.state))
    second = project.init(*project.flags())
    assert second.returncode == 0, second.stdout + second.stderr
    assert project.texts() == after_first
    again = calls(project.state)[made:]
    assert [argv[:2] for argv in again] == [["whoami", "--non-interactive"],
                                            ["stack", "select"], ["stack", "select"]]
    assert project.keyscans() == 1  # the pinned key is kept, not fetched again
    assert "(written)" not in second.stdout and "generated" not in second.stdout
    assert "Pulumi.prod.yaml host.ssh.host: 203.0.113.10, already set (kept)" in second.stdout
    assert "stack acme/aiia/prod: exists (kept)" in second.stdout
    assert "acme/aiia/prod aiia:postgres_password: already set (kept)" in second.stdout
    assert "init: nothing changed: every stack, value and secret was there already\n" \
        in second.stdout


def test_a_secret_that_is_set_is_never_replaced(project):
    (project.state / "stacks.json").write_text('["acme/aiia/prod"]')
    stack_file = project.directory / "Pulumi.prod.yaml"
    stack_file.write_text(stack_file.read_text()
                          + "  aiia:postgres_password:\n    secure: v1:c2V0LWJ5LWhhbmQ=\n")
    result = project.init(*project.flags())
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.secret("prod", "postgres_password") == "set-by-hand"
    set_keys = [argv[-2] for argv in calls(project.state) if argv[:2] == ["config", "set"]]
    assert "aiia:postgres_password" not in set_keys and "aiia:prod_db_password" in set_keys
    assert "acme/aiia/prod aiia:postgres_password: already set (kept)" in result.stdout
    assert "stack acme/aiia/prod: exists (kept)" in result.stdout
    assert "stack acme/aiia/staging: created" in result.stdout


def test_an_environments_password_already_in_prod_is_copied_to_its_own_stack(project):
    """A stack set up before environments read their own passwords: prod holds staging's
    database password (its role was made with it); staging's stack gets that value, not a
    new one its release would fail to log in with."""
    (project.state / "stacks.json").write_text('["acme/aiia/prod"]')
    stack_file = project.directory / "Pulumi.prod.yaml"
    stack_file.write_text(stack_file.read_text()
                          + "  aiia:staging_db_password:\n    secure: v1:cm9sZS1wYXNzd29yZA==\n")
    result = project.init(*project.flags())
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.secret("staging", "staging_db_password") == "role-password"
    assert project.secret("prod", "staging_db_password") == "role-password"
    assert "acme/aiia/staging aiia:staging_db_password: copied from acme/aiia/prod" \
        in result.stdout
    assert "role-password" not in result.stdout + result.stderr


def test_a_wrong_fingerprint_refuses_and_writes_nothing(project):
    before = project.texts()
    other = fingerprint_of(keypair(project.directory.parent, "another").with_suffix(".pub"))
    result = project.init(*project.flags(**{"--host-key-fingerprint": other}))
    assert result.returncode == 2
    assert f"not {other} (--host-key-fingerprint): nothing written" in result.stderr
    assert project.texts() == before
    assert [argv[0] for argv in calls(project.state)] == ["whoami"]
    assert stacks(project.state) == []


def test_a_host_key_other_than_the_pinned_one_is_refused(project):
    assert project.init(*project.flags()).returncode == 0
    pinned = project.texts()
    # staging's pin is gone (a hand edit), so the key is fetched again: the VPS answers with
    # another key than prod's pin.
    stack_file = project.directory / "Pulumi.staging.yaml"
    stack_file.write_text("".join(line for line in stack_file.read_text().splitlines(True)
                                  if "host_key:" not in line))
    project.offer(keypair(project.directory.parent, "impostor"))
    result = project.init(*project.flags(**{"--host-key-fingerprint": None}), "--yes")
    assert result.returncode == 2
    assert "offers a host key other than the one the stack files pin" in result.stderr
    assert project.text("prod") == pinned["Pulumi.prod.yaml"]


def test_without_a_terminal_a_missing_flag_is_named_and_nothing_is_done(project):
    before = project.texts()
    result = project.init(*project.flags(**{"--gpg-key-file": None,
                                            "--host-key-fingerprint": None}))
    assert result.returncode == 2
    assert "give no value for: --gpg-key-file FILE, --host-key-fingerprint SHA256:… (or " \
        "--yes, to accept the key shown); stdin is no terminal" in result.stderr
    # What the stack files hold is no missing flag: the e-mail, the domains, the image.
    assert "--email" not in result.stderr and "--domain" not in result.stderr
    assert project.texts() == before and calls(project.state) == []


def test_a_private_key_given_as_the_public_one_is_refused(project):
    result = project.init(*project.flags(**{"--ssh-key-file": str(project.operator_key)}))
    assert result.returncode == 2
    assert f"--ssh-key-file {project.operator_key} is a PRIVATE key: give its public half " \
        f"({project.operator_key}.pub)" in result.stderr
    assert calls(project.state) == []


def test_a_bad_value_is_refused_by_the_settings_before_anything_is_written(project):
    before = project.texts()
    result = project.init(*project.flags(**{"--status-domain": "api.acme.example"}))
    assert result.returncode == 2
    assert "the stack files would not pass the program's settings; nothing was written" \
        in result.stderr
    assert "aiia:platform.status_domain='api.acme.example' is already" in result.stderr
    assert project.texts() == before and stacks(project.state) == []


def test_a_private_registry_gets_its_block_and_token_in_each_stack(project, tmp_path):
    token = tmp_path / "token"
    token.write_text("ghp_made-up-token\n")
    result = project.init(*project.flags(), "--registry", "ghcr.io", "--registry-user",
                          "acme-deploy", "--registry-password-file", str(token))
    assert result.returncode == 0, result.stdout + result.stderr
    for stack in ("prod", "staging"):
        settings = settings_of(project, stack)
        assert (settings.registry.address, settings.registry.username) == ("ghcr.io",
                                                                           "acme-deploy")
        assert project.secret(stack, "registry_password") == "ghp_made-up-token"
    assert "ghp_made-up-token" not in result.stdout + result.stderr
    assert not [argv for argv in calls(project.state) if "ghp_made-up-token" in argv]


@pytest.mark.parametrize(("stack", "message"), [
    ("local", "local runs on this machine: `make local` sets it up"),
    ("staging", "`make init STACK=prod` sets up that stack and staging together")])
def test_init_of_a_stack_it_does_not_set_up_says_which_command_does(project, stack, message):
    result = subprocess.run([sys.executable, "-m", "scripts.init", "--stack", stack],
                            cwd=project.directory, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1 and message in result.stderr


def test_not_logged_in_to_pulumi_is_said_before_anything_is_written(project):
    (project.state / "logged-out").touch()
    before = project.texts()
    result = project.init(*project.flags())
    assert result.returncode == 2 and "`pulumi login` first" in result.stderr
    assert project.texts() == before


# The questions and the DNS records, without a process

def test_on_a_terminal_each_value_not_given_is_asked_with_the_files_value_as_default():
    asked_questions = [Question("host", "--host HOST", "VPS", "vps.example.com"),
                       Question("email", "--email EMAIL", "E-mail"),
                       Question("ssh_key_file", "--ssh-key-file FILE", "Key", KEEP),
                       Question("registry", "--registry ADDRESS", "Registry", optional=True)]
    asked = []

    def ask(question):
        asked.append(question.name)
        return question.current if question.name != "email" else "ops@example.com"

    answers, missing = resolve(asked_questions, {"host": "203.0.113.10"}, ask)
    assert asked == ["email", "ssh_key_file", "registry"] and missing == []
    assert answers == {"host": "203.0.113.10", "email": "ops@example.com",
                       "ssh_key_file": KEEP, "registry": None}
    # Without a terminal: the files' values, and the flags of what they lack.
    answers, missing = resolve(asked_questions, {}, None)
    assert answers["host"] == "vps.example.com" and missing == ["--email EMAIL"]


def resolver(*addresses: str):
    def resolve(host, port, type=0):  # noqa: A002 - getaddrinfo's own keyword
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in address else socket.AF_INET, type, 6, "",
                 (address, 0)) for address in addresses]
    return resolve


def test_the_dns_records_point_each_domain_at_both_addresses_of_the_vps():
    records = dns_records(["api.example.com", "status.example.com"], "vps.example.com",
                          resolver("203.0.113.10", "2001:db8::10"))
    assert "(vps.example.com is 203.0.113.10, 2001:db8::10)" in records
    assert "api.example.com.     A     203.0.113.10" in records
    assert "status.example.com.  AAAA  2001:db8::10" in records


def test_a_vps_that_does_not_resolve_gets_placeholders_and_says_so():
    records = dns_records(["api.example.com"], "vps.example.com", resolver())
    assert "vps.example.com does not resolve from here" in records
    assert "api.example.com.  A     <the VPS's IPv4 address>" in records
    assert "api.example.com.  AAAA  <its IPv6 address, if it has one>" in records


def test_on_a_terminal_it_asks_for_each_value_and_enter_keeps_the_files_one(project):
    """Through a pseudo-terminal: the questions in order, each with the stack files' value."""
    primary, secondary = os.openpty()
    answers = ["acme", HOST, "api.acme.example", "staging.acme.example",
               "status.acme.example", "", "", f"{project.operator_key}.pub",
               str(project.gpg_key), "", "y"]
    try:
        os.write(primary, "".join(f"{answer}\n" for answer in answers).encode())
        result = subprocess.run(
            [sys.executable, "-m", "scripts.init", "--stack", "prod"], cwd=project.directory,
            stdin=secondary, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT),
                 "PATH": f"{project.bin}:{os.environ['PATH']}"})
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 0, result.stdout + result.stderr
    fingerprint = fingerprint_of(project.vps_key.with_suffix(".pub"))
    for prompt in ("Pulumi organization that holds the stacks [eduaiia]: ",
                   "VPS address (host name or IP address) [vps.eduaiia.com]: ",
                   "Domain of staging [staging-api.eduaiia.com]: ",
                   "E-mail for Let's Encrypt's notices [ops@eduaiia.com]: ",
                   "Your GPG public key file (gpg --armor --export <id> > me.asc): ",
                   "Registry of a private app image, e.g. ghcr.io [Enter: none]: ",
                   f"Is {fingerprint} the ED25519 fingerprint your provider's console shows"):
        assert prompt in result.stdout
    prod = settings_of(project, "prod")
    assert prod.platform.tls.email == "ops@eduaiia.com"  # Enter kept the stack file's
    assert prod.releases[0].image == "ghcr.io/eduaiia/aiia-backend"
    assert prod.platform.status_domain == "status.acme.example"
    assert settings_of(project, "staging").platform_stack == "acme/aiia/prod"


def test_init_generates_a_password_per_operator_and_no_shared_one():
    """platform.dashboard.operators (review L3): `make init` generates what the settings read."""
    import yaml

    from scripts.init.stack_secrets import secrets_to_generate

    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    document["config"]["aiia:platform"]["dashboard"] = {"operators": ["alice", "bob"]}
    generated = secrets_to_generate("prod", yaml.safe_dump(document))
    assert "dashboard_password_alice" in generated and "dashboard_password_bob" in generated
    assert "dashboard_password" not in generated
