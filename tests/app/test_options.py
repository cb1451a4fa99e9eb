"""The settings registry: defaults, coercion, API restrictions, callbacks, config.json handling."""
import json
import logging

import pytest

from modules.app.option_defs import default_option_definitions
from modules.app.options import OptionInfo, Options


@pytest.fixture
def opts(tmp_path):
    return Options(default_option_definitions(), tmp_path / "config.json")


def test_a1111_defaults(opts):
    expected = {
        "sd_model_checkpoint": None, "sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1,
        "eta_noise_seed_delta": 0, "samples_format": "png", "grid_format": "png",
        "samples_save": True, "enable_pnginfo": True, "jpeg_quality": 80,
        "outdir_txt2img_samples": "outputs/txt2img-images", "outdir_txt2img_grids":
        "outputs/txt2img-grids", "comma_padding_backtrack": 20, "emphasis": "Original",
        "eta_ancestral": 1.0, "eta_ddim": 0.0, "s_noise": 1.0, "show_progress_every_n_steps": 10,
        "infotext_styles": "Apply if any", "infotext_skip_pasting": [], "n_rows": -1,
        "quicksettings_list": ["sd_model_checkpoint"], "beta_dist_alpha": 0.6,
        "directories_filename_pattern": "[date]", "save_to_dirs": True, "sd_checkpoints_limit": 1,
        "show_progress_type": "Approx NN", "disable_weights_auto_swap": True,
        "sd_v_prediction": False, "samples_filename_pattern": "",
        # ours: CPU noise so that a seed gives the same image on every machine
        "randn_source": "CPU",
    }
    data = opts.data_dict()
    for key, value in expected.items():
        assert data[key] == value, key
    assert opts.samples_format == "png"       # attribute access, as extensions use it
    with pytest.raises(AttributeError):
        _ = opts.no_such_setting


def test_infotext_labels_map_to_options(opts):
    mapping = opts.infotext_to_option()
    assert mapping["Clip skip"] == "CLIP_stop_at_last_layers"
    assert mapping["ENSD"] == "eta_noise_seed_delta"
    assert mapping["RNG"] == "randn_source"
    assert mapping["Model hash"] == "sd_model_checkpoint"
    assert mapping["Eta DDIM"] == "eta_ddim"
    assert mapping["Schedule rho"] == "rho"


def test_set_coerces_like_a1111(opts):
    assert opts.set("jpeg_quality", "7") is True and opts.get("jpeg_quality") == 7
    assert opts.set("CLIP_stop_at_last_layers", 2.0) and opts.get("CLIP_stop_at_last_layers") == 2
    assert opts.set("eta_ddim", "0.5") and opts.get("eta_ddim") == 0.5
    assert opts.set("s_churn", 1) and isinstance(opts.get("s_churn"), float)
    assert opts.set("samples_save", "false") and opts.get("samples_save") is False
    assert opts.set("quicksettings_list", "sd_model_checkpoint, sd_vae")
    assert opts.get("quicksettings_list") == ["sd_model_checkpoint", "sd_vae"]
    assert opts.set("jpeg_quality", 7) is False          # unchanged value → no change reported


def test_set_rejects_bad_values_and_unknown_keys(opts):
    with pytest.raises(ValueError, match="jpeg_quality"):
        opts.set("jpeg_quality", "very high")
    with pytest.raises(ValueError):
        opts.set("CLIP_stop_at_last_layers", 1.5)
    with pytest.raises(ValueError, match="not one of"):
        opts.set("emphasis", "Loud")
    with pytest.raises(KeyError):
        opts.set("not_a_setting", 1)
    assert opts.get("jpeg_quality") == 80


def test_restricted_and_frozen_settings_are_ignored(tmp_path):
    opts = Options(default_option_definitions(), tmp_path / "config.json")
    assert opts.set("api_enable_requests", False, is_api=True) is False
    assert opts.get("api_enable_requests") is True
    assert opts.set("api_enable_requests", False) is True    # the UI may change it
    frozen = Options(default_option_definitions(), tmp_path / "config.json", frozen=True)
    assert frozen.set("jpeg_quality", 50) is False and frozen.get("jpeg_quality") == 80


def test_onchange_runs_on_change_and_failure_restores(opts):
    calls = []
    opts.onchange("sd_vae", lambda: calls.append(opts.get("sd_vae")))
    opts.set("sd_vae", "a.safetensors")
    opts.set("sd_vae", "a.safetensors")
    assert calls == ["a.safetensors"]

    def failing():
        raise RuntimeError("model load failed")
    opts.onchange("emphasis", failing)
    with pytest.raises(RuntimeError):
        opts.set("emphasis", "No norm")
    assert opts.get("emphasis") == "Original"


def test_save_is_atomic_and_load_round_trips(tmp_path, opts):
    opts.set("jpeg_quality", 55)
    opts.set("sd_model_checkpoint", "sub/model.safetensors [0123456789]")
    opts.save()
    path = tmp_path / "config.json"
    assert json.loads(path.read_text()) == {
        "jpeg_quality": 55, "sd_model_checkpoint": "sub/model.safetensors [0123456789]"}
    assert not (tmp_path / "config.json.tmp").exists()
    again = Options(default_option_definitions(), path)
    again.load()
    assert again.get("jpeg_quality") == 55
    assert again.get("sd_model_checkpoint") == "sub/model.safetensors [0123456789]"


def test_unknown_keys_survive_and_extensions_pick_them_up(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"control_net_max_models_num": "3", "jpeg_quality": 90}))
    opts = Options(default_option_definitions(), path)
    opts.load()
    assert "control_net_max_models_num" not in opts.data_dict()
    opts.save()
    assert json.loads(path.read_text())["control_net_max_models_num"] == "3"
    opts.add_option("control_net_max_models_num", OptionInfo(1, "Max models", "slider"))
    assert opts.get("control_net_max_models_num") == 3
    assert opts.data_dict()["control_net_max_models_num"] == 3


def test_corrupt_config_is_moved_aside_with_a_warning(tmp_path, caplog):
    path = tmp_path / "config.json"
    path.write_text('{"jpeg_quality": 5,,,')
    opts = Options(default_option_definitions(), path)
    with caplog.at_level(logging.WARNING):
        opts.load()
    assert opts.get("jpeg_quality") == 80
    backups = list(tmp_path.glob("config.json.corrupt-*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == '{"jpeg_quality": 5,,,'
    assert not path.exists()
    assert any("corrupt" in record.getMessage() for record in caplog.records)
    opts.set("jpeg_quality", 60)
    opts.save()
    assert json.loads(path.read_text()) == {"jpeg_quality": 60}


def test_override_restores_afterwards_even_on_error(opts):
    opts.set("CLIP_stop_at_last_layers", 2)
    with opts.override({"CLIP_stop_at_last_layers": "3", "samples_format": "jpg",
                        "no_such_key": 1}):
        assert opts.get("CLIP_stop_at_last_layers") == 3
        assert opts.get("samples_format") == "jpg"
    assert opts.get("CLIP_stop_at_last_layers") == 2
    assert opts.get("samples_format") == "png"
    with pytest.raises(RuntimeError):
        with opts.override({"eta_ddim": 0.3}):
            raise RuntimeError("job failed")
    assert opts.get("eta_ddim") == 0.0
    with opts.override({"api_useragent": "evil"}, is_api=True):
        assert opts.get("api_useragent") == ""


def test_attribute_assignment_goes_through_validation(opts):
    opts.jpeg_quality = "42"
    assert opts.jpeg_quality == 42
    with pytest.raises(ValueError):
        opts.jpeg_quality = "x"
