"""A1111 compatibility view: `modules.scripts_postprocessing` — the base class of Extras steps
extensions add (`ScriptPostprocessing`) and the image they work on (`PostprocessedImage`)."""
from modules.processing.postprocessing import (PostprocessedImage,  # noqa: F401
                                               PostprocessedImageSharedInfo)
from modules.scripting.postprocessing_scripts import ScriptPostprocessing  # noqa: F401
