"""Installing an extension from a git URL and updating it, from the Extensions tab's functions,
against a real git repository on disk: the clone lands under extensions/, loads at the next
start, is refused on a network-facing server without --enable-insecure-extension-access, and
"Check for updates" / "Update" follow the remote."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modules.ui.extensions_tab import (check_updates, current_extensions, install_extension,
                                       update_behind)
from tests.ui.conftest import app_context

SCRIPT = '''from modules import scripts


class Script(scripts.Script):
    def title(self):
        return "Hello from git"

    def run(self, p):
        return None
'''


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


@pytest.fixture
def remote(tmp_path, monkeypatch) -> Path:
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
                       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e",
                       "HOME": str(tmp_path)}.items():
        monkeypatch.setenv(key, value)
    folder = tmp_path / "remote" / "sd-hello.git"
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "hello.py").write_text(SCRIPT)
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "first")
    return folder


def test_install_from_url_then_it_loads_at_the_next_start(tmp_path, remote):
    data = tmp_path / "data"
    with app_context(data) as ctx:
        message = install_extension(ctx, remote.as_uri())
        assert "Installed into" in message and "Restart" in message
        installed = data / "extensions" / "sd-hello"
        assert (installed / "scripts" / "hello.py").read_text() == SCRIPT
        assert [e.name for e in current_extensions(ctx) if not e.is_builtin] == ["sd-hello"]
        assert "already exists" in install_extension(ctx, remote.as_uri())
        assert "Hello from git" not in [s.title() for s in ctx.scripts.txt2img.scripts]
    with app_context(data) as restarted:
        assert "Hello from git" in [s.title() for s in restarted.scripts.txt2img.scripts]


def test_a_failed_install_leaves_nothing_behind(tmp_path, remote):
    data = tmp_path / "data"
    with app_context(data) as ctx:
        message = install_extension(ctx, (tmp_path / "missing.git").as_uri())
        assert message.startswith("git clone failed")
        assert "cannot be an extension folder name" in install_extension(
            ctx, remote.as_uri(), dirname="../escape")
        extensions = data / "extensions"
        assert not extensions.exists() or list(extensions.iterdir()) == []


@pytest.mark.parametrize("flags, allowed", [
    (["--listen"], False), (["--share"], False),
    (["--listen", "--enable-insecure-extension-access"], True)])
def test_a_network_facing_server_refuses_installs(tmp_path, remote, flags, allowed):
    with app_context(tmp_path / "data", extra_args=flags) as ctx:
        message = install_extension(ctx, remote.as_uri())
        installed = (tmp_path / "data" / "extensions" / "sd-hello").exists()
        assert installed == allowed
        if not allowed:
            assert "--enable-insecure-extension-access" in message
            assert "--enable-insecure-extension-access" in check_updates(ctx)


def test_check_for_updates_and_update(tmp_path, remote):
    with app_context(tmp_path / "data") as ctx:
        install_extension(ctx, remote.as_uri())
        assert check_updates(ctx) == "sd-hello: latest"
        (remote / "scripts" / "more.py").write_text("# more\n")
        git(remote, "add", "-A")
        git(remote, "commit", "-qm", "second")
        assert check_updates(ctx) == "sd-hello: behind by 1 commit(s)"
        message = update_behind(ctx)
        assert "sd-hello updated to" in message and "Restart" in message
        assert (tmp_path / "data" / "extensions" / "sd-hello" / "scripts" / "more.py").exists()
        assert check_updates(ctx) == "sd-hello: latest"
        assert update_behind(ctx) == "Every extension is up to date."
