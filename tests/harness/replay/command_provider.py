"""The command provider: pulumi-command v1.2.1's `command:local:Command` and
`command:remote:Command`, run for real.

- `command:local:Command` (`provider/pkg/provider/common/` and `local/`): only a change of
  `triggers` replaces (the SDK sets `replaceOnChanges: ["triggers[*]"]`:
  `REPLACE_ON_CHANGES`, applied in steps.py); any other change is an update that runs
  `update` (or `create` when `update` is unset); `delete` runs with the stdin and
  environment stored in state; stdin is attached only when non-empty; the interpreter
  defaults to `/bin/sh -c`; the environment is added to the provider's own.
- `command:remote:Command` (`remote/commandOutputs.go`, `remote/connection.go`): the same
  create/update/delete and triggers as local, each run over a new SSH connection with the
  system `ssh` (the server runs it with the user's shell, as a session's `Run` does); stdin
  attached only when non-empty; the host key checked only when the connection's `host_key`
  is set (else any key is accepted: `InsecureIgnoreHostKey`); a failed dial or handshake
  retried up to `dial_error_limit` times (`Dial`'s retry.Until), never a command that ran;
  delete runs with the connection and stdin of the state. A password, agent socket or
  bastion in the connection fails by name.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness.program import RecordedResource
from tests.harness.replay.errors import ReplayError, check_inputs

MAPPED_IN = "tests/harness/replay/command_provider.py"

LOCAL_COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
COMMANDS = (LOCAL_COMMAND, REMOTE_COMMAND)
# pulumi-command: replaceOnChanges ["triggers[*]"]; everything else updates.
REPLACE_ON_CHANGES = "triggers"
COMMAND_INPUTS = {"create", "update", "delete", "stdin", "triggers", "interpreter",
                  "environment", "dir"}
REMOTE_COMMAND_INPUTS = {"connection", "create", "update", "delete", "stdin", "triggers"}
# pulumi-command 1.2.1 remote/connection.go: the fields the replay maps to `ssh` options;
# a password, an agent socket path or a proxy (bastion) fails by name.
CONNECTION_INPUTS = {"host", "port", "user", "host_key", "private_key", "dial_error_limit",
                     "per_dial_timeout"}
# What `ssh` says when the connection or its handshake failed before any command ran.
DIAL_FAILURE = re.compile(r"kex_exchange_identification|Connection (reset|refused|closed) by|"
                          r"Connection timed out|ssh_exchange_identification|"
                          r"Could not resolve hostname")


def run(resource: RecordedResource, inputs: dict, action: str, ssh_identity: Path | None,
        say: Callable[[str], None]) -> dict:
    """A command's create or update (`action`): its output and the inputs its delete needs.
    `ssh_identity` is the key an ssh-agent would offer; `say` logs a failed dial."""
    if resource.type == LOCAL_COMMAND:
        return run_local(resource, inputs, action)
    return run_remote(resource, inputs, action, ssh_identity, say)


def delete(name: str, type_: str, inputs: dict, real: dict, ssh_identity: Path | None,
           say: Callable[[str], None]) -> None:
    """A command's delete, if it has one, with what the state stored of its inputs."""
    if type_ == REMOTE_COMMAND and inputs.get("delete"):
        # pulumi-command: delete runs with the connection and stdin of the state.
        stored = real.get("inputs", {})
        ssh(name, stored["connection"], stored.get("delete") or inputs["delete"],
            stored.get("stdin"), ssh_identity, say)
    elif type_ == LOCAL_COMMAND and inputs.get("delete"):
        # pulumi-command: delete gets the stdin and environment of the state.
        stored = real.get("inputs", {})
        run_script(name, stored.get("delete") or inputs["delete"],
                   stored.get("stdin"), stored.get("interpreter"),
                   stored.get("environment"), stored.get("dir"))


# --------------------------------------------------------------------- local


def run_local(resource: RecordedResource, inputs: dict, action: str) -> dict:
    check_inputs(resource, inputs, COMMAND_INPUTS, MAPPED_IN)
    script = inputs.get(action) or inputs["create"]
    output = run_script(resource.name, script, inputs.get("stdin"),
                        inputs.get("interpreter"), inputs.get("environment"),
                        inputs.get("dir"))
    stored = {key: inputs.get(key) for key in
              ("delete", "stdin", "interpreter", "environment", "dir")}
    return {"stdout": output, "inputs": stored}


def run_script(name: str, script: str, stdin: str | None,
               interpreter: list[str] | None, environment: dict | None = None,
               directory: str | None = None) -> str:
    command = [*(interpreter or ["/bin/sh", "-c"]), script]
    # pulumi-command local: stdin is attached only when non-empty.
    result = subprocess.run(command, input=stdin if stdin else None,
                            stdin=None if stdin else subprocess.DEVNULL,
                            capture_output=True, text=True,
                            timeout=600, env={**os.environ, **(environment or {})},
                            cwd=directory, check=False)
    if result.returncode != 0:
        raise ReplayError(f"{name}: command failed ({result.returncode})\n"
                          f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}")
    return result.stdout


# --------------------------------------------------------------------- remote


def run_remote(resource: RecordedResource, inputs: dict, action: str,
               ssh_identity: Path | None, say: Callable[[str], None]) -> dict:
    check_inputs(resource, inputs, REMOTE_COMMAND_INPUTS, MAPPED_IN)
    connection = inputs["connection"]
    unknown = sorted(set(connection) - CONNECTION_INPUTS)
    if unknown:
        raise ReplayError(f"{resource.name}: connection input(s) {', '.join(unknown)} not "
                          f"understood by the replay; map them in {MAPPED_IN}")
    script = inputs.get(action) or inputs["create"]
    output = ssh(resource.name, connection, script, inputs.get("stdin"), ssh_identity, say)
    stored = {key: inputs.get(key) for key in ("connection", "delete", "stdin")}
    return {"stdout": output, "inputs": stored}


def ssh(name: str, connection: dict, script: str, stdin: str | None,
        ssh_identity: Path | None, say: Callable[[str], None]) -> str:
    """One command over a new SSH connection, as pulumi-command 1.2.1 runs it
    (remote/commandOutputs.go: a session's `Run(cmd)`, which the server runs with the
    user's shell; stdin attached only when non-empty; the host key checked only when
    `host_key` is set, else any key accepted: connection.go's InsecureIgnoreHostKey).
    The key is the connection's `private_key`, else `ssh_identity` (what the agent
    would hold). Not modelled: the provider leaving the connection open afterwards."""
    host, port = connection["host"], int(connection.get("port") or 22)
    with tempfile.TemporaryDirectory(prefix="aiia-replay-ssh-") as scratch:
        options = ["-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null",
                   "-o", f"ConnectTimeout={connection.get('per_dial_timeout') or 15}",
                   "-o", "IdentitiesOnly=yes", "-p", str(port)]
        if connection.get("host_key"):
            known = Path(scratch, "known_hosts")
            address = host if port == 22 else f"[{host}]:{port}"
            known.write_text(f"{address} {connection['host_key']}\n")
            options += ["-o", "StrictHostKeyChecking=yes",
                        "-o", f"UserKnownHostsFile={known}"]
        else:
            options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        identity = ssh_identity
        if connection.get("private_key"):
            identity = Path(scratch, "identity")
            identity.write_text(connection["private_key"])
            identity.chmod(0o600)
        if identity is None:
            raise ReplayError(f"{name}: no SSH key: give the connection a private_key or "
                              "the Replay an ssh_identity")
        options += ["-i", str(identity)]
        user = connection.get("user") or "root"
        # connection.go `Dial`: a failed dial or handshake is retried (retry.Until) until
        # `dial_error_limit` dials failed; a command that ran is never retried.
        for dial in range(1, int(connection.get("dial_error_limit") or 10) + 1):
            result = subprocess.run(
                ["ssh", *options, f"{user}@{host}", script],
                input=stdin if stdin else None,
                stdin=None if stdin else subprocess.DEVNULL,
                capture_output=True, text=True, timeout=600, check=False)
            if result.returncode != 255 or not DIAL_FAILURE.search(result.stderr):
                break
            say(f"{name}: dial {dial} failed ({result.stderr.strip()[-120:]})")
            time.sleep(min(dial, 5))
    if result.returncode != 0:
        raise ReplayError(f"{name}: command failed ({result.returncode}) over SSH\n"
                          f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}")
    return result.stdout
