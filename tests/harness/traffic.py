"""Traffic for the end-to-end tests: the browser-like load (tests/harness/load.py) and the
clients that never retry (tests/harness/strict.py) through nginx to one environment, around
an action (an update, a reload, a renewal), and what "no client noticed" means."""

from __future__ import annotations

import time

from tests.harness.load import Load
from tests.harness.replay import ReplayError
from tests.harness.strict import StrictGets, StrictH2, StrictPosts

RATE = 120
REQUESTS = 10_000
# Strict clients beside the browser-like load: GETs and HTTP/2 on "/" stay, with RATE, under
# the general limit of 200 r/s per address (everything comes from 127.0.0.1); POSTs go to /api/.
# 120 + 20 + 10 + 20 = 170 r/s: 30 r/s of margin, since at 195 a loaded machine's jitter
# exceeded the limit's burst (489 HTTP 429 in one clean-clone run).
STRICT_RATE = 20


# How long the clients go on after the action has ended. A release's `up` ends after its
# watch, which waits for nginx's old workers, and after the old container is stopped: what a
# client could still meet then (a kept-alive connection an old worker closes, the next
# request on a new one) comes within this. Until then the clients run at their rate, so a
# test lasts as long as its action, not as its clients' longest schedule (`total`, a bound).
TAIL_SECONDS = 10


def finish(clients, ended: float, tail_seconds: float = TAIL_SECONDS) -> None:
    """Each client runs on until `tail_seconds` after `ended` (monotonic), or to the end of
    its schedule if that comes first; then starts nothing more and its requests finish."""
    for client in clients:
        client.wait(timeout=max(0.0, ended + tail_seconds - time.monotonic()))
        client.stop()


def under_load(stack, action, rate=RATE, total=REQUESTS, strict=None,
               tail_seconds=TAIL_SECONDS):
    """`action()` while a paced load runs through nginx to prod, from 3 s before it to
    `tail_seconds` after it (at most `total` requests); returns the load (finished) and the
    replay error, if an update failed. `strict` clients, started already, run beside it and
    are finished with it."""
    load = Load(stack.https_port, stack.domain("prod"), rate=rate, total=total,
                connections=8).start()
    time.sleep(3)  # traffic flows before the action starts
    error = None
    try:
        action()
    except ReplayError as failure:
        error = failure
    finish([load, *(strict or [])], time.monotonic(), tail_seconds)
    return load, error


def assert_paced(summary, rate: float) -> None:
    """The client kept up with its schedule while it ran: at least two thirds of its rate,
    the slack its deadline gives it (load.Load's max_seconds: the schedule, half again). A
    client that stalled (a blocked connection, a starved thread) falls behind."""
    assert summary.requests >= rate * summary.duration * 2 / 3, summary.line()


def strict_clients(stack, seconds: float = REQUESTS / RATE) -> list:
    """Clients that never retry (tests/harness/strict.py), started, for `seconds` (as long as
    the browser-like load by default)."""
    port, domain = stack.https_port, stack.domain("prod")
    total = int(seconds * STRICT_RATE)
    return [StrictGets(port, domain, "/", rate=STRICT_RATE, total=total, connections=4).start(),
            StrictPosts(port, domain, rate=STRICT_RATE / 2, total=total // 2).start(),
            StrictH2(port, domain, "/", rate=STRICT_RATE, total=total).start()]


def assert_no_client_noticed(stack, clients) -> None:
    """0 failed and 0 retried for every strict client; every acknowledged POST written once,
    no failed one written. HTTP/2 requests a GOAWAY refused (unprocessed, RFC 9113 §6.8)
    are sent again on a new connection by the client: counted, and no failure."""
    for client in clients:
        summary = client.summary()
        print(summary.line())
        assert_paced(summary, client.rate)
        assert summary.failures == 0, (summary.protocol, summary.failure_kinds)
        assert summary.retries == 0
    posts = next(client for client in clients if isinstance(client, StrictPosts))
    check = posts.check(stack.notes_written("prod", posts.prefix))
    print(check.line())
    assert check.consistent and not check.failed_but_written, check
