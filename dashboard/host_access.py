"""Who logged in and who ran what as root: sshd's and sudo's lines from the journal.

Until an alerts channel exists this is where a login or a sudo that should not happen shows
(review H3). The collector reads the journal since its last run (`journalctl --after-cursor`,
matched on sshd's and sudo's identifiers, at most JOURNAL_LINES_PER_RUN a run), keeps the
last EVENTS_KEPT of each kind and its cursor in <state_dir>/host-access.json, and the page
lists them: who (the key's name from host.provision.admin_ssh_keys), from where, when.

What alerts, and what does not. Every login is as the deploy user, with one of the
operators' keys (sshd's AllowUsers and authorized_keys); the program's own `pulumi up` logs
in the same way and runs dozens of `sudo -n bash -c …`, and CI's address changes with every
runner. So a known key from a new address, and the deploy user's sudo, are listed (the
address marked new) but raise nothing: at 3 a.m. they would be noise. What cannot happen in
normal operation is critical for ALERT_HOURS: a login with a key that is not among
host.provision.admin_ssh_keys (an authorized_keys line someone added), a login by any other
method than a public key or as another user (sshd's policy changed), and a sudo by another
user than the deploy user or root, or one sudo refused (not in sudoers, wrong password,
command not allowed).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .timestamps import format_utc, parse_utc

# Debian 12's sshd logs as "sshd"; Debian 13's OpenSSH 10 as "sshd-session" (its per-login
# process); sudo as "sudo".
SSHD_IDENTIFIERS = ("sshd", "sshd-session")
SUDO_IDENTIFIER = "sudo"
JOURNAL_LINES_PER_RUN = 2000
FIRST_RUN_SINCE = "-24h"  # the first run looks this far back (systemd.time(7))
EVENTS_KEPT = 30
ADDRESSES_KEPT_DAYS = 90
ALERT_HOURS = 24
STATE_FILE = "host-access.json"
CRITICAL = "critical"

ACCEPTED = re.compile(
    r"^Accepted (?P<method>\S+) for (?P<user>\S+) from (?P<address>\S+) port \d+ ssh2"
    r"(?:: (?P<key_type>\S+) (?P<fingerprint>SHA256:\S+))?"
)
# sudo's own line: "deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/id",
# with a reason first when it refused ("user NOT in sudoers ; …", "3 incorrect password
# attempts ; …", "command not allowed ; …"). PAM's session lines do not match.
SUDO = re.compile(r"^\s*(?P<user>[^\s:]+) : (?P<fields>.*)$")


def journal_command(cursor: str | None) -> list[str]:
    """The journalctl run that reads what came since `cursor` (or the last day)."""
    command = ["journalctl", "--output=json", "--no-pager", "--quiet",
               f"--lines={JOURNAL_LINES_PER_RUN}"]
    command += [f"--after-cursor={cursor}"] if cursor else [f"--since={FIRST_RUN_SINCE}"]
    return command + [f"SYSLOG_IDENTIFIER={name}"
                      for name in (*SSHD_IDENTIFIERS, SUDO_IDENTIFIER)]


def parse_entry(entry: dict[str, Any]) -> dict[str, Any] | None:
    """A login or a sudo from one journal entry (journalctl's JSON), or None."""
    message = entry.get("MESSAGE")
    if not isinstance(message, str):
        return None
    try:
        at = format_utc(int(entry["__REALTIME_TIMESTAMP"]) / 1_000_000)
    except (KeyError, TypeError, ValueError):
        return None
    identifier = entry.get("SYSLOG_IDENTIFIER")
    if identifier in SSHD_IDENTIFIERS:
        match = ACCEPTED.match(message)
        return None if match is None else {"kind": "login", "at": at, **match.groupdict()}
    if identifier == SUDO_IDENTIFIER:
        return _sudo_event(message, at)
    return None


def _sudo_event(message: str, at: str) -> dict[str, Any] | None:
    match = SUDO.match(message)
    if match is None or "COMMAND=" not in match["fields"]:
        return None
    fields: dict[str, str] = {}
    problems = []
    for part in match["fields"].split(" ; "):
        name, equals, value = part.partition("=")
        if equals and name.isupper() and name not in fields:
            fields[name] = value
        elif not fields:
            problems.append(part.strip())
    # COMMAND is last and may itself hold " ; ".
    command = match["fields"].split("COMMAND=", 1)[1]
    return {"kind": "sudo", "at": at, "user": match["user"], "run_as": fields.get("USER"),
            "command": command[:300], "refused": "; ".join(problems) or None}


def classify(event: dict[str, Any], deploy_user: str, known_keys: dict[str, str],
             seen: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The event with who did it and, for what must not happen, why it is critical."""
    if event["kind"] == "login":
        key = event.get("fingerprint")
        event["who"] = known_keys.get(key or "", key or event["method"])
        event["new_address"] = event["address"] not in seen.get(key or event["user"], {})
        event["problem"] = _login_problem(event, deploy_user, known_keys)
    else:
        event["who"] = event["user"]
        event["problem"] = _sudo_problem(event, deploy_user)
    event["severity"] = CRITICAL if event["problem"] else "info"
    return event


def _login_problem(event: dict[str, Any], deploy_user: str,
                   known_keys: dict[str, str]) -> str | None:
    if event["method"] != "publickey":
        return f"logged in by {event['method']}, which sshd's policy refuses"
    if event["user"] != deploy_user:
        return f"logged in as {event['user']}, not the deploy user {deploy_user}"
    if known_keys and event.get("fingerprint") not in known_keys:
        return (f"logged in with a key that is not in host.provision.admin_ssh_keys "
                f"({event.get('key_type')} {event.get('fingerprint')}): an authorized_keys "
                "line someone else added")
    return None


def _sudo_problem(event: dict[str, Any], deploy_user: str) -> str | None:
    if event["refused"]:
        return f"sudo refused: {event['refused']}"
    if event["user"] not in (deploy_user, "root"):
        return f"sudo by {event['user']}, who is not the deploy user {deploy_user}"
    return None


Run = Callable[..., subprocess.CompletedProcess]


def collect(state_dir: Path, deploy_user: str, known_keys: dict[str, str], now: float,
            run: Run = subprocess.run) -> dict[str, Any]:
    """Read the journal since the last run, keep the state, return what the page shows."""
    path = state_dir / STATE_FILE
    state = _load_state(path)
    result = run(journal_command(state.get("cursor")), capture_output=True, text=True,
                 timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"journalctl exited {result.returncode}: {result.stderr[-300:]}")
    for entry in _entries(result.stdout.splitlines()):
        state["cursor"] = entry.get("__CURSOR", state.get("cursor"))
        event = parse_entry(entry)
        if event is None:
            continue
        _remember(state, classify(event, deploy_user, known_keys, state["seen"]))
    _prune(state, now)
    path.write_text(json.dumps(state, separators=(",", ":")), encoding="utf-8")
    return view(state)


def _entries(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            yield entry


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        state = {}
    if not isinstance(state, dict):
        state = {}
    for key in ("logins", "sudo", "alerting"):
        state.setdefault(key, [])
    state.setdefault("seen", {})
    return state


def _remember(state: dict[str, Any], event: dict[str, Any]) -> None:
    state["logins" if event["kind"] == "login" else "sudo"].append(event)
    if event["severity"] == CRITICAL:
        state["alerting"].append(event)
    if event["kind"] == "login":
        addresses = state["seen"].setdefault(event.get("fingerprint") or event["user"], {})
        addresses[event["address"]] = event["at"]


def _prune(state: dict[str, Any], now: float) -> None:
    for key in ("logins", "sudo"):
        state[key] = state[key][-EVENTS_KEPT:]
    state["alerting"] = [event for event in state["alerting"]
                         if now - (parse_utc(event["at"]) or 0) < ALERT_HOURS * 3600]
    oldest = now - ADDRESSES_KEPT_DAYS * 86400
    state["seen"] = {key: kept for key, addresses in state["seen"].items()
                     if (kept := {address: at for address, at in addresses.items()
                                  if (parse_utc(at) or 0) >= oldest})}


def view(state: dict[str, Any]) -> dict[str, Any]:
    """Newest first, as the page lists them."""
    return {"logins": state["logins"][::-1], "sudo": state["sudo"][::-1],
            "alerting": state["alerting"][::-1]}


def alerts(access: dict[str, Any] | None, now: float) -> list[dict[str, str]]:
    """One critical alert per login or sudo that must not happen, for ALERT_HOURS."""
    result = []
    for event in (access or {}).get("alerting") or []:
        moment = parse_utc(event.get("at"))
        if moment is None or now - moment >= ALERT_HOURS * 3600:
            continue
        where = f" from {event['address']}" if event.get("address") else ""
        what = "SSH login" if event["kind"] == "login" else f"sudo {event.get('command', '')}"
        result.append({"severity": CRITICAL, "area": "access", "subject": event["who"],
                       "message": f"{what} as {event['user']}{where} at {event['at']}: "
                                  f"{event['problem']}."})
    return result
