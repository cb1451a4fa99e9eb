"""A1111 compatibility view: `modules.ui_components` (FormRow, FormColumn, FormGroup, FormHTML,
ToolButton, DropdownMulti, InputAccordion); see modules/ui/compat_components.py."""
from modules.ui.compat_components import (DropdownMulti, FormColumn, FormGroup,  # noqa: F401
                                          FormHTML, FormRow, InputAccordion, ToolButton)
