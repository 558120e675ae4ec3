"""ASGI entry point: HTTP goes to Django, /ws/echo/ to the echo handler, lifespan is answered.

Run with: uvicorn aiia.asgi:application (see the Dockerfile's CMD).
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiia.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

from aiia.env import ConfigurationError  # noqa: E402

try:
    django_application = get_asgi_application()
except ConfigurationError as error:
    # One clear line instead of a traceback; a non-zero exit fails the container start.
    print(f"aiia: configuration error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None

from aiia.websocket import Receive, Scope, Send, route  # noqa: E402


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    # Nothing to set up or tear down, but answering keeps uvicorn from logging the protocol
    # as unsupported, and a shutdown that is acknowledged is a clean one.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await django_application(scope, receive, send)
    elif scope["type"] == "websocket":
        await route(scope["path"])(scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
    else:
        raise ValueError(f"unsupported ASGI scope type {scope['type']!r}")
