"""Test scaffolding: a stand-in for the Pulumi CLI that the delivery scripts find on PATH.

Not Pulumi. The delivery scripts (scripts/release.py, scripts/rollback.py) run
`pulumi up -s STACK --yes --non-interactive` in the repository that holds the stack files;
the Pulumi CLI cannot run on our machines, so the e2e test puts this stand-in first on
PATH. It forwards the command, over a Unix socket, to the test process, which holds the
replay (tests/harness/replay/replay.py) and its state between runs, as Pulumi's backend would.
There, `up -s STACK` reads the config from `Pulumi.STACK.yaml` in the working directory
(the `config:` map, as the CLI reads a stack file), runs the program under mocks with it
and replays the difference onto the engine: a failed update (ReplayError) exits 1 with
its message, like a failed `pulumi up`. `config get -s STACK KEY` prints one of the test
stack's secrets (the CLI would decrypt it from the stack file; the test stack keeps them
in memory), exit 1 "configuration key … not found" otherwise. Any other command exits 2
naming itself: the stand-in models these two only.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOCKET_VARIABLE = "AIIA_PULUMI_STANDIN_SOCKET"


def parse_up(argv: list[str]) -> str:
    """The stack of `up -s STACK [--yes] [--non-interactive] …`; ValueError otherwise."""
    if not argv or argv[0] != "up":
        raise ValueError(f"the test stand-in for pulumi models `up` and `config get` only, "
                         f"not {argv!r}")
    if "-s" not in argv or argv.index("-s") + 1 >= len(argv):
        raise ValueError("pulumi up needs -s STACK here (the scripts always name the stack)")
    if "--yes" not in argv:
        raise ValueError("pulumi up without --yes would ask for confirmation")
    return argv[argv.index("-s") + 1]


class PulumiStandIn:
    """Serves `pulumi up` for a directory of stack files: `up(stack, config)` does the
    update (the test's LocalStack.up) and raises on failure. `bin_dir` goes first on PATH."""

    def __init__(self, directory: Path, up: Callable[[str, dict], None],
                 secrets: dict[str, str] | None = None):
        self.directory = directory
        self.secrets = secrets or {}
        self.socket_path = directory / "pulumi-standin.sock"
        self.bin_dir = directory / "bin"
        self.calls: list[list[str]] = []
        self._up = up
        self._server: socketserver.UnixStreamServer | None = None

    def __enter__(self) -> PulumiStandIn:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        stand_in = self.bin_dir / "pulumi"
        stand_in.write_text(
            "#!/bin/sh\n# TEST STAND-IN for the Pulumi CLI: tests/harness/pulumi_standin.py\n"
            f"export {SOCKET_VARIABLE}='{self.socket_path}' PYTHONPATH='{ROOT}'\n"
            f"exec '{sys.executable}' -m tests.harness.pulumi_standin \"$@\"\n")
        stand_in.chmod(0o755)
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                # The program runs under Pulumi's mocks, which need an event loop of the
                # thread's own (the main thread's is the test's).
                asyncio.set_event_loop(asyncio.new_event_loop())
                request = json.loads(self.rfile.readline())
                code, output = owner.handle(request["argv"], Path(request["cwd"]))
                self.wfile.write(json.dumps({"exit": code, "output": output}).encode() + b"\n")

        self._server = socketserver.UnixStreamServer(str(self.socket_path), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        self.socket_path.unlink(missing_ok=True)

    def environment(self) -> dict[str, str]:
        return {"PATH": f"{self.bin_dir}:{os.environ['PATH']}"}

    def handle(self, argv: list[str], cwd: Path) -> tuple[int, str]:
        from tests.harness.replay import ReplayError

        self.calls.append(argv)
        if argv[:2] == ["config", "get"] and len(argv) == 5 and argv[2] == "-s":
            key = argv[4]
            if key not in self.secrets:
                return 1, f"error: configuration key '{key}' not found for stack '{argv[3]}'"
            return 0, self.secrets[key]
        try:
            stack = parse_up(argv)
        except ValueError as error:
            return 2, f"error: {error}"
        path = cwd / f"Pulumi.{stack}.yaml"
        if not path.is_file():
            return 255, f"error: no stack named '{stack}' found ({path} is missing)"
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        try:
            self._up(stack, config)
        except ReplayError as error:
            return 1, f"error: update failed\n{error}"
        return 0, f"Update of {stack} succeeded (test stand-in: replayed onto the engine)"


def main() -> int:
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(os.environ[SOCKET_VARIABLE])
        connection.sendall(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd()}).encode()
                           + b"\n")
        reply = json.loads(connection.makefile().readline())
    print(reply["output"], file=sys.stdout if reply["exit"] == 0 else sys.stderr)
    return reply["exit"]


if __name__ == "__main__":
    sys.exit(main())
