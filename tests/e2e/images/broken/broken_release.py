"""Test variant (tests/e2e/images/broken): healthy, but 500 on every path but /healthz/.

Wraps the reference app's ASGI application: /healthz/ (and WebSockets, lifespan) go to the
real app, so the container health check passes; every other HTTP request is answered 500
with the release header, like a release whose code is broken on real traffic.
"""

import json
import os

from aiia.asgi import application as reference_application
from aiia.middleware import HEALTH_PATH

RELEASE = os.environ.get("RELEASE", "")


async def application(scope, receive, send):
    if scope["type"] != "http" or scope["path"] == HEALTH_PATH:
        await reference_application(scope, receive, send)
        return
    body = json.dumps({"error": "broken on purpose (test image)", "release": RELEASE}).encode()
    await send({"type": "http.response.start", "status": 500, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-release", RELEASE.encode()),
    ]})
    await send({"type": "http.response.body", "body": body})
