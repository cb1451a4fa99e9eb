"""style.css and javascript/*.js (ours, then extensions') reach the served page, --theme forces
Gradio's light / dark mode, /licenses lists the shipped packages; the Ctrl+Up / Ctrl+Down text
edit of javascript/edit-attention.js run under node."""
from __future__ import annotations

import json
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modules.app.cmd_args import parse_args
from modules.app.context import build_app_context
from modules.ui.assets import FIRST_SCRIPT, collect_ui_assets, extension_folders, \
    normalize_theme, package_licenses, render_licenses_html

ROOT = Path(__file__).resolve().parents[2]
OUR_SCRIPTS = ("script.js", "edit-attention.js", "generate-forever.js", "hints.js",
               "paste-infotext.js")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_scripts_and_styles_are_collected_in_load_order(tmp_path):
    root = tmp_path / "program"
    _write(root / "javascript" / "zeta.js", "var zeta = 1;")
    _write(root / "javascript" / "alpha.js", "var alpha = 1;")
    _write(root / "javascript" / FIRST_SCRIPT, "function gradioApp() {}")
    _write(root / "style.css", "#ours { color: red; }")
    _write(root / "extensions-builtin" / "lora" / "javascript" / "lora.js", "var lora = 1;")
    _write(root / "extensions-builtin" / "lora" / "style.css", ".lora { margin: 0; }")
    _write(tmp_path / "data" / "extensions" / "user-ext" / "javascript" / "user.js", "var u;")
    _write(tmp_path / "data" / "extensions" / ".hidden" / "javascript" / "no.js", "var no;")
    _write(tmp_path / "data" / "user.css", "body { --user: 1; }")

    folders = extension_folders(root / "extensions-builtin", tmp_path / "data" / "extensions")
    assert [folder.name for folder in folders] == ["lora", "user-ext"]
    assets = collect_ui_assets(root, folders, theme="Dark", user_css=tmp_path / "data" / "user.css")
    assert [path.name for path in assets.scripts] == ["script.js", "alpha.js", "zeta.js",
                                                      "lora.js", "user.js"]
    head = assets.head_html()
    assert head.index("function gradioApp") < head.index("var alpha") < head.index("var lora") \
        < head.index("var u;")
    assert "var no;" not in head
    css = assets.css()
    assert css.index("#ours") < css.index(".lora") < css.index("--user")
    assert assets.theme == "dark" and "__theme" in head and "'dark'" in head


def test_a_closing_script_tag_inside_a_script_is_escaped(tmp_path):
    _write(tmp_path / "javascript" / "tricky.js", "const s = '</script>';")
    head = collect_ui_assets(tmp_path, []).head_html()
    assert head.count("</script>") == 1 and "<\\/script>" in head


@pytest.mark.parametrize("flag, expected", [("light", "light"), ("DARK", "dark"),
                                            ("purple", None), (None, None)])
def test_theme_flag(flag, expected):
    assert normalize_theme(flag) == expected


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The real UI app (create_ui_app) with --theme dark, and its TestClient."""
    data = tmp_path_factory.mktemp("data")
    _write(data / "extensions" / "demo-ext" / "javascript" / "demo.js",
           "window.demoExtensionLoaded = true;")
    _write(data / "extensions" / "demo-ext" / "style.css", ".demo-extension { color: teal; }")
    args, _ = parse_args(["--data-dir", str(data), "--skip-load-model-at-start",
                          "--theme", "dark"])
    context = build_app_context(args, ROOT)
    from modules.ui.app import create_ui_app
    with TestClient(create_ui_app(context)) as client:
        yield client
    context.close()


def test_served_page_includes_our_and_extension_scripts_and_css(served):
    page = served.get("/")
    assert page.status_code == 200
    config = served.get("/config").json()
    head, css = config["head"], config["css"]
    for name in OUR_SCRIPTS:
        source = (ROOT / "javascript" / name).read_text(encoding="utf-8")
        assert f'data-source="{name}"' in head
        first_code_line = next(line for line in source.splitlines()
                               if line.strip() and not line.startswith("//"))
        assert first_code_line in head
        # the page embeds the same config (JSON-escaped)
        assert f'data-source=\\"{name}\\"' in page.text
    assert "window.demoExtensionLoaded = true;" in head
    assert head.index('data-source="script.js"') < head.index('data-source="demo.js"')
    assert ".token-counter" in css and ".demo-extension" in css
    # --theme dark: the page asks Gradio for its dark mode
    assert "searchParams.set('__theme', 'dark')" in head


def test_licenses_page_is_served_and_linked_from_the_footer(served):
    footer = served.get("/config").json()["footer_links"]
    assert {"label": "Licenses", "url": "licenses"} in footer
    page = served.get("/licenses")
    assert page.status_code == 200 and "Third-party licenses" in page.text
    for package in ("torch", "gradio", "transformers", "open_clip_torch", "k-diffusion",
                    "safetensors", "spandrel", "fastapi", "pillow", "numpy", "lark", "piexif",
                    "mediapipe", "opencv-contrib-python"):
        assert f">{package}<" in page.text.lower(), package
    assert "Apache-2.0" in page.text and "MIT" in page.text and "BSD" in page.text


def test_licenses_come_from_package_metadata():
    found = {item.name.lower(): item for item in package_licenses(["gradio", "lark", "nope-x"])}
    assert set(found) == {"gradio", "lark"}
    assert found["gradio"].version == metadata.version("gradio")
    assert found["gradio"].license == "Apache-2.0" and found["lark"].license == "MIT"
    html_text = render_licenses_html(list(found.values()))
    assert "<td>Apache-2.0</td>" in html_text and "<td>MIT</td>" in html_text


def test_committed_licenses_file_names_what_requirements_ship():
    text = (ROOT / "html" / "licenses.html").read_text(encoding="utf-8").lower()
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        name = line.split("#")[0].split("==")[0].strip().lower()
        if name and name != "setuptools":
            assert f">{name}<" in text, name


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.parametrize("text, start, end, delta, expected", [
    ("a cat", 2, 5, 0.1, ("a (cat:1.1)", 3, 6)),              # selection
    ("a cat", 3, 3, -0.1, ("a (cat:0.9)", 3, 6)),             # word under the cursor
    ("a (cat:1.1) x", 4, 4, 0.1, ("a (cat:1.2) x", 3, 6)),    # inside a weighted group
    ("a (cat:1.1) x", 3, 6, -0.1, ("a cat x", 2, 5)),         # back to 1.0: plain text
    ("a (cat:1.1) x", 2, 11, 0.1, ("a (cat:1.2) x", 3, 6)),   # the whole group selected
    ("a (red cat:1.1), blue", 13, 13, 0.1, ("a (red cat:1.2), blue", 3, 10)),
    ("(cat:1.9)", 2, 2, 0.1, ("(cat:2)", 1, 4)),
])
def test_ctrl_up_down_edits_the_attention_weight(text, start, end, delta, expected):
    script = ("const {editAttentionWeight} = require(process.argv[1]);"
              "const r = editAttentionWeight(...JSON.parse(process.argv[2]));"
              "console.log(JSON.stringify([r.text, r.start, r.end]));")
    result = subprocess.run(
        [NODE, "-e", script, str(ROOT / "javascript" / "edit-attention.js"),
         json.dumps([text, start, end, delta])],
        capture_output=True, text=True, timeout=30, check=True)
    assert tuple(json.loads(result.stdout)) == expected


def test_localizations_from_the_app_and_extensions(tmp_path):
    import json
    from modules.ui.localization import (available_localizations, localization_choices,
                                         localization_script)
    root, extension = tmp_path / "app", tmp_path / "ext"
    (root / "localizations").mkdir(parents=True)
    (extension / "localizations").mkdir(parents=True)
    (root / "localizations" / "fr.json").write_text(json.dumps({"Generate": "Générer"}))
    (extension / "localizations" / "de.json").write_text(
        json.dumps({"Generate": "</script><b>x"}))
    (extension / "localizations" / "broken.json").write_text("{not json")
    assert sorted(available_localizations(root, [extension])) == ["broken", "de", "fr"]
    assert localization_choices(root, [extension])[0] == "None"
    french = localization_script("fr", root, [extension])
    assert 'window.localization = {"Generate": "Générer"};' in french
    german = localization_script("de", root, [extension])
    assert german.count("</script") == 1 and german.endswith("</script>")
    assert localization_script("broken", root, [extension]) == ""
    assert localization_script("xx", root, [extension]) == ""
    assert localization_script("None", root, [extension]) == ""
