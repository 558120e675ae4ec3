"""The command the deploy job runs on the host to hold it for its stack (scripts/host-lease.sh).

    python3 -m scripts.host_lease prod "deploy of prod (GitHub run 123)"

Prints the remote command: the lease every host command of the program takes
(components/host/lease.py), for the stack the stack file names, around a body that says
"host held" and then waits for the end of its standard input; with sudo when the stack logs
in as another user than root, as the program's commands do.
"""

from __future__ import annotations

import shlex
import sys

from components.host.lease import HostLease, host_lease_directory, under_lease
from components.settings.host import SshSettings
from scripts.stack_file import config_of, stack_path

HELD = "host held"
# Until the connection closes: the job's end (the runner ends its processes) or a drop.
BODY = f'echo "{HELD}"\ncat > /dev/null\n'


def remote_command(stack: str, holder: str) -> str:
    config = config_of(stack_path(stack).read_text(), f"Pulumi.{stack}.yaml")
    host = config.get("aiia:host") or {}
    root = host.get("root_dir") or "/srv/aiia"
    ssh = SshSettings(**{key: value for key, value in (host.get("ssh") or {}).items()
                         if key in ("host", "user", "port")})
    script = under_lease(holder, BODY, HostLease(host_lease_directory(root), stack))
    if ssh.user == "root":
        return script
    return f"sudo -n bash -c {shlex.quote(script)}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    print(remote_command(*argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
