"""Installing an extension from a git URL and updating installed ones (A1111's Extensions tab:
"Install from URL", "Check for updates", "Apply and restart"), with the `git` command.

Installing runs code from the network on this machine at the next start, so it is refused when
the server listens on a network (`--listen`, `--server-name`, `--share`, `--ngrok`) unless
`--enable-insecure-extension-access` says so, as A1111 does. A clone goes to a temporary
folder first and is renamed when complete: a failed or interrupted install leaves nothing
under the extension's name."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.scripting.extension_git import git_info

CLONE_TIMEOUT_SECONDS = 300
FETCH_TIMEOUT_SECONDS = 60
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ExtensionInstallError(ValueError):
    """An install or update that cannot be done; the message says why."""


def extension_access_refusal(args: Any) -> str | None:
    """Why installing / updating is not allowed with these flags, or None when it is."""
    if getattr(args, "enable_insecure_extension_access", False):
        return None
    exposed = [flag for flag, on in (
        ("--listen", getattr(args, "listen", False)),
        ("--server-name", getattr(args, "server_name", None)),
        ("--share", getattr(args, "share", False)),
        ("--ngrok", getattr(args, "ngrok", None))) if on]
    if not exposed:
        return None
    return (f"Installing and updating extensions is disabled because the server is reachable "
            f"from the network ({', '.join(exposed)}); start it with "
            f"--enable-insecure-extension-access to allow it")


def _git(*args: str, cwd: Path | None = None, timeout: int = FETCH_TIMEOUT_SECONDS) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                timeout=timeout)
    except FileNotFoundError:
        raise ExtensionInstallError("git is not installed on this machine") from None
    except subprocess.TimeoutExpired:
        raise ExtensionInstallError(f"git {args[0]} took longer than {timeout} s") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ExtensionInstallError(f"git {args[0]} failed: {detail[-1] if detail else '?'}")
    return result.stdout.strip()


def folder_name_for(url: str, dirname: str | None = None) -> str:
    """The extension's folder: `dirname`, else the URL's last part without `.git`."""
    name = (dirname or "").strip() or url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise ExtensionInstallError(f"{name!r} cannot be an extension folder name (letters, "
                                    f"digits, '.', '_' and '-')")
    return name


def install_from_url(extensions_dir: Path, url: str, *, branch: str | None = None,
                     dirname: str | None = None) -> Path:
    """Clone `url` (a branch of it when given) into extensions_dir/<name>; the folder."""
    url = (url or "").strip()
    if not url:
        raise ExtensionInstallError("Enter the URL of the extension's git repository")
    if url.startswith("-"):
        raise ExtensionInstallError(f"{url!r} is not a repository URL")
    name = folder_name_for(url, dirname)
    target = extensions_dir / name
    if target.exists():
        raise ExtensionInstallError(f"Extension folder {name} already exists: {target}")
    extensions_dir.mkdir(parents=True, exist_ok=True)
    temporary = extensions_dir / f".installing-{name}"
    shutil.rmtree(temporary, ignore_errors=True)
    command = ["clone", "--depth", "1", *(["--branch", branch.strip()] if branch else []),
               "--", url, str(temporary)]
    try:
        _git(*command, timeout=CLONE_TIMEOUT_SECONDS)
        temporary.rename(target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return target


@dataclass(frozen=True)
class UpdateStatus:
    name: str
    behind: int | None         # commits the remote branch is ahead; None = could not tell
    message: str


def check_for_update(folder: Path) -> UpdateStatus:
    """Fetch the checkout's remote and count the commits it is behind."""
    info = git_info(folder)
    if info is None:
        return UpdateStatus(folder.name, None, "not a git checkout")
    if not info.remote:
        return UpdateStatus(folder.name, None, "no remote")
    try:
        _git("fetch", "--quiet", "origin", cwd=folder)
        behind = int(_git("rev-list", "--count", "HEAD..@{upstream}", cwd=folder) or "0")
    except (ExtensionInstallError, ValueError) as error:
        return UpdateStatus(folder.name, None, f"could not check: {error}")
    return UpdateStatus(folder.name, behind, f"behind by {behind} commit(s)" if behind
                        else "latest")


def update_extension(folder: Path) -> str:
    """Bring the checkout to its remote branch (fast-forward only: local changes are kept
    and an update that would overwrite them is refused)."""
    if git_info(folder) is None:
        raise ExtensionInstallError(f"{folder.name} is not a git checkout")
    _git("pull", "--ff-only", "--quiet", cwd=folder, timeout=CLONE_TIMEOUT_SECONDS)
    info = git_info(folder)
    return f"{folder.name} updated to {info.version if info else '?'}"
