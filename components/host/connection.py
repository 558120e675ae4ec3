"""How files and commands reach the host: one mechanism for the local and the SSH host.

`local` stack: `command.local.Command` runs here, against the developer's own Docker.
`prod`/`staging`: `command.remote.Command` over SSH. A file's content travels on the
command's standard input (never on a command line, never in an environment variable), so
secrets stay Pulumi secrets and never show in `ps`; the install script writes it
atomically with its mode and owner set before it appears. (`CopyToRemote` cannot set a
mode or owner and writes in place, which would leave a secret briefly world-readable.)
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from dataclasses import dataclass

import pulumi
from pulumi_command import local, remote

from components.host.lease import HostLease, host_lease_directory, under_lease
from components.host.templates import render
from components.settings.host import HostSettings


@dataclass(frozen=True)
class HostConnection:
    """Where host commands run: here (`local`) or on the VPS over SSH."""

    kind: str
    ssh: remote.ConnectionArgs | None = None
    sudo: bool = False
    # What every command on this connection waits for (the host's provisioning).
    ready: tuple[pulumi.Resource, ...] = ()
    lease: HostLease | None = None

    @property
    def unprivileged_local(self) -> bool:
        """`pulumi up -s local` as a developer (not root): host files are the developer's, so
        nothing can be chowned to a container's user."""
        return self.kind == "local" and os.getuid() != 0

    def after(self, *resources: pulumi.Resource) -> HostConnection:
        """This connection, its commands run only once `resources` are done."""
        return dataclasses.replace(self, ready=(*self.ready, *resources))

    @staticmethod
    def for_host(host: HostSettings, private_key: pulumi.Input[str] | None,
                 stack: str) -> HostConnection:
        lease = HostLease(host_lease_directory(host.root_dir), stack)
        if host.kind == "local" or host.ssh is None:
            return HostConnection(kind="local", lease=lease)
        # host_key pinned (pulumi-command ignores host keys without it); no private key:
        # the ssh-agent's (SSH_AUTH_SOCK, remote/connection.go), as the Docker provider's
        # system ssh uses.
        connection = remote.ConnectionArgs(
            host=host.ssh.host, user=host.ssh.user, port=host.ssh.port,
            host_key=host.ssh.host_key, private_key=private_key, dial_error_limit=5,
        )
        return HostConnection(kind="ssh", ssh=connection, sudo=host.ssh.user != "root",
                              lease=lease)


def _as_root(script: str, connection: HostConnection) -> str:
    # Host files and docker need root; an SSH user other than root goes through sudo.
    if not connection.sudo:
        return script
    return f"sudo -n bash -c {shlex.quote(script)}"


def host_command(
    name: str,
    connection: HostConnection,
    create: pulumi.Input[str],
    *,
    stdin: pulumi.Input[str] | None = None,
    delete: str | None = None,
    triggers: list | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> pulumi.CustomResource:
    """A command run on the host with bash; re-run when its script, stdin or triggers change."""
    if connection.ready:
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(depends_on=list(connection.ready)))
    create = pulumi.Output.from_input(create).apply(
        lambda script: under_lease(name, script, connection.lease))
    if connection.kind == "local":
        return local.Command(
            name, create=create, update=create, delete=delete, stdin=stdin,
            triggers=triggers, interpreter=["/bin/bash", "-c"], opts=opts,
        )
    wrapped = create.apply(lambda script: _as_root(script, connection))
    return remote.Command(
        name, connection=connection.ssh, create=wrapped, update=wrapped,
        delete=_as_root(delete, connection) if delete else None, stdin=stdin,
        triggers=triggers, opts=opts,
    )


@dataclass
class HostFileArgs:
    connection: HostConnection
    path: str
    content: pulumi.Input[str]
    mode: str = "0644"
    owner: str | None = None  # "uid:gid" the reading container runs as
    on_change: str | None = None  # e.g. a graceful reload, run only when the file changed
    only_if_absent: bool = False  # a seed that a later step owns once it exists
    # Run first; when it fails nothing is installed (e.g. the switch's health check).
    precondition: pulumi.Input[str] | None = None
    lock_file: str | None = None  # files that share a lock are installed one at a time
    # Markers in `content` → the shell variable the precondition set, put in their place on
    # the host: what only the host knows when the file is installed (the switch's address).
    fill_in: dict[str, str] = dataclasses.field(default_factory=dict)


class HostFile(pulumi.ComponentResource):
    """One rendered template placed on the host, followed by its reload when it changed."""

    def __init__(self, name: str, args: HostFileArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aiia:host:File", name, None, opts)
        for marker, variable in args.fill_in.items():
            # Put in a sed expression on the host: nothing there may need quoting.
            if not re.fullmatch(r"@[A-Z_]+@", marker) or not re.fullmatch(r"[a-z_]+", variable):
                raise ValueError(f"{name}: fill_in {marker!r} → {variable!r}: a marker is "
                                 "@UPPER_CASE@, a variable lower_case")
        script = pulumi.Output.from_input(args.precondition).apply(
            lambda precondition: render(
                "host/install-file.sh.j2", path=args.path, mode=args.mode, owner=args.owner,
                on_change=args.on_change, only_if_absent=args.only_if_absent,
                precondition=precondition, lock_file=args.lock_file, fill_in=args.fill_in))
        self.install = host_command(
            f"{name}-install", args.connection, script, stdin=args.content,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.path = args.path
        self.register_outputs({"path": args.path})
