"""`--api-auth "user:pass,user2:pass2"`: HTTP Basic auth for every route of the app (§1.1).

Unlike A1111, which guards only the core /sdapi/v1 routes, the check is an ASGI middleware in
front of the whole app: /sdapi/*, /internal/*, /docs, /redoc, /openapi.json and any route an
extension adds later are all covered without opting in. In UI mode the Gradio mount is left to
Gradio's own login (--gradio-auth); the caller says which routes belong to it.
"""
from __future__ import annotations

import base64
import binascii
import secrets
from typing import Callable

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from modules.api.errors import error_envelope

UNAUTHORIZED_DETAIL = "Incorrect username or password"
# Always guarded, even in UI mode where a path that matches no API route falls through to Gradio.
API_PATH_PREFIXES = ("/sdapi/", "/internal/", "/docs", "/redoc", "/openapi.json")
# RFC 6455 close code "policy violation": the websocket equivalent of a 401
_WEBSOCKET_POLICY_VIOLATION = 1008

ScopePredicate = Callable[[Scope], bool]
RoutePredicate = Callable[[BaseRoute], bool]


def parse_credentials(spec: str | None) -> dict[str, str]:
    """"u1:p1,u2:p2" → {"u1": "p1", "u2": "p2"}. Only the first ":" splits, so (unlike A1111)
    a password may contain ":"."""
    credentials: dict[str, str] = {}
    for entry in (spec or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        user, separator, password = entry.partition(":")
        if not separator:
            # the entry is not echoed: it may be a password typed without its user
            raise ValueError("a credentials entry has no ':' between user and password")
        credentials[user] = password
    return credentials


def credentials_match(credentials: dict[str, str], user: str, password: str) -> bool:
    """Constant-time check that does not reveal which part was wrong, nor which user exists."""
    found = False
    for known_user, known_password in credentials.items():
        user_ok = secrets.compare_digest(user.encode(), known_user.encode())
        password_ok = secrets.compare_digest(password.encode(), known_password.encode())
        found |= user_ok and password_ok
    return found


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic …` header; None when absent or malformed."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, separator, password = decoded.partition(":")
    return (user, password) if separator else None


def unauthorized_response() -> JSONResponse:
    """A1111's 401: the error envelope of an HTTPException and `WWW-Authenticate: Basic` (which
    also makes browsers ask for the login on /docs)."""
    error = HTTPException(status_code=401, detail=UNAUTHORIZED_DETAIL)
    return JSONResponse(status_code=401, content=error_envelope(error),
                        headers={"WWW-Authenticate": "Basic"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def every_request(scope: Scope) -> bool:
    return True


def api_routes_of(app, *, is_exempt: RoutePredicate) -> ScopePredicate:
    """True for a request under API_PATH_PREFIXES or one that any non-exempt route of `app`
    would handle (also when only the method differs). The routes are read per request, so
    routes added after start-up (extensions) are guarded too."""

    def is_protected(scope: Scope) -> bool:
        path = scope.get("path", "")
        root_path = scope.get("root_path", "")
        route_path = path[len(root_path):] if root_path and path.startswith(root_path) else path
        if route_path.startswith(API_PATH_PREFIXES):
            return True
        for route in app.router.routes:
            if is_exempt(route):
                continue
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return True
        return False

    return is_protected


class BasicAuthMiddleware:
    """Lets a request reach the app only with one of `credentials`, for every request that
    `is_protected` selects. Preflight (CORS) requests are answered by the CORS middleware, which
    must sit outside this one: browsers never send credentials on a preflight."""

    def __init__(self, app: ASGIApp, *, credentials: dict[str, str],
                 is_protected: ScopePredicate = every_request) -> None:
        if not credentials:
            raise ValueError("BasicAuthMiddleware needs at least one user")
        self.app = app
        self.credentials = dict(credentials)
        self.is_protected = is_protected

    def is_authorized(self, scope: Scope) -> bool:
        sent = basic_credentials(_header(scope, b"authorization"))
        return sent is not None and credentials_match(self.credentials, *sent)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.is_protected(scope) \
                or self.is_authorized(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await unauthorized_response()(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": _WEBSOCKET_POLICY_VIOLATION})
