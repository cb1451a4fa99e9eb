"""A1111 compatibility view: `modules.images` (save_image, image_grid, resize_image,
read_info_from_image) with A1111's signatures; see modules/scripting/a1111_functions.py."""
from modules.scripting.a1111_functions import (image_grid, read_info_from_image,  # noqa: F401
                                               resize_image, save_image)
