"""Slack notification of a deploy: success, failure or rollback, by incoming webhook.

    SLACK_WEBHOOK_URL=https://hooks.slack.com/services/… python3 -m scripts.notify \
        --status success --stack prod --release 2026.11.27-1 --actor alice \
        --run-url https://github.com/eduaiia/aiia-infra/actions/runs/1 [--detail TEXT]

The payload is Slack's incoming-webhook message: `text` (the notification's line, also
what clients without blocks show) and `blocks` (a section with the fields). The webhook
URL is a secret, so it comes from the environment, never from the command line.

Slack is optional: with no webhook set (the secret SLACK_WEBHOOK_URL of the GitHub
environment "notify" is missing or empty) nothing is sent and the exit is 0, so a
deployment's run is as green or red as the deployment. A webhook that is set but does not
answer 200 is an error (exit 1): a notification that was meant to arrive and did not must
be seen in the run. Exit 2: bad input (a webhook that is not https, a bad status).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit

HEADLINES = {
    "success": ":white_check_mark: {stack}: release {release} is live",
    "failure": ":x: {stack}: release {release} failed",
    "rollback": ":rewind: {stack}: release {release} failed and was rolled back",
}


def payload(status: str, stack: str, release: str, actor: str, run_url: str,
            detail: str = "") -> dict:
    headline = HEADLINES[status].format(stack=stack, release=release)
    fields = [f"*Stack*\n{stack}", f"*Release*\n{release}", f"*By*\n{actor}",
              f"*Run*\n<{run_url}|{run_url.rsplit('/', 1)[-1]}>"]
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if detail:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": detail}]})
    return {"text": f"{headline} (by {actor}): {run_url}", "blocks": blocks}


def check_webhook(url: str) -> None:
    parts = urlsplit(url)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise ValueError("SLACK_WEBHOOK_URL must be an https:// URL (Slack's incoming "
                         "webhook, the secret SLACK_WEBHOOK_URL of the environment notify)")


def send(url: str, message: dict, timeout: float = 10.0) -> None:
    # check_webhook allowed https (or http to this machine) only.
    request = urllib.request.Request(  # noqa: S310
        url, data=json.dumps(message).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")
        raise RuntimeError(f"Slack answered {error.code}: {body[:200]}") from error
    except urllib.error.URLError as error:
        raise RuntimeError(f"Slack's webhook could not be reached: {error.reason}") from error
    if body.strip() != "ok":
        raise RuntimeError(f"Slack answered {body[:200]!r}, not ok")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--status", required=True, choices=sorted(HEADLINES))
    parser.add_argument("--stack", required=True)
    parser.add_argument("--release", required=True)
    parser.add_argument("--actor", required=True, help="who pushed or dispatched")
    parser.add_argument("--run-url", required=True)
    parser.add_argument("--detail", default="", help="one more line, e.g. why it failed")
    args = parser.parse_args(argv)
    url = os.environ.get("SLACK_WEBHOOK_URL", "").strip()
    try:
        if url:
            check_webhook(url)
        if not args.run_url.startswith(("https://", "http://")):
            raise ValueError(f"--run-url {args.run_url!r} is not a URL")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    message = payload(args.status, args.stack, args.release, args.actor, args.run_url,
                      args.detail)
    if not url:
        print(f"Slack is not set up (no SLACK_WEBHOOK_URL), nothing sent: {message['text']}")
        return 0
    try:
        send(url, message)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"notified Slack: {message['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
