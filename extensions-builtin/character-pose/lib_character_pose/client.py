"""The app's own HTTP API, called in-process through its ASGI interface (no socket): the service
uses the public routes exactly as a remote client would, with the caller's credentials, so
--api-auth, the request limits and the job queue apply to it unchanged."""
from __future__ import annotations

from typing import Any

import httpx


class ApiCallError(RuntimeError):
    """A route answered with an error: its status and message are passed on to the caller."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class AppClient:
    def __init__(self, app: Any, authorization: str | None = None) -> None:
        headers = {"Authorization": authorization} if authorization else {}
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://in-process", headers=headers,
                                         timeout=None)

    async def __aenter__(self) -> "AppClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._client.aclose()

    async def get(self, path: str) -> Any:
        return _answer(await self._client.get(path))

    async def post(self, path: str, body: Any) -> Any:
        return _answer(await self._client.post(path, json=body))


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = body.get("detail") or body.get("errors") or response.text
        except ValueError:
            detail = response.text
        raise ApiCallError(response.status_code, detail if isinstance(detail, str)
                           else str(detail))
    return response.json()
