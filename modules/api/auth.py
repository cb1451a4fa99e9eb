"""`--api-auth "user:pass,user2:pass2"`: HTTP Basic auth for the /sdapi/v1 routes (§1.1)."""
from __future__ import annotations

import secrets
from typing import Callable

from fastapi import Depends, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials



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
            raise ValueError(f"--api-auth entry {user!r} has no ':' between user and password")
        credentials[user] = password
    return credentials


def _matches(credentials: dict[str, str], user: str, password: str) -> bool:
    """Constant-time check that does not reveal which part was wrong."""
    found = False
    for known_user, known_password in credentials.items():
        user_ok = secrets.compare_digest(user.encode(), known_user.encode())
        password_ok = secrets.compare_digest(password.encode(), known_password.encode())
        found |= user_ok and password_ok
    return found


def basic_auth_dependency(credentials: dict[str, str]) -> Callable[..., str]:
    """A FastAPI dependency that lets a request through only with one of `credentials`."""
    security = HTTPBasic(auto_error=False)

    def check(sent: HTTPBasicCredentials | None = Depends(security)) -> str:
        if sent is None or not _matches(credentials, sent.username, sent.password):
            raise HTTPException(status_code=401, detail="Incorrect username or password",
                           headers={"WWW-Authenticate": "Basic"})
        return sent.username

    return check
