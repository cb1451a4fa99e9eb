"""Custom code (A1111's built-in script): Python typed in the UI or sent with the request runs
on the server as the body of a function that gets `p` (and `display(images, seed, info)`), and
returns the result: `return process_images(p)`.

It runs arbitrary code, so it exists only with `--allow-code`; without it the Script dropdown
does not offer it and an API request naming it is refused with 403 and the reason."""
import textwrap
import types

import gradio as gr

from modules import scripts, shared
from modules.processing import Processed

EXAMPLE = """from modules.processing import process_images

p.width = 768
p.height = 768
p.batch_size = 2
p.steps = 10

return process_images(p)
"""


def code_allowed():
    return bool(getattr(shared.cmd_opts, "allow_code", False))


class Script(scripts.Script):
    disabled_reason = ("it runs Python code from the request on the server; start the server "
                       "with --allow-code to allow it")

    def title(self):
        return "Custom code"

    def show(self, is_img2img):
        return code_allowed()

    def ui(self, is_img2img):
        code = gr.Code(value=EXAMPLE, language="python", label="Python code",
                       elem_id=self.elem_id("code"))
        indent_level = gr.Number(label="Indent level", value=2, precision=0,
                                 elem_id=self.elem_id("indent_level"))
        return [code, indent_level]

    def run(self, p, code, indent_level=2):
        if not code_allowed():      # the flag is read again: never run code without it
            raise PermissionError(f"Custom code is disabled: {self.disabled_reason}")
        shown = {"images": [], "seed": -1, "info": ""}

        def display(images, seed=-1, info=""):
            shown.update(images=list(images), seed=seed, info=info)

        module = types.ModuleType("custom_code")
        module.__dict__.update(p=p, display=display)
        indent = " " * max(1, int(indent_level or 2))
        source = "def __custom_code__():\n" + textwrap.indent(code or "pass", indent)
        exec(compile(source, "<custom code>", "exec"), module.__dict__)   # noqa: S102 - the point
        result = module.__custom_code__()
        if result is not None and hasattr(result, "infotexts"):     # a Processed
            return result
        return Processed(p, shown["images"], shown["seed"], shown["info"])
