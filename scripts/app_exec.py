"""`make exec`: a command in a new container made like an environment's serving release.

    python3 -m scripts.app_exec CONTAINER COMMAND…     (scripts/ops.sh finds CONTAINER)

The container is made from what Docker says of the serving one (`docker inspect`): its image
(by ID, so a moved tag cannot change it), variables, mounts (the secret files read-only,
media, logs), network, user, read-only root and /tmp, capabilities, security options and
memory limit, so the command sees what the app sees. It is a container of its own, removed
when the command ends, rather than `docker exec` into the serving one: a Django shell or a
management command beside the app would count against the app's own memory limit (80 MB)
and could get the serving process OOM-killed. The host has room for it as it has for the
second app container of a release. Interactive (-t) when this terminal is; stdin is passed.
The variables go through a file of this user's (docker's --env-file), not the command line,
where secrets as variables would show in `ps`. Run with DOCKER_HOST set for a VPS.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
from typing import Any


def run_arguments(serving: dict[str, Any], name: str, env_file: str,
                  command: list[str], tty: bool) -> list[str]:
    """`docker run` arguments for a container like `serving` (docker inspect's object)."""
    config, host = serving["Config"], serving["HostConfig"]
    arguments = ["run", "--rm", "-i", *(["-t"] if tty else []), "--name", name,
                 "--env-file", env_file, "--network", host["NetworkMode"],
                 "--no-healthcheck"]
    if config.get("User"):
        arguments += ["--user", config["User"]]
    arguments += _mounts(serving.get("Mounts") or [])
    arguments += _confinement(host)
    arguments += _labels(config.get("Labels") or {})
    return [*arguments, serving["Image"], *command]


def _mounts(mounts: list[dict[str, Any]]) -> list[str]:
    """The serving container's binds and volumes, read-only where they are."""
    arguments = []
    for mount in mounts:
        if mount["Type"] not in ("bind", "volume"):
            continue
        source = mount["Source"] if mount["Type"] == "bind" else mount["Name"]
        readonly = "" if mount.get("RW", True) else ",readonly"
        arguments += ["--mount",
                      f"type={mount['Type']},source={source},target={mount['Destination']}"
                      f"{readonly}"]
    return arguments


def _confinement(host: dict[str, Any]) -> list[str]:
    """What the serving container may do and use: root file system, tmpfs, capabilities,
    security options, memory and logs, as it has them."""
    arguments = ["--read-only"] if host.get("ReadonlyRootfs") else []
    for path, options in sorted((host.get("Tmpfs") or {}).items()):
        arguments += ["--tmpfs", f"{path}:{options}" if options else path]
    for flag, values in (("--cap-drop", host.get("CapDrop")), ("--cap-add", host.get("CapAdd")),
                         ("--security-opt", host.get("SecurityOpt"))):
        for value in values or []:
            arguments += [flag, value]
    if host.get("Memory"):
        arguments += ["--memory", str(host["Memory"]),
                      "--memory-swap", str(host.get("MemorySwap") or host["Memory"])]
    log = host.get("LogConfig") or {}
    if log.get("Type"):
        arguments += ["--log-driver", log["Type"]]
        for key, value in sorted((log.get("Config") or {}).items()):
            arguments += ["--log-opt", f"{key}={value}"]
    return arguments


def _labels(labels: dict[str, str]) -> list[str]:
    """Labelled as the release's jobs are (templates/app/release-begin.sh.j2): the dashboard
    lists it while it runs, with its memory."""
    arguments = []
    for key, value in (("aiia.service", "app-exec"),
                       ("aiia.environment", labels.get("aiia.environment", "")),
                       ("aiia.stack", labels.get("aiia.stack", "")),
                       ("aiia.release", labels.get("aiia.release", ""))):
        arguments += ["--label", f"{key}={value}"]
    return arguments


def env_file_text(serving: dict[str, Any]) -> str:
    variables = serving["Config"].get("Env") or []
    if any("\n" in variable for variable in variables):
        raise ValueError("a variable of the serving container holds a line break, which "
                         "docker's --env-file cannot carry")
    return "".join(f"{variable}\n" for variable in variables)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python3 -m scripts.app_exec CONTAINER COMMAND…", file=sys.stderr)
        return 2
    container, command = argv[0], argv[1:]
    inspected = subprocess.run(["docker", "inspect", "--type", "container", container],
                               capture_output=True, text=True, check=False)
    if inspected.returncode != 0:
        print(f"cannot inspect {container}: {inspected.stderr.strip()}", file=sys.stderr)
        return 1
    (serving,) = json.loads(inspected.stdout)
    labels = serving["Config"].get("Labels") or {}
    name = (f"{labels.get('aiia.stack', 'aiia')}-exec-{labels.get('aiia.environment', 'app')}-"
            f"{secrets.token_hex(3)}")
    with tempfile.TemporaryDirectory(prefix="aiia-exec-") as private:
        env_file = os.path.join(private, "env")
        with open(os.open(env_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as out:
            out.write(env_file_text(serving))
        tty = sys.stdin.isatty() and sys.stdout.isatty()
        print(f"== {' '.join(command)} in {name}, made like {container} (release "
              f"{labels.get('aiia.release', '?')}, user {serving['Config'].get('User') or '-'}, "
              f"network {serving['HostConfig']['NetworkMode']})", file=sys.stderr, flush=True)
        process = subprocess.Popen(["docker", *run_arguments(serving, name, env_file, command,
                                                             tty)])
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:  # docker passes it on to the command; wait for its end
                continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
