"""metadata.ini ordering: an extension's scripts load before or after other extensions' as its
metadata.ini says (and so run their hooks in that order), a missing required extension and
contradicting rules are reported, and everything else keeps A1111's usual order."""
from __future__ import annotations

from pathlib import Path

from modules.scripting.callbacks import CallbackRegistry
from modules.scripting.host import Extension, load_script_host

SCRIPT = '''from modules import scripts


class Script(scripts.Script):
    def title(self):
        return "{title}"

    def show(self, is_img2img):
        return scripts.AlwaysVisible
'''


def extension(root: Path, name: str, scripts: list[str], metadata: str = "") -> Extension:
    folder = root / name
    (folder / "scripts").mkdir(parents=True)
    for title in scripts:
        (folder / "scripts" / f"{title.lower()}.py").write_text(SCRIPT.format(title=title))
    if metadata:
        (folder / "metadata.ini").write_text(metadata)
    return Extension(name, folder, False, True)


def titles(tmp_path: Path, extensions: list[Extension]) -> tuple[list[str], list[str]]:
    app_scripts = tmp_path / "app" / "scripts"
    app_scripts.mkdir(parents=True, exist_ok=True)
    host = load_script_host(app_scripts, extensions, CallbackRegistry())
    return [script.title() for script in host.txt2img.alwayson], host.metadata_problems


def test_without_metadata_extensions_load_by_folder_name(tmp_path):
    found, problems = titles(tmp_path, [extension(tmp_path, "a-ext", ["Alpha"]),
                                        extension(tmp_path, "b-ext", ["Beta", "Bravo"])])
    assert found == ["Alpha", "Beta", "Bravo"] and problems == []


def test_before_and_after_move_scripts(tmp_path):
    first = extension(tmp_path, "a-ext", ["Alpha"], "[Extension]\nName = Alpha-Ext\n"
                      "[scripts/alpha.py]\nAfter = b-ext/scripts/bravo.py\n")
    second = extension(tmp_path, "b-ext", ["Beta", "Bravo"])
    third = extension(tmp_path, "c-ext", ["Charlie"], "[Extension]\nBefore = alpha-ext\n")
    found, problems = titles(tmp_path, [first, second, third])
    assert found == ["Beta", "Bravo", "Charlie", "Alpha"] and problems == []


def test_missing_requirements_and_cycles_are_reported(tmp_path):
    first = extension(tmp_path, "a-ext", ["Alpha"],
                      "[Extension]\nRequires = controlnet\nAfter = b-ext\n")
    second = extension(tmp_path, "b-ext", ["Beta"], "[Extension]\nAfter = a-ext\n")
    found, problems = titles(tmp_path, [first, second])
    assert found == ["Alpha", "Beta"]                   # the usual order where rules conflict
    assert any("cycle" in problem for problem in problems)
    assert "a-ext requires controlnet, which is not installed or not enabled" in problems
