"""The browser side of the UI: `style.css` and `javascript/*.js` of the program, then those of
every extension (extensions-builtin/*, then extensions/*), handed to Gradio's mount as `head`
(scripts) and `css`; the `--theme light|dark` switch; and the third-party licenses page
(`html/licenses.html`, served at /licenses and linked from the page footer)."""
from __future__ import annotations

import argparse
import html
import logging
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from modules.ui.localization import localization_script

log = logging.getLogger(__name__)

FIRST_SCRIPT = "script.js"      # the helpers (gradioApp, onUiLoaded…) every other script uses
THEMES = ("light", "dark")
LICENSES_ROUTE = "/licenses"
LICENSES_FILE = Path("html") / "licenses.html"
# relative, so the link also works under --subpath
FOOTER_LINKS: list[Any] = ["api", "gradio", "settings", {"label": "Licenses", "url": "licenses"}]
# what we ship besides requirements.txt: the dependencies users meet in the licenses
EXTRA_LICENSED_PACKAGES = ("starlette", "torchsde", "einops", "tokenizers", "ftfy", "regex",
                           "huggingface-hub", "tqdm", "python-multipart", "packaging")


@dataclass(frozen=True)
class UiAssets:
    """The files the page loads, in load order, and the theme forced by --theme."""
    scripts: tuple[Path, ...]
    stylesheets: tuple[Path, ...]
    theme: str | None = None
    #: the chosen localization's <script> (window.localization), "" for none
    localization_script: str = ""

    def head_html(self) -> str:
        """<script> elements: the theme switch, then every script's text (inlined, so they load
        without a file route and behind --gradio-auth alike)."""
        parts = [theme_script(self.theme)] if self.theme else []
        if self.localization_script:
            parts.append(self.localization_script)
        for path in self.scripts:
            source = _read_text(path)
            if source is None:
                continue
            # a "</script" inside the code would end the element early
            source = re.sub(r"</(script)", r"<\\/\1", source, flags=re.IGNORECASE)
            parts.append(f"<script data-source=\"{html.escape(path.name)}\">\n{source}\n</script>")
        return "\n".join(parts)

    def css(self) -> str:
        texts = []
        for path in self.stylesheets:
            text = _read_text(path)
            if text is not None:
                texts.append(f"/* {path.name} ({path.parent.name}) */\n{text}")
        return "\n".join(texts)

    def mount_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of gr.mount_gradio_app (Gradio 6 takes head / css / footer links
        at mount or launch time, not in gr.Blocks)."""
        return {"head": self.head_html(), "css": self.css(), "footer_links": list(FOOTER_LINKS)}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        log.warning("Cannot read UI file %s: %s", path, error)
        return None


def normalize_theme(theme: str | None) -> str | None:
    """"light" / "dark" (any case), else None: the browser's own preference."""
    if not theme:
        return None
    value = theme.strip().lower()
    if value not in THEMES:
        log.warning("Unknown --theme %r (use light or dark); the browser's preference is used",
                    theme)
        return None
    return value


def theme_script(theme: str) -> str:
    """Gradio picks light or dark from the `__theme` URL parameter: the page reloads itself
    with it when the address has none (what A1111 does for --theme)."""
    return ("<script>(function () {\n"
            "  const url = new URL(window.location.href);\n"
            "  if (!url.searchParams.has('__theme')) {\n"
            f"    url.searchParams.set('__theme', '{theme}');\n"
            "    window.location.replace(url.href);\n"
            "  }\n"
            "})();</script>")


def extension_folders(builtin_dir: Path | None, user_dir: Path | None) -> list[Path]:
    """Extension folders in load order: ours (extensions-builtin) first, then the user's, each
    sorted by name; hidden folders are skipped."""
    folders: list[Path] = []
    for parent in (builtin_dir, user_dir):
        if parent is None or not parent.is_dir():
            continue
        folders.extend(sorted((child for child in parent.iterdir()
                               if child.is_dir() and not child.name.startswith(".")),
                              key=lambda child: child.name.lower()))
    return folders


def folder_scripts(javascript_dir: Path) -> list[Path]:
    """`*.js` of one javascript/ folder, script.js first, the rest by name."""
    if not javascript_dir.is_dir():
        return []
    scripts = sorted((path for path in javascript_dir.glob("*.js") if path.is_file()),
                     key=lambda path: path.name.lower())
    return sorted(scripts, key=lambda path: path.name != FIRST_SCRIPT)


def collect_ui_assets(root: Path, extension_dirs: Sequence[Path], *, theme: str | None = None,
                      user_css: Path | None = None, localization: str | None = None) -> UiAssets:
    """The program's javascript/ and style.css, then each extension's, then user.css; the
    named localization's texts."""
    scripts = folder_scripts(root / "javascript")
    stylesheets = [root / "style.css"] if (root / "style.css").is_file() else []
    for folder in extension_dirs:
        scripts.extend(folder_scripts(folder / "javascript"))
        if (folder / "style.css").is_file():
            stylesheets.append(folder / "style.css")
    if user_css is not None and user_css.is_file():
        stylesheets.append(user_css)
    return UiAssets(tuple(scripts), tuple(stylesheets), normalize_theme(theme),
                    localization_script(localization, root, extension_dirs))


def ui_assets_for(args: argparse.Namespace, paths: Any,
                  localization: str | None = None) -> UiAssets:
    """The assets of the running app (its Paths and flags, the chosen localization)."""
    return collect_ui_assets(
        paths.root, extension_folders(paths.builtin_extensions_dir, paths.extensions_dir),
        theme=getattr(args, "theme", None), user_css=paths.data_dir / "user.css",
        localization=localization)


# -- licenses ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PackageLicense:
    name: str
    version: str
    license: str
    homepage: str


def requirement_names(requirements_file: Path) -> list[str]:
    """Package names of a requirements.txt (comments, options and pins dropped)."""
    names = []
    for line in requirements_file.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._\-]*", line)
        if match:
            names.append(match.group(0))
    return names


def _license_of(meta: Any) -> str:
    """The declared license: the SPDX expression, a short License field, or the classifiers."""
    expression = meta.get("License-Expression")
    if expression:
        return expression.strip()
    declared = (meta.get("License") or "").strip()
    if declared and "\n" not in declared and len(declared) <= 60:
        return declared
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or []
                   if c.startswith("License ::")]
    if classifiers:
        return ", ".join(classifiers)
    return declared.splitlines()[0][:60] if declared else "see the package"


def _homepage_of(meta: Any) -> str:
    if meta.get("Home-page"):
        return meta["Home-page"]
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("homepage", "home", "source", "repository", "source code"):
            return url.strip()
    return ""


def package_licenses(names: Iterable[str]) -> list[PackageLicense]:
    """The license of each installed package (from its metadata), sorted by name; packages that
    are not installed are left out."""
    found: dict[str, PackageLicense] = {}
    for name in names:
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            log.info("licenses: %s is not installed", name)
            continue
        found[meta["Name"].lower()] = PackageLicense(meta["Name"], meta["Version"],
                                                     _license_of(meta), _homepage_of(meta))
    return [found[key] for key in sorted(found)]


def render_licenses_html(licenses: Sequence[PackageLicense]) -> str:
    rows = []
    for item in licenses:
        name = html.escape(item.name)
        link = (f"<a href=\"{html.escape(item.homepage)}\">{name}</a>"
                if item.homepage.startswith(("http://", "https://")) else name)
        rows.append(f"<tr><td>{link}</td><td>{html.escape(item.version)}</td>"
                    f"<td>{html.escape(item.license)}</td></tr>")
    body = "\n".join(rows)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Third-party licenses</title>\n<style>body{font-family:sans-serif;margin:2em}"
            "table{border-collapse:collapse}td,th{border:1px solid #8886;padding:.3em .8em;"
            "text-align:left}</style></head>\n<body>\n<h1>Third-party licenses</h1>\n"
            "<p>This program ships with the following packages; each is distributed under its "
            "own license, as declared in the package's metadata.</p>\n"
            "<table>\n<tr><th>Package</th><th>Version</th><th>License</th></tr>\n"
            f"{body}\n</table>\n</body></html>\n")


def shipped_package_names(root: Path) -> list[str]:
    """requirements.txt's packages and the notable dependencies they bring along."""
    requirements = root / "requirements.txt"
    names = requirement_names(requirements) if requirements.is_file() else []
    return [*names, *EXTRA_LICENSED_PACKAGES]


def write_licenses_page(root: Path) -> Path:
    """Regenerate html/licenses.html from the installed packages of requirements.txt."""
    names = shipped_package_names(root)
    target = root / LICENSES_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_licenses_html(package_licenses(names)), encoding="utf-8")
    return target


def register_licenses_route(app: FastAPI, root: Path) -> None:
    """GET /licenses: html/licenses.html (rendered from the installed packages if missing)."""
    def licenses_page() -> HTMLResponse:
        page = root / LICENSES_FILE
        if page.is_file():
            return HTMLResponse(page.read_text(encoding="utf-8"))
        return HTMLResponse(render_licenses_html(package_licenses(shipped_package_names(root))))

    app.add_api_route(LICENSES_ROUTE, licenses_page, methods=["GET"], include_in_schema=False,
                      response_class=HTMLResponse)


if __name__ == "__main__":
    print(write_licenses_page(Path(__file__).resolve().parents[2]))
