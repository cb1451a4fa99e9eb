"""A1111-style entry point: check the environment, then start webui.main.

Packages are never installed from here: webui.sh / webui.bat create the venv and install
requirements.txt; this only verifies that what it pins is installed and says what to run if not.
"""
from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REQUIREMENTS = ROOT / "requirements.txt"
SUPPORTED_PYTHON = ((3, 10), (3, 11), (3, 12))
_REQUIREMENT_LINE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s;#]+))?")


def python_version_problem(version: tuple[int, int] = sys.version_info[:2]) -> str | None:
    if tuple(version) in SUPPORTED_PYTHON:
        return None
    return (f"Python {version[0]}.{version[1]} is not tested with this program; use Python 3.11 "
            f"(webui.sh creates its venv with python3.11). Pass --skip-python-version-check to "
            f"start anyway.")


def parse_requirements(text: str) -> list[tuple[str, str | None]]:
    """(distribution name, pinned version or None) for each requirement line."""
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _REQUIREMENT_LINE.match(line)
        if match:
            pins.append((match.group(1), match.group(2)))
    return pins


def check_requirements(pins: list[tuple[str, str | None]]) -> tuple[list[str], list[str]]:
    """(missing distributions, "name: installed X, wanted Y" lines for other versions)."""
    missing, different = [], []
    for name, wanted in pins:
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
            continue
        # local build tags (torch 2.x+cpu) do not make a different version
        if wanted and installed.split("+")[0] != wanted.split("+")[0]:
            different.append(f"{name}: installed {installed}, requirements.txt wants {wanted}")
    return missing, different


def prepare_environment(args) -> int:
    """0 when the program can start; 1 (with a message) when required packages are missing."""
    if not args.skip_python_version_check:
        problem = python_version_problem()
        if problem:
            print(f"Warning: {problem}", file=sys.stderr)
    if args.skip_prepare_environment or args.skip_install or not REQUIREMENTS.exists():
        return 0
    missing, different = check_requirements(parse_requirements(REQUIREMENTS.read_text()))
    for line in different:
        print(f"Warning: {line}", file=sys.stderr)
    if missing:
        print("Missing packages: " + ", ".join(missing) + "\n"
              "Run ./webui.sh (Linux/macOS) or webui.bat (Windows) to create the venv and install "
              "requirements.txt, or install it yourself: python -m pip install -r requirements.txt",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    sys.path.insert(0, str(ROOT))
    from modules.app.cmd_args import parse_args
    args, _ = parse_args(argv)
    status = prepare_environment(args)
    if status or args.exit:
        return status
    if not args.skip_install:
        from modules.scripting.extension_setup import enabled_extension_folders, run_installers
        for failure in run_installers(enabled_extension_folders(args, ROOT), ROOT):
            print(f"Warning: extension installer failed: {failure}", file=sys.stderr)
    import webui
    return webui.main(argv)


if __name__ == "__main__":
    sys.exit(main())
