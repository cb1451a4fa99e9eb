"""Command-line flags with AUTOMATIC1111's names and defaults (a1111-compat.md §1.1).

Unknown flags (those added by extensions we do not have) are accepted and returned, so the caller
can print one warning naming them instead of refusing to start.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modules.app.server_limits import add_limit_flags

APP_ROOT = Path(__file__).resolve().parents[2]
REDACTED = "<redacted>"

# Flag destinations whose values are credentials or private key material: never echoed back.
# flags whose values are secrets (passwords, key files, tokens): never shown by /sdapi/v1/cmd-flags
SECRET_FLAGS = frozenset({"api_auth", "gradio_auth", "gradio_auth_path", "tls_keyfile", "ngrok"})

USE_CPU_CHOICES = ("all", "sd", "interrogate", "gfpgan", "bsrgan", "esrgan", "scunet", "codeformer",
                   "swinir", "controlnet", "other")


def add_path_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--data-dir", type=str, default=None,
        help="base path where all user data is stored (default: the program folder)")
    add("--models-dir", type=str, default=None, help="base path where models are stored "
        "(default: <data-dir>/models)")
    add("--ckpt", type=str, default=None, help="checkpoint to load at start-up and list first")
    add("--ckpt-dir", type=str, default=None, help="extra directory with Stable Diffusion checkpoints")
    add("--vae-dir", type=str, default=None, help="directory with VAE files")
    add("--vae-path", type=str, default=None, help="VAE to use for every checkpoint")
    add("--embeddings-dir", type=str, default=None, help="textual inversion embeddings directory")
    add("--textual-inversion-templates-dir", type=str, default=None,
        help="prompt templates for training (default textual_inversion_templates)")
    add("--lora-dir", type=str, default=None, help="directory with Lora networks")
    add("--hypernetwork-dir", type=str, default=None, help="hypernetwork directory")
    add("--controlnet-dir", type=str, default=None,
        help="extra directory with ControlNet models (models/ControlNet is always scanned)")
    add("--controlnet-annotator-models-path", type=str, default=None,
        help="preprocessor (annotator) weights, e.g. depth models "
        "(default: models/ControlNet-annotators)")
    for kind, folder in (("esrgan", "ESRGAN"), ("realesrgan", "RealESRGAN"),
                         ("swinir", "SwinIR"), ("swin2sr", "Swin2SR"), ("scunet", "ScuNET"),
                         ("dat", "DAT"), ("hat", "HAT")):
        add(f"--{kind}-models-path", type=str, default=None,
            help=f"upscaler model files (default: models/{folder})")
    add("--aesthetic_embeddings-dir", type=str, default=None,
        help="aesthetic embeddings (.pt) of the aesthetic-gradients extension "
        "(default: models/aesthetic_embeddings)")
    add("--xlmr-tokenizer-dir", type=str, default=None,
        help="xlm-roberta-large's sentencepiece.bpe.model, the tokenizer of Alt-Diffusion "
        "checkpoints (default: models/xlm-roberta-large)")
    add("--ldsr-models-path", type=str, default=None,
        help="LDSR weights (model.ckpt or model.safetensors) and project.yaml "
        "(default: models/LDSR)")
    for kind, folder in (("codeformer", "Codeformer"), ("gfpgan", "GFPGAN")):
        add(f"--{kind}-models-path", type=str, default=None,
            help=f"face restoration weights (default: models/{folder})")
    add("--clip-models-path", type=str, default=None,
        help="CLIP checkpoint for the CLIP interrogator (default: models/interrogate)")
    add("--deepdanbooru", action="store_true",
        help="accepted for A1111 compatibility: DeepBooru is offered whenever its weights are")
    add("--ui-settings-file", type=str, default=None, help="settings file (default config.json)")
    add("--ui-config-file", type=str, default=None, help="UI defaults file (default ui-config.json)")
    add("--styles-file", type=str, action="append", default=[],
        help="styles csv file; may be given several times")
    add("--gradio-allowed-path", action="append", default=[], help="extra paths Gradio may serve")


def _add_launch(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--skip-prepare-environment", action="store_true", help="skip all environment preparation")
    add("--skip-install", action="store_true", help="skip installation of packages")
    add("--skip-torch-cuda-test", action="store_true", help="do not check that CUDA works")
    add("--skip-python-version-check", action="store_true", help="do not check the Python version")
    add("--skip-version-check", action="store_true", help="do not check torch/xformers versions")
    add("--reinstall-torch", action="store_true", help="accepted for compatibility; we never install")
    add("--reinstall-xformers", action="store_true", help="accepted for compatibility")
    add("--update-check", action="store_true", help="accepted for compatibility")
    add("--no-download-sd-model", action="store_true", help="never download a model (we never do)")
    add("--do-not-download-clip", action="store_true", help="never download CLIP (we never do)")
    add("--exit", action="store_true", help="exit after the environment checks")


def _add_device(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--use-cpu", nargs="+", default=[], choices=USE_CPU_CHOICES, type=str.lower,
        help="use CPU for these modules ('all' for everything)")
    add("--device-id", type=str, default=None, help="CUDA device to use")
    add("--no-half", action="store_true", help="do not switch the model to 16-bit floats")
    add("--no-half-vae", action="store_true", help="do not switch the VAE to 16-bit floats")
    add("--precision", type=str, choices=["full", "half", "autocast"], default="autocast",
        help="evaluate at this precision")
    add("--cpu-precision", type=str, choices=["auto", "fp32", "bf16"], default=None,
        help="on the CPU: UNet / text encoders in bfloat16 (bf16), float32 (fp32), or bf16 where "
        "the processor computes it natively (auto); default: the cpu_precision setting")
    add("--upcast-sampling", action="store_true", help="upcast sampling (accepted)")
    add("--lowram", action="store_true",
        help="read checkpoint weights straight into the device's memory (always done)")
    add("--medvram", action="store_true", help="keep only one model part on the GPU at a time")
    add("--medvram-sdxl", action="store_true", help="--medvram for SDXL models only")
    add("--lowvram", action="store_true", help="move every sub-module to the GPU only when used")
    add("--xformers", action="store_true",
        help="xformers attention where installed (CUDA); else torch SDPA")
    add("--force-enable-xformers", action="store_true", help="as --xformers")
    add("--xformers-flash-attention", action="store_true", help="accepted for compatibility")
    add("--opt-sdp-attention", action="store_true", help="torch scaled dot product attention")
    add("--opt-sdp-no-mem-attention", action="store_true",
        help="SDP attention without the memory-efficient kernel (deterministic)")
    add("--opt-split-attention", action="store_true", help="sliced attention (Doggettx)")
    add("--opt-split-attention-v1", action="store_true", help="sliced attention (V1)")
    add("--opt-split-attention-invokeai", action="store_true", help="sliced attention (InvokeAI)")
    add("--opt-sub-quad-attention", action="store_true",
        help="sub-quadratic attention (chunked queries and keys)")
    add("--disable-opt-split-attention", action="store_true",
        help="the plain, unoptimised attention layer")
    add("--disable-nan-check", action="store_true", help="do not check images/latents for NaNs")
    add("--disable-safe-unpickle", action="store_true",
        help="allow full pickle loading of .ckpt/.pt files (unsafe)")
    add("--skip-load-model-at-start", action="store_true", help="load the model on first use")


def _add_server(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--port", type=int, default=None, help="port (default 7860, or 7861 with --nowebui)")
    add("--listen", action="store_true", help="listen on 0.0.0.0")
    add("--server-name", type=str, default=None, help="bind address (overrides --listen)")
    add("--api", action="store_true", help="serve the /sdapi/v1 API beside the UI")
    add("--nowebui", action="store_true", help="API only, no UI")
    add("--api-auth", type=str, default=None, help='API credentials "user:pass,user2:pass2"')
    add("--api-log", action="store_true", help="log every API request")
    add("--api-server-stop", action="store_true", help="add server-kill/stop/restart endpoints")
    add("--timeout-keep-alive", type=int, default=30, help="uvicorn keep-alive seconds")
    add("--gradio-auth", type=str, default=None, help='UI credentials "user:pass,user2:pass2"')
    add("--gradio-auth-path", type=str, default=None, help="file with UI credentials")
    add("--cors-allow-origins", type=str, default=None, help="comma-separated CORS origins")
    add("--cors-allow-origins-regex", type=str, default=None, help="CORS origin regex")
    add("--subpath", type=str, default=None, help="root path behind a reverse proxy")
    add("--tls-keyfile", type=str, default=None, help="TLS private key file")
    add("--tls-certfile", type=str, default=None, help="TLS certificate file")
    add("--share", action="store_true", help="accepted; no public tunnel is ever opened")
    add("--ngrok", type=str, default=None, help="accepted; no tunnel is ever opened")
    add("--autolaunch", action="store_true", help="open the UI in the browser at start-up")
    # several machines: one front, many workers, through Redis (README "Several machines")
    add("--queue", type=str, default=None, metavar="redis://HOST:PORT/DB",
        help="queue generation jobs in this Redis for workers instead of running them here")
    add("--worker", action="store_true",
        help="run as a generation worker for --queue (no HTTP server)")
    add("--local-worker", action="store_true",
        help="with --queue on a front: also run a worker in this process")
    add("--worker-name", type=str, default=None, help="worker name (default host-pid-random)")
    add("--worker-heartbeat", type=float, default=5.0,
        help="seconds without a heartbeat after which a worker's jobs go to another")
    add("--worker-max-deliveries", type=int, default=3,
        help="deliveries of a job whose workers keep dying before it goes to the dead letters")
    add("--theme", type=str, default=None, help="UI theme: light or dark")
    add("--gradio-queue", action="store_true", help="accepted for compatibility")
    add("--no-gradio-queue", action="store_true", help="accepted for compatibility")


def _add_behaviour(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--allow-code", action="store_true", help="allow custom script execution")
    add("--no-hashing", action="store_true", help="do not compute sha256 of checkpoints")
    add("--freeze-settings", action="store_true", help="settings cannot be changed")
    add("--enable-insecure-extension-access", action="store_true",
        help="allow installing extensions even when listening on a network")
    add("--disable-extension-access", action="store_true", help="no extension installs from the UI")
    add("--disable-all-extensions", action="store_true", help="load no extension at all")
    add("--disable-extra-extensions", action="store_true", help="load only built-in extensions")
    add("--no-prompt-history", action="store_true", help="do not keep the last prompt in params.txt")
    add("--log-level", type=str.upper, default=None,
        choices=["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"], help="logging level")
    add("--hide-ui-dir-config", action="store_true", help="hide directory settings in the UI")
    add("--administrator", action="store_true", help="administrator rights (accepted)")


def build_parser() -> argparse.ArgumentParser:
    """The parser for webui.py / launch.py."""
    parser = argparse.ArgumentParser(prog="webui", allow_abbrev=False,
                                     description="Stable Diffusion web UI (A1111-compatible flags)")
    add_path_flags(parser)
    _add_launch(parser)
    _add_device(parser)
    _add_server(parser)
    _add_behaviour(parser)
    add_limit_flags(parser)
    return parser


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parse `argv`, with the flags that enabled extensions add in their preload.py (A1111's
    preload(parser)); flags nobody defines (extensions not installed) are returned instead of
    rejected."""
    from modules.scripting.extension_setup import enabled_extension_folders, run_preloads

    namespace, unknown = build_parser().parse_known_args(argv)
    folders = [folder for folder in enabled_extension_folders(namespace, APP_ROOT)
               if (folder / "preload.py").is_file()]
    if folders:
        parser = build_parser()
        run_preloads(parser, folders)
        namespace, unknown = parser.parse_known_args(argv)
    return namespace, unknown


def redacted_flags(namespace: argparse.Namespace) -> dict[str, Any]:
    """Every flag destination → value for /sdapi/v1/cmd-flags; set secrets replaced by REDACTED."""
    from modules.jobs.redis_store import redacted_url   # the queue URL may hold a password
    flags: dict[str, Any] = {}
    for key, value in vars(namespace).items():
        flags[key] = REDACTED if key in SECRET_FLAGS and value else value
    if flags.get("queue"):
        flags["queue"] = redacted_url(str(flags["queue"]))
    return flags
