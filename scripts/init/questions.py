"""Each value make init writes, from its flag, else (on a terminal) a question that shows the
stack files' value, else the stack files; those with none are named as missing flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scripts.init import Refused
from scripts.init.stacks import Stacks, environments, value_or_none
from scripts.stack_file import DeliveryError, organization

KEEP = ""  # a key file's answer that adds no key (those the stack file holds stay)


@dataclass(frozen=True)
class Question:
    name: str
    flag: str
    prompt: str
    current: Any = None  # the stack files' value; None: they hold none
    optional: bool = False


def _current_org(stacks: Stacks) -> str | None:
    try:
        return organization(stacks.directory)
    except DeliveryError:
        return None


def _key_file_question(name: str, flag: str, prompt: str, held: Any) -> Question:
    """A key file: KEEP when the stack file holds keys already."""
    return Question(name, flag, prompt, KEEP if held else None)


def questions(stacks: Stacks) -> list[Question]:
    platform = stacks.config(stacks.platform)
    asked = [Question("org", "--org ORG", "Pulumi organization that holds the stacks",
                      _current_org(stacks)),
             Question("host", "--host HOST", "VPS address (host name or IP address)",
                      value_or_none(platform, "host.ssh.host"))]
    asked += [Question(f"domain:{env}", f"--domain {env}=DOMAIN", f"Domain of {env}",
                       value_or_none(platform, f"platform.environments.{env}.domain"))
              for env in environments(stacks)]
    return asked + [
        Question("status_domain", "--status-domain DOMAIN", "Domain of the status dashboard",
                 value_or_none(platform, "platform.status_domain")),
        Question("email", "--email EMAIL", "E-mail for Let's Encrypt's notices",
                 value_or_none(platform, "platform.tls.email")),
        Question("image", "--image REPOSITORY", "The app's image repository, without a tag",
                 next(iter(_release_images(stacks)), None)),
        _key_file_question("ssh_key_file", "--ssh-key-file FILE",
                           "Your SSH public key file (e.g. ~/.ssh/id_ed25519.pub)",
                           value_or_none(platform, "host.provision.admin_ssh_keys")),
        _key_file_question("gpg_key_file", "--gpg-key-file FILE",
                           "Your GPG public key file (gpg --armor --export <id> > me.asc)",
                           value_or_none(platform, "platform.backup.recipients")),
        Question("registry", "--registry ADDRESS", "Registry of a private app image, e.g. "
                 "ghcr.io", value_or_none(platform, "registry.address"), optional=True),
    ]


def _release_images(stacks: Stacks) -> list[str]:
    return [str(release["image"]) for stack in stacks.names
            for release in (stacks.config(stack).get("aiia:releases") or {}).values()
            if isinstance(release, dict) and release.get("image")]


def given_answers(args: argparse.Namespace, stacks: Stacks) -> dict[str, str]:
    """The values given as flags, by question name."""
    given = {name: getattr(args, name) for name in (
        "org", "host", "status_domain", "email", "image", "ssh_key_file", "gpg_key_file",
        "registry", "registry_user") if getattr(args, name) is not None}
    known = environments(stacks)
    for item in args.domain:
        env, _, domain = item.partition("=")
        if env not in known or not domain:
            raise Refused(f"--domain {item}: give ENV=DOMAIN for an environment the platform "
                          f"serves ({', '.join(known)}), e.g. --domain {known[0]}=api.example.com")
        given[f"domain:{env}"] = domain
    return given


Ask = Callable[[Question], Any]


def resolve(asked: list[Question], given: dict[str, str],
            ask: Ask | None) -> tuple[dict[str, Any], list[str]]:
    """Each question's answer: its flag's value, else (with `ask`) the person's, else the
    stack files'; and the flags of those with none (and not optional)."""
    answers, missing = {}, []
    for question in asked:
        if question.name in given:
            answers[question.name] = given[question.name]
        elif ask is not None:
            answers[question.name] = ask(question)
        elif question.current is not None or question.optional:
            answers[question.name] = question.current
        else:
            missing.append(question.flag)
    return answers, missing


def registry_questions(stacks: Stacks, registry: str | None) -> list[Question]:
    if not registry:
        return []
    current = value_or_none(stacks.config(stacks.platform), "registry.username")
    return [Question("registry_user", "--registry-user USER",
                     f"User (or organization) that the token for {registry} belongs to",
                     current)]


def ask_on_terminal(question: Question) -> Any:
    """A question on the terminal; Enter keeps the stack files' value."""
    if question.current == KEEP:
        hint = " [Enter: keep the keys the stack file holds]"
    elif question.current is not None:
        hint = f" [{question.current}]"
    else:
        hint = " [Enter: none]" if question.optional else ""
    while True:
        try:
            answer = input(f"{question.prompt}{hint}: ").strip()
        except EOFError:
            raise Refused(f"no answer for {question.flag.split()[0]}") from None
        if answer or question.current is not None or question.optional:
            return answer or question.current
        print(f"  needed (or give {question.flag})")

