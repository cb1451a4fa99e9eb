"""Folder layout (A1111's: models/Stable-diffusion, models/VAE, embeddings/, outputs/, config.json …)
resolved once from the command-line flags and the program folder."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path


def _flag_path(value: str | None) -> Path | None:
    # A1111 resolves path flags against the working directory (os.path.abspath)
    return Path(value).expanduser().absolute() if value else None


@dataclass(frozen=True)
class Paths:
    root: Path                      # the program folder (launch.py lives here)
    data_dir: Path                  # --data-dir; user data (config, styles, outputs)
    models_dir: Path                # --models-dir or <data>/models
    ckpt_dir: Path                  # <models>/Stable-diffusion (always scanned)
    extra_ckpt_dir: Path | None     # --ckpt-dir (scanned in addition)
    ckpt_file: Path | None          # --ckpt
    vae_dir: Path                   # --vae-dir or <models>/VAE
    vae_file: Path | None           # --vae-path
    lora_dir: Path                  # --lora-dir or <models>/Lora
    embeddings_dir: Path            # --embeddings-dir or <data>/embeddings
    hypernetwork_dir: Path          # --hypernetwork-dir or <models>/hypernetworks
    controlnet_dir: Path            # <models>/ControlNet
    extra_controlnet_dir: Path | None   # --controlnet-dir (scanned in addition)
    controlnet_annotators_dir: Path     # preprocessor weights: <models>/ControlNet-annotators
    esrgan_dir: Path                # --esrgan-models-path or <models>/ESRGAN
    #: upscaler model folders: (kind, folder), kind = the models/ folder name
    upscaler_dirs: tuple[tuple[str, Path], ...]
    ldsr_dir: Path                  # --ldsr-models-path or <models>/LDSR
    #: --xlmr-tokenizer-dir or <models>/xlm-roberta-large (Alt-Diffusion's tokenizer)
    xlmr_tokenizer_dir: Path
    blip_dir: Path                  # <models>/BLIP (a transformers BLIP folder)
    clip_interrogate_dir: Path      # --clip-models-path or <models>/interrogate
    interrogate_dir: Path           # <models>/interrogate (category lists)
    deepbooru_dir: Path             # <models>/torch_deepdanbooru
    #: face restorer weights: (restorer name, folder), --codeformer/--gfpgan-models-path
    face_restorer_dirs: tuple[tuple[str, Path], ...]
    extensions_dir: Path            # <data>/extensions
    builtin_extensions_dir: Path    # <root>/extensions-builtin
    outputs_dir: Path               # <data>/outputs
    config_file: Path               # --ui-settings-file or <data>/config.json
    ui_config_file: Path            # --ui-config-file or <data>/ui-config.json
    styles_files: tuple[Path, ...]  # --styles-file (repeatable) or (<data>/styles.csv,)
    cache_file: Path                # <data>/cache.json (hashes)
    params_file: Path               # <data>/params.txt (infotext of the last job)
    #: --textual-inversion-templates-dir or <root>/textual_inversion_templates (prompt templates)
    templates_dir: Path = Path("textual_inversion_templates")
    #: folders batch jobs may read and write: the data folder and --gradio-allowed-path ones
    allowed_dirs: tuple[Path, ...] = ()

    @classmethod
    def from_args(cls, namespace: argparse.Namespace, root: Path) -> "Paths":
        def flag(name: str) -> Path | None:
            return _flag_path(getattr(namespace, name, None))

        root = Path(root).absolute()
        data_dir = flag("data_dir") or root
        models_dir = flag("models_dir") or data_dir / "models"
        styles = tuple(_flag_path(s) for s in (getattr(namespace, "styles_file", None) or []))
        return cls(
            root=root,
            data_dir=data_dir,
            models_dir=models_dir,
            ckpt_dir=models_dir / "Stable-diffusion",
            extra_ckpt_dir=flag("ckpt_dir"),
            ckpt_file=flag("ckpt"),
            vae_dir=flag("vae_dir") or models_dir / "VAE",
            vae_file=flag("vae_path"),
            lora_dir=flag("lora_dir") or models_dir / "Lora",
            embeddings_dir=flag("embeddings_dir") or data_dir / "embeddings",
            hypernetwork_dir=flag("hypernetwork_dir") or models_dir / "hypernetworks",
            controlnet_dir=models_dir / "ControlNet",
            extra_controlnet_dir=flag("controlnet_dir"),
            controlnet_annotators_dir=flag("controlnet_annotator_models_path")
            or models_dir / "ControlNet-annotators",
            esrgan_dir=flag("esrgan_models_path") or models_dir / "ESRGAN",
            upscaler_dirs=tuple(
                (kind, flag(f"{kind.lower()}_models_path") or models_dir / kind)
                for kind in ("ESRGAN", "RealESRGAN", "SwinIR", "Swin2SR", "ScuNET", "DAT",
                             "HAT")),
            ldsr_dir=flag("ldsr_models_path") or models_dir / "LDSR",
            xlmr_tokenizer_dir=flag("xlmr_tokenizer_dir") or models_dir / "xlm-roberta-large",
            blip_dir=models_dir / "BLIP",
            clip_interrogate_dir=flag("clip_models_path") or models_dir / "interrogate",
            interrogate_dir=models_dir / "interrogate",
            deepbooru_dir=models_dir / "torch_deepdanbooru",
            face_restorer_dirs=(
                ("CodeFormer", flag("codeformer_models_path") or models_dir / "Codeformer"),
                ("GFPGAN", flag("gfpgan_models_path") or models_dir / "GFPGAN")),
            extensions_dir=data_dir / "extensions",
            builtin_extensions_dir=root / "extensions-builtin",
            outputs_dir=data_dir / "outputs",
            config_file=flag("ui_settings_file") or data_dir / "config.json",
            ui_config_file=flag("ui_config_file") or data_dir / "ui-config.json",
            styles_files=tuple(p for p in styles if p is not None) or (data_dir / "styles.csv",),
            cache_file=data_dir / "cache.json",
            params_file=data_dir / "params.txt",
            templates_dir=flag("textual_inversion_templates_dir")
            or root / "textual_inversion_templates",
            allowed_dirs=(data_dir, *(Path(p).expanduser().absolute() for p in
                                      getattr(namespace, "gradio_allowed_path", None) or [])),
        )

    def resolve_output(self, directory: str | Path) -> Path:
        """An output folder from settings ("outputs/txt2img-images"): relative ones live under the
        data folder, as A1111's are relative to its working folder (= the data folder)."""
        path = Path(directory).expanduser()
        return path if path.is_absolute() else self.data_dir / path

    def allowed_folder(self, text: str, what: str) -> Path:
        """The folder a user typed (relative ones under the data folder), if it lies inside
        one of `allowed_dirs` (links resolved); ValueError naming the folder otherwise."""
        path = Path(text.strip()).expanduser()
        path = (path if path.is_absolute() else self.data_dir / path).resolve()
        roots = self.allowed_dirs or (self.data_dir,)
        if not any(path.is_relative_to(Path(root).resolve()) for root in roots):
            raise ValueError(f"{what} '{text.strip()}' is outside the allowed folders "
                             f"({', '.join(str(root) for root in roots)}); add it with "
                             "--gradio-allowed-path")
        return path
