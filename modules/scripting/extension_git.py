"""What git knows about an extension folder that is a checkout (A1111's Extension.read_info):
remote, branch, commit, its date, a short version. Read with the `git` command; a folder that
is not a checkout (or a machine without git) has no info."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class GitInfo:
    remote: str
    branch: str
    commit_hash: str
    commit_date: int        # seconds since the epoch
    version: str            # the short commit hash


def _git(folder: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                                text=True, timeout=GIT_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_info(folder: Path) -> GitInfo | None:
    if not (folder / ".git").exists():
        return None
    commit = _git(folder, "rev-parse", "HEAD")
    if not commit:
        return None
    date = _git(folder, "log", "-1", "--format=%ct") or "0"
    return GitInfo(remote=_git(folder, "config", "--get", "remote.origin.url") or "",
                   branch=_git(folder, "rev-parse", "--abbrev-ref", "HEAD") or "",
                   commit_hash=commit, commit_date=int(date) if date.isdigit() else 0,
                   version=commit[:8])
