"""WebSocket handlers, written against plain ASGI (no Django Channels)."""

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Close code sent before the handshake completes: uvicorn turns it into HTTP 403.
POLICY_VIOLATION = 1008


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, send every text or binary message back, stop when the client goes."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        elif message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def reject(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse the handshake of a WebSocket path that nothing serves."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})


ROUTES: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {"/ws/echo/": echo}


def route(path: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    return ROUTES.get(path, reject)
