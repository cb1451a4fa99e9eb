"""A1111 compatibility view: `modules.errors` (report, print_error_explanation, display,
display_once, run): an extension's errors go to the log with their tracebacks."""
from modules.scripting.a1111_functions import (display, display_once,  # noqa: F401
                                               print_error_explanation, report, run)
