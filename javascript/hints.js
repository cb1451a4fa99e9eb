// Mouse-over hints: a title on every control whose label (or button text) is in this map, and
// on the elements named by id. Applied again whenever Gradio renders new elements.

const hintsByLabel = {
    "Generate": "Generate images (right-click: Generate forever; Ctrl+Enter in a prompt box)",
    "Interrupt": "Stop processing images and return the results finished so far",
    "Skip": "Stop processing the current image and continue with the next one",
    "\u2199\ufe0f": "Read generation parameters from the prompt, or from the last generation if the prompt is empty, into the user interface",
    "\U0001f5d1\ufe0f": "Clear the prompt and the negative prompt",
    "\u270d\ufe0f": "Apply the selected styles to the prompt and the negative prompt",
    "\U0001f3b2": "Set the seed to -1: a new random seed every time",
    "\u267b\ufe0f": "Reuse the seed of the last generation",
    "Prompt": "Describe what you want; (word:1.2) raises attention, Ctrl+Up / Ctrl+Down edits it",
    "Negative prompt": "Describe what you do not want in the image",
    "Styles": "Styles to add to the prompt when generating (styles.csv)",
    "Sampling method": "Which algorithm is used to produce the image",
    "Schedule type": "How the noise level falls from step to step",
    "Sampling steps": "How many times the image is refined; more steps take longer",
    "Width": "Width of the image in pixels (a multiple of 8)",
    "Height": "Height of the image in pixels (a multiple of 8)",
    "Batch count": "How many batches of images to create (one after the other)",
    "Batch size": "How many images per batch (at once; needs more memory)",
    "CFG Scale": "How strongly the image should follow the prompt",
    "Seed": "The value that determines the starting noise; the same seed gives the same image",
    "Denoising strength": "How much the image may change: 0 keeps it, 1 ignores it",
    "Image CFG Scale": "How strongly the image should follow the input image (edit models)",
    "Resize mode": "How the input image is fitted to the target size",
    "Mask blur": "How much the mask is blurred before use, in pixels",
    "Mask mode": "Whether the masked or the unmasked area is repainted",
    "Masked content": "What fills the masked area before it is denoised",
    "Inpaint area": "Repaint the whole picture, or only the masked area at full resolution",
    "Only masked padding, pixels": "Margin around the masked area when inpainting only the mask",
    "Enable hires. fix": "Render at a lower resolution, upscale, then add detail in a second pass",
    "Upscaler": "How the first pass is enlarged before the second pass",
    "Hires steps": "Steps of the second pass; 0 uses the same number as the first pass",
    "Upscale by": "Factor by which the first pass is enlarged",
    "Enable refiner": "Switch to a second checkpoint for the last steps",
    "Switch at": "Fraction of the steps after which the refiner takes over",
};

const hintsById = {
    "txt2img_token_counter": "Tokens used / current limit: prompts are encoded in chunks of 75 tokens",
    "img2img_token_counter": "Tokens used / current limit: prompts are encoded in chunks of 75 tokens",
    "txt2img_negative_token_counter": "Tokens used / current limit of the negative prompt",
    "img2img_negative_token_counter": "Tokens used / current limit of the negative prompt",
};

function applyHints() {
    const root = gradioApp();
    for (const element of root.querySelectorAll("button, label span, span[data-testid='block-info'], h2, .label-wrap span")) {
        if (element.title) { continue; }
        const hint = hintsByLabel[element.textContent.trim()];
        if (hint) {
            element.title = hint;
            // the whole control shows the hint, not only its label
            const block = element.closest(".block");
            if (block && !block.title && element.tagName !== "BUTTON") { block.title = hint; }
        }
    }
    for (const [id, hint] of Object.entries(hintsById)) {
        const element = root.querySelector("#" + id);
        if (element && !element.title) { element.title = hint; }
    }
}

onAfterUiUpdate(applyHints);
