"""Flags with A1111's names, unknown extension flags, /cmd-flags redaction, folder layout."""
import json
from pathlib import Path

from modules.app.cmd_args import REDACTED, build_parser, parse_args, redacted_flags
from modules.app.paths import Paths


def test_defaults_match_a1111():
    ns, unknown = parse_args([])
    assert unknown == []
    assert ns.port is None and ns.api is False and ns.nowebui is False
    assert ns.timeout_keep_alive == 30
    assert ns.precision == "autocast"
    assert ns.styles_file == [] and ns.use_cpu == []
    assert ns.ckpt_dir is None and ns.no_hashing is False


def test_known_flags_parse_and_unknown_extension_flags_are_returned():
    ns, unknown = parse_args([
        "--api", "--nowebui", "--port", "7861", "--listen", "--use-cpu", "sd", "interrogate",
        "--styles-file", "a.csv", "--styles-file", "b.csv", "--lyco-dir", "/x",
        "--precision", "full", "--no-half", "--medvram-sdxl", "--xformers", "--share",
        "--cors-allow-origins", "http://a,http://b", "--some-ext-switch"])
    assert ns.api and ns.nowebui and ns.listen and ns.no_half and ns.medvram_sdxl and ns.share
    assert ns.port == 7861
    assert ns.use_cpu == ["sd", "interrogate"]
    assert ns.styles_file == ["a.csv", "b.csv"]
    assert ns.precision == "full"
    assert ns.cors_allow_origins == "http://a,http://b"
    assert unknown == ["--lyco-dir", "/x", "--some-ext-switch"]


def test_abbreviations_are_not_guessed():
    # "--ap" must not silently become --api (or --api-auth)
    ns, unknown = parse_args(["--ap"])
    assert unknown == ["--ap"] and ns.api is False


def test_redacted_flags_hide_secrets_but_keep_everything_else():
    ns, _ = parse_args(["--api-auth", "alice:s3cret", "--gradio-auth", "bob:hunter2",
                        "--tls-keyfile", "/k/key.pem", "--tls-certfile", "/k/cert.pem", "--api",
                        "--queue", "redis://:qu3ue-pass@10.0.0.9:6379/1"])
    flags = redacted_flags(ns)
    text = json.dumps(flags)
    assert "s3cret" not in text and "hunter2" not in text and "key.pem" not in text
    assert "qu3ue-pass" not in text and flags["queue"] == "redis://***@10.0.0.9:6379/1"
    assert flags["api_auth"] == REDACTED and flags["gradio_auth"] == REDACTED
    assert flags["tls_keyfile"] == REDACTED
    assert flags["tls_certfile"] == "/k/cert.pem" and flags["api"] is True
    assert set(flags) == set(vars(ns))
    assert redacted_flags(parse_args([])[0])["api_auth"] is None


def test_parser_has_every_flag_clients_use():
    options = {opt for action in build_parser()._actions for opt in action.option_strings}
    for flag in ("--ckpt", "--ckpt-dir", "--vae-dir", "--vae-path", "--data-dir", "--models-dir",
                 "--embeddings-dir", "--lora-dir", "--hypernetwork-dir", "--api-log",
                 "--gradio-auth-path", "--allow-code", "--freeze-settings", "--ui-settings-file",
                 "--device-id", "--disable-safe-unpickle", "--skip-load-model-at-start",
                 "--api-server-stop", "--cors-allow-origins-regex", "--subpath",
                 "--enable-insecure-extension-access", "--no-download-sd-model", "--autolaunch",
                 "--theme", "--log-level", "--disable-extension-access", "--no-prompt-history",
                 "--skip-torch-cuda-test", "--reinstall-torch", "--opt-sdp-no-mem-attention",
                 "--force-enable-xformers", "--lowvram", "--no-half-vae"):
        assert flag in options, flag


def test_paths_default_layout(tmp_path):
    ns, _ = parse_args([])
    paths = Paths.from_args(ns, tmp_path)
    assert paths.data_dir == tmp_path
    assert paths.ckpt_dir == tmp_path / "models" / "Stable-diffusion"
    assert paths.vae_dir == tmp_path / "models" / "VAE"
    assert paths.lora_dir == tmp_path / "models" / "Lora"
    assert paths.embeddings_dir == tmp_path / "embeddings"
    assert paths.config_file == tmp_path / "config.json"
    assert paths.styles_files == (tmp_path / "styles.csv",)
    assert paths.cache_file == tmp_path / "cache.json"
    assert paths.params_file == tmp_path / "params.txt"
    assert paths.resolve_output("outputs/txt2img-images") == tmp_path / "outputs" / "txt2img-images"
    assert paths.resolve_output(str(tmp_path / "abs")) == tmp_path / "abs"


def test_paths_follow_flags(tmp_path):
    data = tmp_path / "data"
    ns, _ = parse_args(["--data-dir", str(data), "--models-dir", str(tmp_path / "m"),
                        "--ckpt-dir", str(tmp_path / "more"), "--lora-dir", str(tmp_path / "L"),
                        "--ui-settings-file", str(tmp_path / "cfg.json"),
                        "--styles-file", str(tmp_path / "s1.csv"),
                        "--styles-file", str(tmp_path / "s2.csv")])
    paths = Paths.from_args(ns, tmp_path / "program")
    assert paths.data_dir == data
    assert paths.ckpt_dir == tmp_path / "m" / "Stable-diffusion"
    assert paths.extra_ckpt_dir == tmp_path / "more"
    assert paths.lora_dir == tmp_path / "L"
    assert paths.vae_dir == tmp_path / "m" / "VAE"
    assert paths.embeddings_dir == data / "embeddings"
    assert paths.config_file == tmp_path / "cfg.json"
    assert paths.styles_files == (tmp_path / "s1.csv", tmp_path / "s2.csv")
    assert paths.outputs_dir == data / "outputs"
    assert isinstance(paths.root, Path) and paths.root == tmp_path / "program"
