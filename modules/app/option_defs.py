"""A1111's settings (keys, defaults, sections, labels, infotext names) as one table
(a1111-compat.md §4.7). Choices that depend on files on disk are passed in as callables."""
from __future__ import annotations

from typing import Callable

from modules.app import devices, server_limits
from modules.app.options import OptionInfo

ChoiceSource = Callable[[], list]

SAVING_IMAGES = ("saving-images", "Saving images/grids")
SAVING_PATHS = ("saving-paths", "Paths for saving")
SAVING_TO_DIRS = ("saving-to-dirs", "Saving to a directory")
UPSCALING = ("upscaling", "Upscaling")
FACE_RESTORATION = ("face-restoration", "Face restoration")
SYSTEM = ("system", "System")
API = ("API", "API")
SD = ("sd", "Stable Diffusion")
SDXL = ("sdxl", "Stable Diffusion XL")
VAE = ("vae", "VAE")
IMG2IMG = ("img2img", "img2img")
OPTIMIZATIONS = ("optimizations", "Optimizations")
COMPATIBILITY = ("compatibility", "Compatibility")
EXTRA_NETWORKS = ("extra_networks", "Extra Networks")
UI = ("ui", "User interface")
INFOTEXT = ("infotext", "Infotext")
LIVE_PREVIEWS = ("ui", "Live previews")
SAMPLER_PARAMS = ("sampler-params", "Sampler parameters")
INTERROGATE = ("interrogate", "Interrogate")

EMPHASIS_CHOICES = ["Original", "No norm", "Ignore", "None"]
IMAGE_FORMATS = ["png", "jpg", "jpeg", "webp", "gif"]

#: A1111's `ui_reorder_list` categories, in their default order (the left column of txt2img and
#: img2img; modules/ui/section_order.py builds them)
UI_REORDER_CATEGORIES: tuple[str, ...] = (
    "inpaint", "sampler", "accordions", "checkboxes", "dimensions", "cfg", "denoising", "seed",
    "batch", "override_settings", "scripts")


def _slider(default: float, label: str, minimum: float, maximum: float, step: float,
            section: tuple[str, str], **extra) -> OptionInfo:
    return OptionInfo(default, label, "slider",
                      {"minimum": minimum, "maximum": maximum, "step": step}, section=section, **extra)


def _check(default: bool, label: str, section: tuple[str, str], **extra) -> OptionInfo:
    return OptionInfo(default, label, "checkbox", section=section, **extra)


def _text(default: str, label: str, section: tuple[str, str], **extra) -> OptionInfo:
    return OptionInfo(default, label, "textbox", section=section, **extra)


def _choice(default, label: str, choices, section: tuple[str, str], *, component: str = "dropdown",
            **extra) -> OptionInfo:
    return OptionInfo(default, label, component, choices=choices, section=section, **extra)


def _number(default: float, label: str, section: tuple[str, str], **extra) -> OptionInfo:
    return OptionInfo(default, label, "number", section=section, **extra)


def _saving_options() -> dict[str, OptionInfo]:
    s = SAVING_IMAGES
    return {
        "samples_save": _check(True, "Always save all generated images", s),
        "samples_format": _text("png", "File format for images", s),
        "samples_filename_pattern": _text("", "Images filename pattern", s),
        "save_images_add_number": _check(True, "Add number to filename when saving", s),
        "grid_save": _check(True, "Always save all generated image grids", s),
        "grid_format": _text("png", "File format for grids", s),
        "grid_extended_filename": _check(False, "Add extended info (seed, prompt) to filename "
                                         "when saving grid", s),
        "grid_only_if_multiple": _check(True, "Do not save grids consisting of one picture", s),
        "grid_prevent_empty_spots": _check(False, "Prevent empty spots in grid", s),
        "img_max_size_mp": _number(200, "Maximum grid size in megapixels (X/Y/Z plot)", s),
        "n_rows": _slider(-1, "Grid row count; use -1 for autodetect and 0 for it to be same as "
                          "batch size", -1, 16, 1, s),
        "grid_background_color": OptionInfo("#ffffff", "Grid background color", "colorpicker",
                                            section=s),
        "enable_pnginfo": _check(True, "Save text information about generation parameters as "
                                 "chunks to png files", s),
        "save_txt": _check(False, "Create a text file with infotext next to every image", s),
        "save_images_before_face_restoration": _check(False, "Save a copy of image before doing "
                                                      "face restoration.", s),
        "save_images_before_highres_fix": _check(False, "Save a copy of image before applying "
                                                 "highres fix.", s),
        "save_incomplete_images": _check(False, "Save incomplete images", s),
        "jpeg_quality": _slider(80, "Quality for saved jpeg and avif images", 1, 100, 1, s),
        "webp_lossless": _check(False, "Use lossless compression for webp images", s),
        "export_for_4chan": _check(True, "Save copy of large images as JPG", s),
        "img_downscale_threshold": _number(4.0, "File size limit for the above option, MB", s),
        "target_side_length": _number(4000, "Width/height limit for the above option, in pixels", s),
        "use_original_name_batch": _check(True, "Use original name for output filename during "
                                          "batch process in extras tab", s),
        "save_selected_only": _check(True, "When using 'Save' button, only save a single selected "
                                     "image", s),
    }


def _path_options() -> dict[str, OptionInfo]:
    s = SAVING_PATHS
    return {
        "outdir_samples": _text("", "Output directory for images; if empty, defaults to three "
                                "directories below", s),
        "outdir_txt2img_samples": _text("outputs/txt2img-images", "Output directory for txt2img "
                                        "images", s),
        "outdir_img2img_samples": _text("outputs/img2img-images", "Output directory for img2img "
                                        "images", s),
        "outdir_extras_samples": _text("outputs/extras-images", "Output directory for images from "
                                       "extras tab", s),
        "outdir_grids": _text("", "Output directory for grids; if empty, defaults to two "
                              "directories below", s),
        "outdir_txt2img_grids": _text("outputs/txt2img-grids", "Output directory for txt2img "
                                      "grids", s),
        "outdir_img2img_grids": _text("outputs/img2img-grids", "Output directory for img2img "
                                      "grids", s),
        "outdir_save": _text("log/images", "Directory for saving images using the Save button", s),
        "outdir_init_images": _text("outputs/init-images", "Directory for saving init images "
                                    "when using img2img", s),
        "save_to_dirs": _check(True, "Save images to a subdirectory", SAVING_TO_DIRS),
        "grid_save_to_dirs": _check(True, "Save grids to a subdirectory", SAVING_TO_DIRS),
        "use_save_to_dirs_for_ui": _check(False, "When using \"Save\" button, save images to a "
                                          "subdirectory", SAVING_TO_DIRS),
        "directories_filename_pattern": _text("[date]", "Directory name pattern", SAVING_TO_DIRS),
        "directories_max_prompt_words": _slider(8, "Max prompt words for [prompt_words] pattern",
                                                1, 20, 1, SAVING_TO_DIRS),
    }


#: A1111's tile settings per upscaler family (key prefix, label, default tile size)
_TILED_UPSCALERS = (("ESRGAN", "ESRGAN", 192), ("SWIN", "SwinIR", 192), ("DAT", "DAT", 192),
                    ("SCUNET", "ScuNET", 256))


def _system_options(upscaler_names: ChoiceSource | None) -> dict[str, OptionInfo]:
    return {
        "upscaler_for_img2img": _choice(None, "Upscaler for img2img", upscaler_names, UPSCALING),
        **{f"{kind}_tile": _slider(size, f"Tile size for {label} upscalers (0 = no tiling)",
                                   0, 512, 16, UPSCALING)
           for kind, label, size in _TILED_UPSCALERS},
        **{f"{kind}_tile_overlap": _slider(8, f"Tile overlap for {label} upscalers, pixels",
                                           0, 48, 1, UPSCALING)
           for kind, label, _ in _TILED_UPSCALERS},
        "ldsr_steps": _slider(100, "LDSR processing steps. Lower = faster", 1, 200, 1, UPSCALING),
        "ldsr_cached": _check(False, "Cache LDSR model in memory", UPSCALING),
        "face_restoration": _check(False, "Restore faces", FACE_RESTORATION,
                                   infotext="Face restoration"),
        "face_restoration_model": _choice("CodeFormer", "Face restoration model",
                                          ["CodeFormer", "GFPGAN"], FACE_RESTORATION,
                                          component="radio"),
        "code_former_weight": _slider(0.5, "CodeFormer weight (0 = maximum effect, 1 = minimum "
                                      "effect)", 0.0, 1.0, 0.01, FACE_RESTORATION),
        "face_restoration_unload": _check(False, "Move face restoration model from VRAM into RAM "
                                          "after processing", FACE_RESTORATION),
        "show_warnings": _check(False, "Show warnings in console.", SYSTEM),
        "memmon_poll_rate": _slider(8, "VRAM usage polls per second during generation", 0, 40, 1,
                                    SYSTEM),
        "samples_log_stdout": _check(False, "Always print all generation info to standard output",
                                     SYSTEM),
        "multiple_tqdm": _check(True, "Add a second progress bar to the console", SYSTEM),
        "enable_upscale_progressbar": _check(True, "Show a progress bar in the console for tiled "
                                             "upscaling", SYSTEM),
        "list_hidden_files": _check(True, "Load models/files in hidden directories", SYSTEM),
        "disable_mmap_load_safetensors": _check(False, "Disable memmapping for loading "
                                                ".safetensors files", SYSTEM),
        "api_enable_requests": _check(True, "Allow http:// and https:// URLs for input images in "
                                      "API", API, restrict_api=True),
        "api_forbid_local_requests": _check(True, "Forbid URLs to local resources", API,
                                            restrict_api=True),
        "api_useragent": _text("", "User agent for requests", API, restrict_api=True),
    }


def _sd_options(checkpoint_titles: ChoiceSource | None) -> dict[str, OptionInfo]:
    return {
        "sd_model_checkpoint": _choice(None, "Stable Diffusion checkpoint", checkpoint_titles, SD,
                                       infotext="Model hash"),
        "sd_checkpoint_hash": OptionInfo("", "SHA256 hash of the current checkpoint", section=SD,
                                         comment="set by the model manager, not by users"),
        "sd_checkpoints_limit": _slider(1, "Maximum number of checkpoints loaded at the same time",
                                        1, 10, 1, SD),
        "sd_checkpoints_keep_in_cpu": _check(True, "Only keep one model on device", SD),
        "sd_v_prediction": _check(False, "Force v-prediction for the loaded checkpoint (for SD2.x-v "
                                  "files that come without their .yaml)", SD,
                                  comment="ours: A1111 reads the .yaml only"),
        "sd_unet": _choice("Automatic", "SD Unet", ["Automatic", "None"], SD),
        "enable_quantization": _check(False, "Enable quantization in K samplers for sharper and "
                                      "cleaner results", SD),
        "emphasis": _choice("Original", "Emphasis mode", EMPHASIS_CHOICES, SD, component="radio",
                            infotext="Emphasis"),
        "enable_batch_seeds": _check(True, "Make K-diffusion samplers produce same images in a "
                                     "batch as when making a single image", SD),
        "comma_padding_backtrack": _slider(20, "Prompt word wrap length limit", 0, 74, 1, SD),
        "CLIP_stop_at_last_layers": _slider(1, "Clip skip", 1, 12, 1, SD, infotext="Clip skip"),
        "upcast_attn": _check(False, "Upcast cross attention layer to float32", SD),
        # A1111's default is "GPU". Ours is "CPU": the CPU generator gives the same noise for a
        # seed on every machine (CPU, CUDA, MPS), so a seed reproduces the same image anywhere.
        # Infotexts then carry "RNG: CPU", which A1111 reads back correctly.
        "randn_source": _choice("CPU", "Random number generator source", ["GPU", "CPU", "NV"], SD,
                                component="radio", infotext="RNG"),
        "tiling": _check(False, "Tiling", SD, infotext="Tiling"),
        "hires_fix_refiner_pass": _choice("second pass", "Hires fix: which pass to enable refiner "
                                          "for", ["first pass", "second pass", "both passes"], SD,
                                          component="radio"),
        "enable_prompt_comments": _check(True, "Enable comments (lines starting with #)", SD),
        "sdxl_crop_top": _number(0, "crop top coordinate", SDXL),
        "sdxl_crop_left": _number(0, "crop left coordinate", SDXL),
        "sdxl_refiner_low_aesthetic_score": _number(2.5, "SDXL low aesthetic score", SDXL),
        "sdxl_refiner_high_aesthetic_score": _number(6.0, "SDXL high aesthetic score", SDXL),
        "sdxl_clip_l_skip": _check(False, "Clip skip SDXL", SDXL,
                                   comment="apply clip skip to SDXL's CLIP-L encoder as well"),
    }


def _vae_options(vae_names: ChoiceSource | None) -> dict[str, OptionInfo]:
    return {
        "sd_vae_checkpoint_cache": _slider(0, "VAE Checkpoints to cache in RAM", 0, 10, 1, VAE),
        "sd_vae": _choice("Automatic", "SD VAE", vae_names, VAE, infotext="VAE"),
        "sd_vae_overrides_per_model_preferences": _check(True, "Selected VAE overrides per-model "
                                                         "preferences", VAE),
        "auto_vae_precision_bfloat16": _check(False, "Automatically convert VAE to bfloat16", VAE),
        "auto_vae_precision": _check(True, "Automatically revert VAE to 32-bit floats", VAE),
        "sd_vae_encode_method": _choice("Full", "VAE type for encode", ["Full", "TAESD"], VAE,
                                        component="radio", infotext="VAE Encoder"),
        "sd_vae_decode_method": _choice("Full", "VAE type for decode", ["Full", "TAESD"], VAE,
                                        component="radio", infotext="VAE Decoder"),
    }


def _img2img_options() -> dict[str, OptionInfo]:
    s = IMG2IMG
    return {
        "inpainting_mask_weight": _slider(1.0, "Inpainting conditioning mask strength", 0.0, 1.0,
                                          0.01, s, infotext="Conditional mask weight"),
        "initial_noise_multiplier": _slider(1.0, "Noise multiplier for img2img", 0.0, 1.5, 0.001, s,
                                            infotext="Noise multiplier"),
        "img2img_extra_noise": _slider(0.0, "Extra noise multiplier for img2img and hires fix",
                                       0.0, 1.0, 0.01, s, infotext="Extra noise"),
        "img2img_color_correction": _check(False, "Apply color correction to img2img results to "
                                           "match original colors.", s),
        "img2img_fix_steps": _check(False, "With img2img, do exactly the amount of steps the "
                                    "slider specifies.", s),
        "img2img_background_color": OptionInfo("#ffffff", "With img2img, fill transparent parts "
                                               "of the input image with this color.",
                                               "colorpicker", section=s),
        "img2img_sketch_default_brush_color": OptionInfo("#ffffff", "Sketch initial brush color",
                                                         "colorpicker", section=s),
        "return_mask": _check(False, "For inpainting, include the greyscale mask in results", s),
        "return_mask_composite": _check(False, "For inpainting, include masked composite in "
                                        "results", s),
        "img2img_batch_show_results_limit": _slider(32, "Show the first N batch img2img results "
                                                    "in UI", -1, 1000, 1, s),
        "overlay_inpaint": _check(True, "Overlay original for inpaint", s),
    }


def _optimization_options() -> dict[str, OptionInfo]:
    s = OPTIMIZATIONS
    return {
        "cross_attention_optimization": _choice("Automatic", "Cross attention optimization",
                                                devices.attention_choices(), s),
        "s_min_uncond": _slider(0.0, "Negative Guidance minimum sigma", 0.0, 15.0, 0.01, s,
                                infotext="NGMS"),
        "s_min_uncond_all": _check(False, "Negative Guidance minimum sigma all steps", s,
                                   infotext="NGMS all steps"),
        "token_merging_ratio": _slider(0.0, "Token merging ratio", 0.0, 0.9, 0.1, s,
                                       infotext="Token merging ratio"),
        "token_merging_ratio_img2img": _slider(0.0, "Token merging ratio for img2img", 0.0, 0.9,
                                               0.1, s),
        "token_merging_ratio_hr": _slider(0.0, "Token merging ratio for high-res pass", 0.0, 0.9,
                                          0.1, s, infotext="Token merging ratio hr"),
        "pad_cond_uncond": _check(False, "Pad prompt/negative prompt", s, infotext="Pad conds"),
        "pad_cond_uncond_v0": _check(False, "Pad prompt/negative prompt (v0)", s,
                                     infotext="Pad conds v0"),
        "persistent_cond_cache": _check(True, "Persistent cond cache", s),
        "batch_cond_uncond": _check(True, "Batch cond/uncond", s),
        "fp8_storage": _choice("Disable", "FP8 weight", ["Disable", "Enable for SDXL", "Enable"], s,
                               component="radio", infotext="FP8 weight"),
        "cache_fp16_weight": _check(False, "Cache FP16 weight for LoRA", s,
                                    infotext="Cache FP16 weight for LoRA"),
        # the plan is made when a checkpoint loads: a change applies from the next load
        "cpu_precision": _choice(devices.AUTOMATIC, "CPU precision of the UNet and text "
                                 "encoders (Automatic: bfloat16 where the processor computes it "
                                 "natively; applies when a checkpoint is next loaded)",
                                 list(devices.CPU_PRECISIONS), s, component="radio"),
        "cpu_vae_precision": _choice(devices.BFLOAT16, "CPU precision of the VAE when the UNet "
                                     "runs in bfloat16 (applies when a checkpoint is next "
                                     "loaded)", list(devices.CPU_VAE_PRECISIONS), s,
                                     component="radio"),
    }


def _compatibility_options() -> dict[str, OptionInfo]:
    s = COMPATIBILITY
    return {
        "auto_backcompat": _check(True, "Automatic backward compatibility", s),
        "use_old_emphasis_implementation": _check(False, "Use old emphasis implementation", s),
        "use_old_karras_scheduler_sigmas": _check(False, "Use old karras scheduler sigmas", s),
        "no_dpmpp_sde_batch_determinism": _check(False, "Do not make DPM++ SDE deterministic "
                                                 "across different batch sizes.", s),
        "use_old_hires_fix_width_height": _check(False, "For hires fix, use width/height sliders to "
                                                 "set final resolution rather than first pass", s),
        "hires_fix_use_firstpass_conds": _check(False, "For hires fix, calculate conds of second "
                                                "pass using extra networks of first pass.", s),
        "use_old_scheduling": _check(False, "Use old prompt editing timelines.", s,
                                     infotext="Old prompt editing timelines"),
        "use_downcasted_alpha_bar": _check(False, "Downcast model alphas_cumprod to fp16 before "
                                           "sampling", s, infotext="Downcast alphas_cumprod"),
        "refiner_switch_by_sample_steps": _check(False, "Switch to refiner by sampling steps "
                                                 "instead of model timesteps", s,
                                                 infotext="Refiner switch by sampling steps"),
        "dont_fix_second_order_samplers_schedule": _check(False, "Do not fix prompt schedule for "
                                                          "second order samplers.", s),
        "disable_weights_auto_swap": _check(True, "Ignore the checkpoint named in pasted infotext "
                                            "(do not swap models)", INFOTEXT),
    }


def _infotext_options() -> dict[str, OptionInfo]:
    s = INFOTEXT
    return {
        "add_model_hash_to_info": _check(True, "Add model hash to infotext", s),
        "add_model_name_to_info": _check(True, "Add model name to infotext", s),
        "add_user_name_to_info": _check(False, "Add user name to infotext when authenticated", s),
        "add_version_to_infotext": _check(True, "Add program version to infotext", s),
        "add_vae_name_to_info": _check(True, "Add VAE name to infotext", s),
        "add_vae_hash_to_info": _check(True, "Add VAE hash to infotext", s),
        "infotext_styles": _choice("Apply if any", "Infer styles from prompts of pasted infotext",
                                   ["Ignore", "Apply", "Discard", "Apply if any"], s,
                                   component="radio"),
        "infotext_skip_pasting": OptionInfo([], "Disregard fields from pasted infotext",
                                            "dropdown", {"multiselect": True}, section=s),
        "textual_inversion_add_hashes_to_infotext": _check(True, "Add textual inversion hashes to "
                                                           "infotext", EXTRA_NETWORKS),
        "lora_add_hashes_to_infotext": _check(True, "Add Lora hashes to infotext", EXTRA_NETWORKS),
        "extra_networks_default_multiplier": _slider(1.0, "Default multiplier for extra networks",
                                                     0.0, 2.0, 0.01, EXTRA_NETWORKS),
        "extra_networks_add_text_separator": _text(" ", "Extra networks separator", EXTRA_NETWORKS),
        "lora_preferred_name": _choice("Alias from file", "When adding to prompt, refer to Lora by",
                                       ["Alias from file", "Filename"], EXTRA_NETWORKS,
                                       component="radio"),
    }


def _ui_options(sampler_names: ChoiceSource | None) -> dict[str, OptionInfo]:
    return {
        "return_grid": _check(True, "Show grid in gallery", UI),
        # choices: localizations/*.json of the app and the extensions (the settings tab)
        "localization": _choice("None", "Localization (requires restart)", None, UI),
        "do_not_show_images": _check(False, "Do not show any images in gallery", UI),
        "js_modal_lightbox": _check(True, "Full page image viewer: enable", UI),
        "send_seed": _check(True, "Send seed when sending prompt or image to other interface", UI),
        "send_size": _check(True, "Send size when sending prompt or image to another interface", UI),
        "quicksettings_list": OptionInfo(["sd_model_checkpoint"], "Quicksettings list", "dropdown",
                                         {"multiselect": True}, section=UI),
        "hide_samplers": _choice([], "Hide samplers in user interface", sampler_names, UI,
                                 component="checkboxgroup"),
        "ui_reorder_list": OptionInfo([], "UI item order for txt2img/img2img tabs", "dropdown",
                                      {"multiselect": True}, choices=list(UI_REORDER_CATEGORIES),
                                      section=UI, comment="takes effect when the server restarts"),
        "show_progressbar": _check(True, "Show progressbar", LIVE_PREVIEWS),
        "live_previews_enable": _check(True, "Show live previews of the created image",
                                       LIVE_PREVIEWS),
        "live_previews_image_format": _choice("png", "Live preview file format",
                                              ["jpeg", "png", "webp"], LIVE_PREVIEWS,
                                              component="radio"),
        "show_progress_grid": _check(True, "Show previews of all images generated in a batch as a "
                                     "grid", LIVE_PREVIEWS),
        "show_progress_every_n_steps": _slider(10, "Live preview display period", -1, 32, 1,
                                               LIVE_PREVIEWS,
                                               comment="in sampling steps; -1 = only at the end"),
        "show_progress_type": _choice("Approx NN", "Live preview method",
                                      ["Full", "Approx NN", "Approx cheap", "TAESD"], LIVE_PREVIEWS,
                                      component="radio"),
        "live_preview_refresh_period": _number(1000, "Progressbar and preview update period (ms)",
                                               LIVE_PREVIEWS),
    }


def _sampler_options() -> dict[str, OptionInfo]:
    s = SAMPLER_PARAMS
    return {
        "eta_ddim": _slider(0.0, "Eta for DDIM", 0.0, 1.0, 0.01, s, infotext="Eta DDIM"),
        "eta_ancestral": _slider(1.0, "Eta for k-diffusion samplers", 0.0, 1.0, 0.01, s,
                                 infotext="Eta"),
        "ddim_discretize": _choice("uniform", "img2img DDIM discretize", ["uniform", "quad"], s,
                                   component="radio"),
        "s_churn": _slider(0.0, "sigma churn", 0.0, 100.0, 0.01, s, infotext="Sigma churn"),
        "s_tmin": _slider(0.0, "sigma tmin", 0.0, 10.0, 0.01, s, infotext="Sigma tmin"),
        "s_tmax": _slider(0.0, "sigma tmax", 0.0, 999.0, 0.01, s, infotext="Sigma tmax",
                          comment="0 = inf"),
        "s_noise": _slider(1.0, "sigma noise", 0.0, 1.1, 0.001, s, infotext="Sigma noise"),
        "sigma_min": _number(0.0, "sigma min", s, infotext="Schedule min sigma",
                             comment="0 = default (~0.03 in SD1.5)"),
        "sigma_max": _number(0.0, "sigma max", s, infotext="Schedule max sigma",
                             comment="0 = default (~14.6 in SD1.5)"),
        "rho": _number(0.0, "rho", s, infotext="Schedule rho", comment="0 = default (7 for karras)"),
        "eta_noise_seed_delta": _number(0, "Eta noise seed delta", s, infotext="ENSD",
                                        comment="does not improve anything, just produces different "
                                                "results for ancestral samplers"),
        "always_discard_next_to_last_sigma": _check(False, "Always discard next-to-last sigma", s,
                                                    infotext="Discard penultimate sigma"),
        "sgm_noise_multiplier": _check(False, "SGM noise multiplier", s,
                                       infotext="SGM noise multiplier"),
        "uni_pc_variant": _choice("bh1", "UniPC variant", ["bh1", "bh2", "vary_coeff"], s,
                                  component="radio", infotext="UniPC variant"),
        "uni_pc_skip_type": _choice("time_uniform", "UniPC skip type",
                                    ["time_uniform", "time_quadratic", "logSNR"], s,
                                    component="radio", infotext="UniPC skip type"),
        "uni_pc_order": _slider(3, "UniPC order", 1, 50, 1, s, infotext="UniPC order"),
        "uni_pc_lower_order_final": _check(True, "UniPC lower order final", s,
                                           infotext="UniPC lower order final"),
        "sd_noise_schedule": _choice("Default", "Noise schedule for sampling",
                                     ["Default", "Zero Terminal SNR"], s, component="radio",
                                     infotext="Noise Schedule"),
        "beta_dist_alpha": _slider(0.6, "Beta scheduler - alpha", 0.01, 1.0, 0.01, s,
                                   infotext="Beta schedule alpha"),
        "beta_dist_beta": _slider(0.6, "Beta scheduler - beta", 0.01, 1.0, 0.01, s,
                                  infotext="Beta schedule beta"),
    }


def _extension_options() -> dict[str, OptionInfo]:
    """A1111 keeps these hidden (the Extensions tab changes them)."""
    section = ("extensions", "Extensions")
    return {
        "disabled_extensions": OptionInfo([], "Disable these extensions", "checkboxgroup",
                                          section=section),
        "disable_all_extensions": _choice("none", "Disable all extensions (preserves the list "
                                          "of disabled extensions)", ["none", "extra", "all"],
                                          section, component="radio"),
    }


def _controlnet_options() -> dict[str, OptionInfo]:
    """sd-webui-controlnet's keys, so its users' config.json and clients keep working."""
    section = ("control_net", "ControlNet")
    return {
        "control_net_unit_count": _slider(3, "Multi-ControlNet: ControlNet unit number", 1, 10,
                                          1, section, comment="takes effect when the server "
                                                              "restarts"),
        "control_net_no_detectmap": _check(False, "Do not append detectmap to output", section),
    }


def _limit_options() -> dict[str, OptionInfo]:
    """The "Server limits" section, from the limits table (modules/app/server_limits.py)."""
    section = server_limits.SECTION

    def at_least_zero(value: float) -> float:
        if value < 0:
            raise ValueError("a limit cannot be negative")
        return value

    # restrict_api: a client must not raise the limits that protect the server from clients
    options = {spec.key: _number(spec.default, spec.label, section, validate=at_least_zero,
                                 restrict_api=True)
               for spec in server_limits.LIMIT_SPECS}
    options[server_limits.MEMORY_RESERVE_KEY] = _number(
        server_limits.MEMORY_RESERVE_DEFAULT_MB, "Memory left free for the system while a job "
        "runs, MB (jobs that would need it are refused or decoded in tiles)", section,
        validate=at_least_zero, restrict_api=True)
    return options


def _interrogate_options() -> dict[str, OptionInfo]:
    s = INTERROGATE
    return {
        "interrogate_keep_models_in_memory": _check(False, "Keep models in VRAM", s),
        "interrogate_return_ranks": _check(False, "Include ranks of model tags matches in "
                                           "results.", s),
        "interrogate_clip_num_beams": _slider(1, "BLIP: num_beams", 1, 16, 1, s),
        "interrogate_clip_min_length": _slider(24, "BLIP: minimum description length", 1, 128,
                                               1, s),
        "interrogate_clip_max_length": _slider(48, "BLIP: maximum description length", 1, 256,
                                               1, s),
        "interrogate_clip_dict_limit": _number(1500, "CLIP: maximum number of lines in text "
                                               "file", s),
        "interrogate_clip_skip_categories": _text("", "CLIP: skip inquire categories (comma "
                                                  "separated)", s),
        "interrogate_deepbooru_score_threshold": _slider(0.5, "deepbooru: score threshold", 0,
                                                         1, 0.01, s),
        "deepbooru_sort_alpha": _check(True, "deepbooru: sort tags alphabetically", s),
        "deepbooru_use_spaces": _check(True, "deepbooru: use spaces in tags", s),
        "deepbooru_escape": _check(True, "deepbooru: escape (\\) brackets", s),
        "deepbooru_filter_tags": _text("", "deepbooru: filter out those tags (comma separated)",
                                       s),
    }


def default_option_definitions(*, checkpoint_titles: ChoiceSource | None = None,
                               vae_names: ChoiceSource | None = None,
                               sampler_names: ChoiceSource | None = None,
                               upscaler_names: ChoiceSource | None = None) -> dict[str, OptionInfo]:
    """A fresh table of every built-in option (fresh objects each call: nothing shared)."""
    definitions: dict[str, OptionInfo] = {}
    for group in (_saving_options(), _path_options(), _system_options(upscaler_names),
                  _sd_options(checkpoint_titles), _vae_options(vae_names), _img2img_options(),
                  _optimization_options(), _compatibility_options(), _infotext_options(),
                  _ui_options(sampler_names), _sampler_options(), _limit_options(),
                  _extension_options(), _controlnet_options(), _interrogate_options()):
        definitions.update(group)
    return definitions
