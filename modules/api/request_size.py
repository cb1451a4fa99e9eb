"""The request-body limit (setting `limit_request_mb`): a body above it is answered 413 with a
message before it is read into memory.

A declared Content-Length above the limit is refused at once, without reading a byte of the body;
a body without one (chunked) is counted as it arrives and refused when it passes the limit.
"""
from __future__ import annotations

import json
from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATUS = 413
MB = 1_000_000


class BodyTooLarge(Exception):
    pass


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
        if declared is not None and declared > limit:
            await self._refuse(send, declared, limit)
            return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if response_started:
                raise
            await self._refuse(send, None, limit)

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
