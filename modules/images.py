"""A1111 compatibility view: `modules.images` (save_image, image_grid, resize_image,
read_info_from_image, and split_grid / combine_grid / Grid for tiled work) with A1111's
signatures; see modules/scripting/a1111_functions.py and modules/processing/image_tiles.py."""
from modules.processing.image_tiles import Grid, combine_grid, split_grid  # noqa: F401
from modules.scripting.a1111_functions import (image_grid, read_info_from_image,  # noqa: F401
                                               resize_image, save_image)
