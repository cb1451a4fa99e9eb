"""The Checkpoint Merger tab's handlers over a real app context: a merge from the tab's values, the
refusals shown in the tab, "Read metadata" and loading a recipe into the fields."""
from __future__ import annotations

import json

from modules.ui.merger_tab import FIELDS, read_metadata, recipe_values, run_merge
from tests.engine.tiny_checkpoints import write_tiny_checkpoint
from tests.ui.conftest import app_context


def tab_values(**changes):
    values = {"primary_model_name": None, "secondary_model_name": None,
              "tertiary_model_name": None, "interp_method": "Weighted sum", "multiplier": 0.3,
              "save_as_half": False, "custom_name": "", "checkpoint_format": "safetensors",
              "config_source": 0, "bake_in_vae": "None", "discard_weights": "",
              "save_metadata": True, "add_merge_recipe": True, "copy_metadata_fields": True,
              "metadata_json": "{}", "overwrite": False}
    values.update(changes)
    return values


def test_a_merge_from_the_tab_shows_where_it_was_saved_and_its_recipe(tmp_path):
    ckpt_dir = tmp_path / "models" / "Stable-diffusion"
    ckpt_dir.mkdir(parents=True)
    write_tiny_checkpoint(ckpt_dir / "anime.safetensors", "sd1", seed=1,
                          metadata={"ss_output_name": "anime"})
    write_tiny_checkpoint(ckpt_dir / "real.safetensors", "sd1", seed=2)
    with app_context(tmp_path) as ctx:
        titles = ctx.checkpoints.titles()
        message, recipe = run_merge(ctx, tab_values(primary_model_name=titles[0],
                                                    secondary_model_name=titles[1]))
        assert "Checkpoint saved to" in message
        assert "0.7(anime) + 0.3(real).safetensors" in message
        assert (ckpt_dir / "0.7(anime) + 0.3(real).safetensors").is_file()
        assert json.loads(recipe)["primary_model_name"] == "anime.safetensors"
        assert any(t.startswith("0.7(anime) + 0.3(real).safetensors [")
                   for t in ctx.checkpoints.titles())

        refused, no_recipe = run_merge(ctx, tab_values(primary_model_name=titles[0]))
        assert "needs a secondary model (B)" in refused and no_recipe == ""

        metadata = json.loads(read_metadata(ctx, titles[0], None, None))
        assert metadata["ss_output_name"] == "anime" and "format" not in metadata


def test_a_recipe_file_fills_the_fields(tmp_path):
    recipe = tmp_path / "blend.json"
    recipe.write_text(json.dumps({"comment": "x", "primary_model_name": "a.safetensors",
                                  "secondary_model_name": "b.safetensors", "multiplier": 0.3,
                                  "save_as_half": True, "config_source": 3}))
    values = dict(zip([*FIELDS, "result"], recipe_values(str(recipe))))
    assert values["primary_model_name"] == "a.safetensors"
    assert values["tertiary_model_name"] is None
    assert values["save_as_half"] is True and values["config_source"] == "Don't"
    assert values["result"] == ""
    recipe.write_text("{not json")
    *_, message = recipe_values(str(recipe))
    assert "not valid JSON" in message
