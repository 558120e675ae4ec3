"""Command line: ``python3 -m dashboard {serve,collect,hash-password} ...``."""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
import time

from .auth import DEFAULT_ITERATIONS, hash_password
from .config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m dashboard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the page and the JSON API (unprivileged)")
    serve.add_argument("--config", required=True, help="path to the dashboard's config.json")
    serve.add_argument(
        "--allow-privileged",
        action="store_true",
        help="skip the refusal to run as root or with Docker socket access "
        "(throwaway test containers only)",
    )

    collect = commands.add_parser("collect", help="collect once (or --every N seconds)")
    collect.add_argument("--config", required=True, help="path to the dashboard's config.json")
    collect.add_argument(
        "--every",
        type=int,
        metavar="SECONDS",
        help="keep collecting every SECONDS (local stack); default: once",
    )

    notifier = commands.add_parser(
        "notify", help="send what started, repeats or ended since the last run (once)")
    notifier.add_argument("--config", required=True, help="path to the dashboard's config.json")

    test = commands.add_parser(
        "notify-test", help="send a test message through every alert channel now (root)")
    test.add_argument("--config", required=True, help="path to the dashboard's config.json")

    hashing = commands.add_parser(
        "hash-password", help="print a pbkdf2_sha256 hash for auth_password_hash"
    )
    hashing.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    hashing.add_argument("--stdin", action="store_true", help="read the password from stdin")

    args = parser.parse_args(argv)
    if args.command == "hash-password":
        password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass()
        print(hash_password(password, iterations=args.iterations))
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"dashboard: {error}", file=sys.stderr)
        return 2
    if args.command == "serve":
        # Imported here, not at the top: the server process never loads the collector's
        # Docker client, and the collector never loads the HTTP server.
        from .server import PreflightError
        from .server import serve as run_server

        try:
            run_server(config, allow_privileged=args.allow_privileged)
        except PreflightError as error:
            print(f"dashboard: {error}", file=sys.stderr)
            return 3
        except KeyboardInterrupt:
            pass
        return 0
    if args.command == "notify-test":
        return _notify_test(config)
    if args.command == "notify":
        return _notify(config)
    return _collect(config, args.config, args.every)


def _notify(config) -> int:
    """One notifier run; what failed is on the page and in this line, not an exit status
    (a channel down is retried by the next run, not by systemd)."""
    from .notify import notify_once
    from .notify_config import NotifyConfigError

    try:
        shown = notify_once(config)
    except NotifyConfigError as error:
        print(f"dashboard: {error}", file=sys.stderr)
        return 2
    if shown is None:
        print("dashboard: no alert channels configured (platform.alerts)", file=sys.stderr)
        return 0
    failing = [c for c in shown["channels"] if c["last_error"]]
    waiting = sum(c["pending"] for c in shown["channels"])
    print(f"notify: {len(shown['channels'])} channel(s), {waiting} message(s) waiting"
          + "".join(f"; {c['last_error']}" for c in failing), file=sys.stderr, flush=True)
    return 0


def _notify_test(config) -> int:
    """Every channel's result on its own line; exit 1 when any failed."""
    import socket
    import time

    from .notify import send_test
    from .notify_config import NotifyConfigError

    try:
        settings = config.notify_with_secrets()
    except NotifyConfigError as error:
        print(f"dashboard: {error}", file=sys.stderr)
        return 2
    if settings is None or not settings.channels:
        print("dashboard: no alert channels configured (platform.alerts)", file=sys.stderr)
        return 2
    results = send_test(settings, socket.gethostname(), int(time.time()))
    for name, error in results.items():
        print(f"{name}: {'sent' if error is None else 'FAILED ' + error}")
    return 1 if any(results.values()) else 0


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _reloaded(config, path: str, seen: tuple[int, int] | None):
    """The config re-read when its file changed since `seen` (mtime, size): a resident
    collector (the local stack's) follows `pulumi up` like the VPS's timer run does. A file
    that does not load keeps the last good config, said on stderr."""
    now = _stamp(path)
    if now is None or now == seen:
        return config, seen
    try:
        return load_config(path), now
    except ConfigError as error:
        print(f"dashboard: {error}; collecting with the previous config", file=sys.stderr,
              flush=True)
        return config, now


def _collect(config, path: str, every: int | None) -> int:
    from .collector import CollectorBusy, collect_once

    stopping = False

    def stop(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    seen = _stamp(path)
    while True:
        started = time.monotonic()
        config, seen = _reloaded(config, path, seen)
        try:
            document = collect_once(config)
            errors = document["collector"]["errors"]
            print(
                f"collected in {document['collector']['duration_ms']:.0f} ms"
                + (
                    f"; {len(errors)} step(s) failed: "
                    + "; ".join(f"{e['step']}: {e['message']}" for e in errors)
                    if errors
                    else ""
                ),
                file=sys.stderr,
                flush=True,
            )
        except CollectorBusy as error:
            print(f"dashboard: {error}; skipping this run", file=sys.stderr, flush=True)
        if every is None:
            return 0
        if config.notify is not None:
            _notify(config)  # resident (the local stack): the notifier runs in the loop
        remaining = every - (time.monotonic() - started)
        while remaining > 0 and not stopping:
            time.sleep(min(remaining, 1.0))
            remaining = every - (time.monotonic() - started)
        if stopping:
            return 0


if __name__ == "__main__":
    sys.exit(main())
