"""The Script API machinery: the callback registry and its compat view, loading script files
the way A1111 does, and one tab's runner (selectable / always-on scripts, the args array of
a1111-compat.md §8.3, hooks that raise without stopping the others)."""
from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from modules import script_callbacks
from modules.scripting.callbacks import CallbackRegistry
from modules.scripting.loader import load_script_files, script_files
from modules.scripting.runner import ScriptArgsError, ScriptRunFailed, ScriptRunner

SCRIPT_FILE = '''
import gradio as gr
from modules import scripts, script_callbacks


class Shout(scripts.Script):
    def title(self):
        return "Shout"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Checkbox(value=True, label="enabled"), gr.Textbox(value="!", label="suffix")]

    def process(self, p, enabled, suffix):
        if enabled:
            p.all_prompts = [prompt + suffix for prompt in p.all_prompts]


class Broken(scripts.Script):
    def title(self):
        return "Broken"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p):
        raise RuntimeError("boom")


class Twice(scripts.Script):
    def title(self):
        return "Twice"

    def ui(self, is_img2img):
        return [gr.Slider(minimum=1, maximum=4, value=2, label="times")]

    def run(self, p, times):
        return [p.prompt] * int(times)


class OnlyImg2img(scripts.Script):
    def title(self):
        return "Only img2img"

    def show(self, is_img2img):
        return is_img2img


seen = []
script_callbacks.on_model_loaded(seen.append, name="remember")
'''


@pytest.fixture
def registry():
    registry = CallbackRegistry()
    previous = script_callbacks.use_registry(registry)
    yield registry
    script_callbacks.use_registry(previous)


def write_extension(root: Path, name: str, files: dict[str, str]) -> Path:
    folder = root / name / "scripts"
    folder.mkdir(parents=True)
    for file_name, text in files.items():
        (folder / file_name).write_text(textwrap.dedent(text))
    return root / name


def test_callbacks_run_in_order_and_a_failing_one_is_reported_not_raised(registry, caplog):
    calls = []
    script_callbacks.on_image_saved(lambda params: calls.append(("first", params)))
    script_callbacks.on_image_saved(lambda params: 1 / 0, name="divider")
    script_callbacks.on_image_saved(lambda params: calls.append(("third", params)))
    assert len(registry.run("image_saved", "p")) == 2
    assert calls == [("first", "p"), ("third", "p")]
    [failure] = registry.failures
    assert failure.label == "divider" and "ZeroDivisionError" in failure.message
    assert "Error running on_image_saved callback divider" in caplog.text
    with pytest.raises(ValueError, match="unknown callback kind"):
        registry.add("no_such_event", print)


def test_callbacks_belong_to_the_script_that_registered_them(registry):
    def keep(*_):
        return "kept"

    with registry.loading("/ext/a.py"):
        script_callbacks.on_app_started(lambda demo, app: "a")
        script_callbacks.remove_current_script_callbacks()
        script_callbacks.on_app_started(lambda demo, app: "a again")
    with registry.loading("/ext/b.py"):
        script_callbacks.on_app_started(keep)
    assert registry.run("app_started", None, None) == ["a again", "kept"]
    script_callbacks.remove_callbacks_for_function(keep)
    registry.remove_script("/ext/a.py")
    assert registry.run("app_started", None, None) == []


def test_script_files_load_with_their_classes_and_callbacks(registry, tmp_path):
    extension = write_extension(tmp_path, "my-ext", {
        "good.py": SCRIPT_FILE, "bad.py": "raise ImportError('missing dependency')\n"})
    files = script_files([(extension / "scripts", extension, "my-ext")])
    loaded = load_script_files(files, registry)
    assert [entry.script_class.__name__ for entry in loaded.scripts] == \
        ["Shout", "Broken", "Twice", "OnlyImg2img"]
    assert list(loaded.errors.values()) == ["ImportError: missing dependency"]
    [entry] = registry.callbacks("model_loaded")
    assert entry.script == str(extension / "scripts" / "good.py") and entry.name == "remember"


def test_runner_args_layout_and_api_requests(registry, tmp_path):
    extension = write_extension(tmp_path, "ext", {"good.py": SCRIPT_FILE})
    loaded = load_script_files(script_files([(extension / "scripts", extension, "ext")]),
                               registry)
    txt2img = ScriptRunner(loaded.scripts, is_img2img=False)
    img2img = ScriptRunner(loaded.scripts, is_img2img=True)
    assert [s.title() for s in txt2img.alwayson] == ["Shout", "Broken"]
    assert [s.title() for s in txt2img.selectable] == ["Twice"]
    assert [s.title() for s in img2img.selectable] == ["Twice", "Only img2img"]
    # [selected index, Shout's 2 args, Broken's 0, Twice's 1]
    assert txt2img.default_args() == [0, True, "!", 2]

    args = txt2img.request_args("twice", [3], {"SHOUT": {"args": [True, "?!"]}})
    assert args == [1, True, "?!", 3]
    assert txt2img.request_args(None, None, {"Shout": {"args": [False]}}) == [0, False, "!", 2]
    assert txt2img.request_args(None, None, {"Shout": {}}) == [0, True, "!", 2]
    for script_name, alwayson, message in [
            ("Nope", None, "Script 'Nope' not found"),
            (None, {"Nope": {"args": []}}, "always on script Nope not found"),
            (None, {"Twice": {"args": [2]}},
             "Cannot have a selectable script in the always on scripts params")]:
        with pytest.raises(ScriptArgsError, match=message):
            txt2img.request_args(script_name, [], alwayson)

    # a UI args array as request fields (what a UI job sends to a remote worker) and back
    fields = txt2img.request_fields([1, False, "?!", 3])
    assert fields == ("Twice", [3], {"Shout": {"args": [False, "?!"]}})
    assert txt2img.request_args(*fields) == [1, False, "?!", 3]
    assert txt2img.request_fields([0, True, "!", 5]) == (None, [],
                                                         {"Shout": {"args": [True, "!"]}})


def test_hooks_get_their_slice_and_a_failing_script_does_not_stop_the_others(registry,
                                                                             tmp_path, caplog):
    extension = write_extension(tmp_path, "ext", {"good.py": SCRIPT_FILE})
    loaded = load_script_files(script_files([(extension / "scripts", extension, "ext")]),
                               registry)
    runner = ScriptRunner(loaded.scripts, is_img2img=False)
    p = SimpleNamespace(prompt="cat", all_prompts=["cat", "dog"], script_errors=[],
                        script_args=runner.request_args(None, None,
                                                        {"Shout": {"args": [True, "?"]}}))
    runner.call("process", p)
    assert p.all_prompts == ["cat?", "dog?"]
    assert p.script_errors == ["Script 'Broken' failed in process(): RuntimeError: boom"]
    assert "good.py" in caplog.text and "Traceback" in caplog.text

    assert runner.run(p, runner.request_args("Twice", [3], None)) == ["cat"] * 3
    assert runner.run(p, runner.default_args()) is None
    with pytest.raises(ScriptRunFailed, match="Script .Twice. failed: ValueError"):
        runner.run(p, runner.request_args("Twice", ["three"], None))
