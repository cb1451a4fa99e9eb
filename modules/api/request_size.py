"""The request-body limit (setting `limit_request_mb`): a body above it is answered 413 with a
message before it is read into memory.

A declared Content-Length above the limit is refused at once, without reading a byte of the body;
a body without one (chunked) is read here as it arrives and refused as soon as it passes the
limit, so no route ever holds more than the limit.
"""
from __future__ import annotations

import json
from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATUS = 413
MB = 1_000_000


class RequestSizeLimitMiddleware:
    """Pure ASGI middleware (it must see the body before any route reads it)."""

    def __init__(self, app: ASGIApp, *, max_bytes: Callable[[], int],
                 describe_limit: Callable[[], str]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.describe_limit = describe_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = int(self.max_bytes())
        declared = _content_length(scope)
        if declared is not None:
            if declared > limit:
                await self._refuse(send, declared, limit)
                return
            # the server itself holds the body to its declared length
            await self.app(scope, receive, send)
            return
        # no declared length (chunked): read it here, up to the limit, then hand it on
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return                          # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                await self._refuse(send, None, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay_receive, send)

    async def _refuse(self, send: Send, size: int | None, limit: int) -> None:
        what = f"of {size} bytes " if size is not None else ""
        detail = (f"The request body {what}is above the server's limit of {limit / MB:g} MB "
                  f"({self.describe_limit()})")
        body = json.dumps({"error": "HTTPException", "detail": detail, "body": "",
                           "errors": detail}).encode()
        await send({"type": "http.response.start", "status": STATUS,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
