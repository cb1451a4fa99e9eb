"""Run a merge recipe without the server:

    python -m modules.merger recipe.json [--data-dir D] [--ckpt-dir D] [--primary NAME] ...

The recipe is a JSON object of the merge fields (those of POST /sdapi/v1/merge-checkpoints);
the models are looked up in the same folders the web UI uses (the same path flags). With
`--recipe-from FILE.safetensors` it prints the recipe a merged checkpoint was made with instead.
Exit status 0 on success, 1 when the merge was refused or failed (the reason on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modules.app.cmd_args import add_path_flags
from modules.app.context import build_merger, build_model_registries
from modules.app.paths import Paths
from modules.engine.checkpoint_io import CheckpointLoadError
from modules.engine.checkpoint_merge import MergeError, MergeWriteError
from modules.merger.request import InvalidMergeRequest, load_recipe, recipe_from_checkpoint
from modules.merger.service import MergeModelNotFound

ROOT = Path(__file__).resolve().parents[2]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modules.merger",
                                     description="Merge checkpoints from a JSON recipe.")
    parser.add_argument("recipe", nargs="?", help="the recipe file (JSON)")
    parser.add_argument("--recipe-from", metavar="CHECKPOINT",
                        help="print the recipe stored in a merged .safetensors file and exit")
    for slot in ("primary", "secondary", "tertiary"):
        parser.add_argument(f"--{slot}", metavar="NAME",
                            help=f"use this {slot} model instead of the recipe's (name or hash)")
    parser.add_argument("--custom-name", help="output name (without extension)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing checkpoint of the same name")
    parser.add_argument("--no-hashing", action="store_true", help="accepted; recipes need hashes")
    parser.add_argument("--disable-safe-unpickle", action="store_true",
                        help="read .ckpt files with arbitrary pickles (only files you trust)")
    add_path_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.recipe_from:
        try:
            print(json.dumps(recipe_from_checkpoint(args.recipe_from), indent=2))
        except (CheckpointLoadError, InvalidMergeRequest) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    if not args.recipe:
        parser.error("a recipe file is required")
    try:
        request = load_recipe(args.recipe)
        for slot in ("primary", "secondary", "tertiary"):
            override = getattr(args, slot)
            if override:
                setattr(request, f"{slot}_model_name", override)
                setattr(request, f"{slot}_model_sha256", "")   # another file: no pin
        if args.custom_name:
            request.custom_name = args.custom_name
        request.overwrite = request.overwrite or args.overwrite
        paths = Paths.from_args(args, ROOT)
        checkpoints, vaes = build_model_registries(args, paths)
        merger = build_merger(args, paths, checkpoints, vaes)
        result = merger.merge(request, callback=_print_progress,
                              on_stage=lambda text: print(text, file=sys.stderr))
    except (InvalidMergeRequest, MergeModelNotFound, MergeError, MergeWriteError,
            FileExistsError, CheckpointLoadError) as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"title": result.title, "filename": result.filename,
                      "sha256": result.sha256}, indent=2))
    return 0


def _print_progress(done: int, total: int, key: str) -> None:
    if done == total or done % 50 == 0:
        print(f"\r{done}/{total} tensors", end="\n" if done == total else "", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
