"""Test scaffolding: a stand-in for the Pulumi CLI's stack and config commands, for make init
(scripts/init/), which the CLI cannot run here.

Not Pulumi. It keeps the stacks of a made-up backend in `stacks.json` and records every call
(its arguments, and how many bytes came on stdin, never the bytes) in `calls.jsonl`, both in
the directory its wrapper names. What it imitates, from the CLI (pulumi/pulumi,
pkg/cmd/pulumi):

- `whoami`: the user's name; "not logged in" when the directory holds a file `logged-out`.
- `stack select NAME`: exit 0 when the stack exists, else an error (stack/stack_select.go).
- `stack init NAME`: creates it; an error when it exists (stack/stack_init.go).
- `config set -s NAME [--secret] KEY [VALUE]`: without VALUE and with stdin not a terminal,
  the value is all of stdin, one trailing newline removed (config/config.go,
  newConfigSetCmd: `io.ReadAll(os.Stdin)`, `cmdutil.RemoveTrailingNewline`); a secret is
  written into Pulumi.<stack>.yaml, the stack's short name, as `KEY: {secure: v1:…}`.
- `config get -s NAME KEY`: a secret's value, decrypted, and a newline
  (config/config.go, newConfigGetCmd); an error naming the key when the file lacks it.
- `--non-interactive` anywhere is accepted and changes nothing here.

What it does not imitate: encryption (`v1:` + base64 of the value stands for the
ciphertext, so that a test can read back what was set), Pulumi's rewriting of the whole stack
file (a new secret is appended at the end of `config:`, the rest left as it was), and any
other command (exit 2, naming it).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import yaml

STATE_VARIABLE = "AIIA_PULUMI_STANDIN_STATE"


def ciphertext(value: str) -> str:
    return "v1:" + base64.b64encode(value.encode()).decode()


def plaintext(secure: str) -> str:
    return base64.b64decode(secure.removeprefix("v1:")).decode()


def wrapper(state: Path, root: Path) -> str:
    """The `pulumi` script a test puts first on PATH."""
    return ("#!/bin/sh\n# TEST STAND-IN for the Pulumi CLI: "
            "tests/harness/pulumi_stacks_standin.py\n"
            f"export {STATE_VARIABLE}='{state}' PYTHONPATH='{root}'\n"
            f"exec '{sys.executable}' -m tests.harness.pulumi_stacks_standin \"$@\"\n")


def calls(state: Path) -> list[list[str]]:
    path = state / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["argv"] for line in path.read_text().splitlines()]


def stacks(state: Path) -> list[str]:
    path = state / "stacks.json"
    return json.loads(path.read_text()) if path.exists() else []


def _stack_command(state: Path, verb: str, name: str) -> int:
    known = stacks(state)
    if verb == "select":
        if name in known:
            return 0
        print(f"error: no stack named '{name}' found", file=sys.stderr)
        return 255
    if name in known:
        print(f"error: stack '{name}' already exists", file=sys.stderr)
        return 255
    (state / "stacks.json").write_text(json.dumps([*known, name]))
    print(f"Created stack '{name}'")
    return 0


def _set_secret(state: Path, name: str, key: str, value: str) -> int:
    if name not in stacks(state):
        print(f"error: no stack named '{name}' found", file=sys.stderr)
        return 255
    path = Path.cwd() / f"Pulumi.{name.split('/')[-1]}.yaml"
    text = path.read_text() if path.exists() else "config:\n"
    document = yaml.safe_load(text) or {}
    if list(document) != ["config"] or key in (document.get("config") or {}):
        print(f"error: the stand-in appends new keys to a file of `config:` alone ({key})",
              file=sys.stderr)
        return 2
    ending = "" if text.endswith("\n") else "\n"
    path.write_text(f"{text}{ending}  {key}:\n    secure: {ciphertext(value)}\n")
    return 0


def _config_set(state: Path, argv: list[str], stdin: str | None) -> int:
    words = [word for word in argv if word != "--secret"]
    if "-s" not in words or "--secret" not in argv:
        print("error: the stand-in models `config set -s STACK --secret KEY` only",
              file=sys.stderr)
        return 2
    at = words.index("-s")
    name, rest = words[at + 1], words[:at] + words[at + 2:]
    if len(rest) == 2:
        value = rest[1]
    elif stdin is not None:
        value = stdin[:-1] if stdin.endswith("\n") else stdin
    else:
        print("error: config value must be specified in non-interactive mode", file=sys.stderr)
        return 255
    return _set_secret(state, name, rest[0], value)


def _config_get(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "-s":
        print("error: the stand-in models `config get -s STACK KEY` only", file=sys.stderr)
        return 2
    name, key = argv[1], argv[2]
    path = Path.cwd() / f"Pulumi.{name.split('/')[-1]}.yaml"
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {} \
        if path.exists() else {}
    value = config.get(key)
    if not isinstance(value, dict) or "secure" not in value:
        print(f"error: configuration key '{key}' not found for stack '{name}'",
              file=sys.stderr)
        return 255
    print(plaintext(value["secure"]))
    return 0


def handle(state: Path, argv: list[str], stdin: str | None) -> int:
    argv = [word for word in argv if word != "--non-interactive"]
    match argv:
        case ["whoami"]:
            if (state / "logged-out").exists():
                print("error: PULUMI_ACCESS_TOKEN must be set for login during "
                      "non-interactive CLI sessions", file=sys.stderr)
                return 255
            print("test-operator")
            return 0
        case ["stack", ("select" | "init") as verb, name]:
            return _stack_command(state, verb, name)
        case ["config", "set", *rest]:
            return _config_set(state, rest, stdin)
        case ["config", "get", *rest]:
            return _config_get(rest)
    print(f"error: the test stand-in does not model `pulumi {' '.join(argv)}`", file=sys.stderr)
    return 2


def main() -> int:
    state = Path(os.environ[STATE_VARIABLE])
    stdin = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    with (state / "calls.jsonl").open("a") as log:
        log.write(json.dumps({"argv": sys.argv[1:], "stdin_bytes": len(stdin or "")}) + "\n")
    return handle(state, sys.argv[1:], stdin)


if __name__ == "__main__":
    sys.exit(main())
