"""The order of make init (scripts/init/__init__.py) and what it prints at the end."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import Any

from scripts.init import Refused, operator_keys
from scripts.init.dns import dns_records
from scripts.init.host_key import Target, confirm_on_terminal, pinned_keys, trusted_host_key
from scripts.init.plan import Plan, check_org, edited, plan
from scripts.init.pulumi_stacks import check_login, ensure_stack, get_secret, set_secret
from scripts.init.questions import (
    Ask,
    ask_on_terminal,
    given_answers,
    questions,
    registry_questions,
    resolve,
)
from scripts.init.stack_secrets import (
    SECRET_BYTES,
    Secrets,
    check_settings,
    held_secrets,
    registry_token,
    secrets_read,
    secrets_to_generate,
    token_needed,
)
from scripts.init.stacks import Stacks, environments, load_stacks, value_or_none
from scripts.stack_file import DeliveryError, project_name


def collect(stacks: Stacks, args: argparse.Namespace, ask: Ask | None) -> dict[str, Any]:
    """Every answer, or Refused naming each flag missing (nothing is done then)."""
    given = given_answers(args, stacks)
    answers, missing = resolve(questions(stacks), given, ask)
    more, missing_more = resolve(registry_questions(stacks, answers.get("registry")), given,
                                 ask)
    answers |= more
    missing += missing_more
    target = target_of(answers, args, stacks)
    pinned, lacking = pinned_keys(stacks, target)
    if lacking and not pinned and ask is None and not (args.yes or args.host_key_fingerprint):
        missing.append("--host-key-fingerprint SHA256:… (or --yes, to accept the key shown)")
    if answers.get("registry") and args.registry_password_file is None and ask is None \
            and any(token_needed(stack, text) for stack, text in stacks.texts.items()):
        missing.append("--registry-password-file FILE (the registry's token; - for stdin)")
    if missing:
        raise Refused("the flags and the stack files give no value for: "
                      f"{', '.join(missing)}; stdin is no terminal to ask on, so give them "
                      f"(make init STACK={stacks.platform} ARGS='…'); nothing was done")
    return answers


def target_of(answers: dict[str, Any], args: argparse.Namespace, stacks: Stacks) -> Target:
    ssh = value_or_none(stacks.config(stacks.platform), "host.ssh") or {}
    port = args.ssh_port if args.ssh_port is not None else int(ssh.get("port", 22))
    return Target(str(answers["host"]), port, args.ssh_user, args.ssh_port is not None)


def run(args: argparse.Namespace, interactive: bool) -> int:
    stacks = load_stacks(Path.cwd(), args.stack)
    answers = collect(stacks, args, ask_on_terminal if interactive else None)
    keys = operator_keys.read(answers)
    check_org(str(answers["org"]))
    target = target_of(answers, args, stacks)
    print(f"init: logged in to Pulumi as {check_login()}")
    pinned, lacking = pinned_keys(stacks, target)
    key = (trusted_host_key(target, pinned, args, confirm_on_terminal if interactive else None)
           if lacking else next(iter(pinned)))
    planned = plan(stacks, answers, keys, target, key)
    texts, report = edited(stacks, planned)
    secrets_plan = Secrets({stack: secrets_to_generate(stack, texts[stack])
                            for stack in stacks.names},
                           registry_token(args, any(token_needed(stack, texts[stack])
                                                    for stack in stacks.names), interactive))
    problems = [f"{stack}: {problem}" for stack in stacks.names for problem in
                check_settings(stack, texts[stack], secrets_plan.set_in(stack, texts[stack]))]
    if problems:
        raise Refused("the stack files would not pass the program's settings; nothing was "
                      "written:\n" + "\n".join(f"  - {problem}" for problem in problems))
    apply(stacks, planned, texts, report, secrets_plan)
    return finish(stacks, answers, target)


def apply(stacks: Stacks, planned: Plan, texts: dict[str, str], report: list[str],
          secrets_plan: Secrets) -> None:
    project = project_name(stacks.directory)
    names = {stack: f"{planned.org}/{project}/{stack}" for stack in stacks.names}
    print("init: the stacks")
    lines = [ensure_stack(names[stack]) for stack in stacks.names]
    print("\n".join([*lines, "init: the stack files", *report]))
    for stack in stacks.names:
        if texts[stack] != stacks.texts[stack]:
            stacks.path(stack).write_text(texts[stack])
    print("init: the secrets (never shown; `pulumi config get -s STACK KEY` shows one)")
    shared = SharedSecrets({stack: (names[stack], held_secrets(texts[stack]))
                            for stack in stacks.names})
    lines += [line for stack in stacks.names
              for line in _set_secrets(stack, names[stack], texts[stack], secrets_plan, shared)]
    changed = [line for line in [*lines, *report] if not line.endswith(KEPT)]
    print(f"init: {len(changed)} change(s)" if changed
          else "init: nothing changed: every stack, value and secret was there already")


KEPT = "(kept)"  # how a line that changed nothing ends


class SharedSecrets:
    """A key two stacks read is one value: prod's makes the role or the ACL user with an
    environment's password, the environment's own stack gives it to its release. A key to
    generate is copied from a stack that holds it already, or generated once for all."""

    def __init__(self, held: dict[str, tuple[str, set[str]]]) -> None:
        self.held = held  # by stack: its full name and the secrets its file holds
        self.values: dict[str, str] = {}  # by key: what this run set

    def value(self, stack: str, key: str) -> tuple[str, str]:
        """The value, and how it came, as the report says it."""
        if key in self.values:
            return self.values[key], "the same value as above"
        holder = next((name for other, (name, keys) in self.held.items()
                       if other != stack and key in keys), None)
        if holder:
            value, origin = get_secret(holder, key), f"copied from {holder}"
        else:
            value, origin = secrets.token_hex(SECRET_BYTES), "generated"
        self.values[key] = value
        return value, origin


def _set_secrets(stack: str, name: str, text: str, secrets_plan: Secrets,
                 shared: SharedSecrets) -> list[str]:
    lines = []
    for key in sorted(secrets_read(stack, text)):
        if key in secrets_plan.generate[stack]:
            value, origin = shared.value(stack, key)
            set_secret(name, key, value)
            lines.append(f"  {name} aiia:{key}: {origin}")
        elif key == "registry_password" and secrets_plan.token and token_needed(stack, text):
            set_secret(name, key, secrets_plan.token)
            lines.append(f"  {name} aiia:{key}: set (the token given)")
        else:
            lines.append(f"  {name} aiia:{key}: already set {KEPT}")
        print(lines[-1])
    return lines


def finish(stacks: Stacks, answers: dict[str, Any], target: Target) -> int:
    """The settings over what was written, and what is left to do."""
    problems = []
    for stack in stacks.names:
        text = stacks.texts[stack] = stacks.path(stack).read_text()
        problems += [f"{stack}: {problem}" for problem in
                     check_settings(stack, text, held_secrets(text))]
    if problems:
        print("init: the stack files do not pass the program's settings yet:\n"
              + "\n".join(f"  - {problem}" for problem in problems), file=sys.stderr)
        return 1
    print(f"init: {', '.join(stacks.names)} pass the program's settings (as at preview)")
    print(left_to_do(stacks, answers, target))
    return 0


def _domains(stacks: Stacks) -> list[str]:
    platform = stacks.config(stacks.platform)
    keys = [f"platform.environments.{env}.domain" for env in environments(stacks)]
    return [str(value_or_none(platform, key)) for key in [*keys, "platform.status_domain"]]


def left_to_do(stacks: Stacks, answers: dict[str, Any], target: Target) -> str:
    platform = stacks.config(stacks.platform)
    user = target.user or value_or_none(platform, "host.ssh.user") or "deploy"
    keys = value_or_none(platform, "host.provision.admin_ssh_keys") or ["<your SSH public key>"]
    private = str(answers.get("ssh_key_file") or "~/.ssh/id_ed25519.pub").removesuffix(".pub")
    files = " ".join(stacks.path(stack).name for stack in stacks.names)
    return "\n".join([
        "What is left, in order (README.md, \"First prod in one page\"):",
        f"  1. On the VPS (Debian 12), as root once, the user {user} that the program logs in",
        "     as from its first command, with your key and passwordless sudo (or your",
        "     provider's cloud-init `users:`):",
        f"       adduser --disabled-password --gecos '' {user} && usermod -aG sudo {user}",
        f"       install -d -m 700 -o {user} -g {user} /home/{user}/.ssh",
        f"       echo '{keys[0]}' > /home/{user}/.ssh/authorized_keys",
        f"       chown {user}: /home/{user}/.ssh/authorized_keys",
        f"       echo '{user} ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/aiia-{user}",
        "  2. These DNS records, at your DNS provider (certificates are issued once they",
        "     point at the VPS; until then nginx serves a self-signed one):",
        dns_records(_domains(stacks), target.host),
        f"  3. Your key in ssh-agent, for Pulumi's SSH and Docker connections: ssh-add {private}",
        f"  4. Commit {files} (the workflows read them): git add {files} && git commit",
        f"  5. make preview STACK={stacks.platform}, make up STACK={stacks.platform}, then "
        + ", ".join(f"make up STACK={reader}" for reader in stacks.readers),
        "  6. GitHub's side: docs/runbooks.md, \"The delivery pipeline\" (environments, deploy",
        "     keys, Pulumi tokens; Slack optional), then python3 -m scripts.github_settings",
        "     check OWNER/REPO",
    ])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m scripts.init",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="prod", help="the stack that owns the platform")
    parser.add_argument("--org", help="the Pulumi organization that holds the stacks")
    parser.add_argument("--host", help="the VPS's address (host name or IP)")
    parser.add_argument("--domain", action="append", default=[], metavar="ENV=DOMAIN",
                        help="an environment's domain, once per environment")
    parser.add_argument("--status-domain", help="the status dashboard's domain")
    parser.add_argument("--email", help="the e-mail Let's Encrypt writes to")
    parser.add_argument("--image", help="the app's image repository, without a tag")
    parser.add_argument("--ssh-key-file", help="your SSH public key (host.provision)")
    parser.add_argument("--gpg-key-file", help="your armored GPG public key (the backups')")
    parser.add_argument("--registry", help="a private image's registry, e.g. ghcr.io")
    parser.add_argument("--registry-user", help="the registry user the token belongs to")
    parser.add_argument("--registry-password-file", help="a file holding the registry's "
                        "token; - reads it from stdin")
    parser.add_argument("--ssh-user", help="the user the program logs in as (deploy)")
    parser.add_argument("--ssh-port", type=int, help="the VPS's SSH port (22)")
    parser.add_argument("--host-key-fingerprint", metavar="SHA256:…",
                        help="the fingerprint the provider's console shows for the VPS")
    parser.add_argument("--yes", action="store_true",
                        help="accept the host key fetched, its fingerprint unchecked")
    parser.add_argument("--non-interactive", action="store_true",
                        help="ask nothing, even on a terminal")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interactive = not args.non_interactive and sys.stdin.isatty()
    try:
        return run(args, interactive)
    except Refused as error:
        print(f"init: {error}", file=sys.stderr)
        return 2
    except DeliveryError as error:
        print(f"init: {error}\n(what is done stays done: run it again once this is fixed)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
