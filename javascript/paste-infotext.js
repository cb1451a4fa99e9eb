// Pasting a whole infotext ("generation parameters": a prompt, then "Steps: …, Sampler: …")
// into an empty prompt box sets every field of the tab, as if ↙️ had been pressed.

const INFOTEXT_PARAMS_LINE = /(^|\n)Steps: *\d+,[^\n]*\S+: *[^\n]*$/;

document.addEventListener("paste", function (event) {
    const target = event.target;
    const box = target instanceof HTMLTextAreaElement ? target.closest("[id$='_prompt']") : null;
    if (!box || box.id.endsWith("_neg_prompt") || box.id.startsWith("hires")) {
        return;
    }
    const pasted = (event.clipboardData || window.clipboardData).getData("text");
    if (target.value.trim() !== "" || !INFOTEXT_PARAMS_LINE.test(pasted.trim())) {
        return;
    }
    const tabId = box.id.replace(/_prompt$/, "");
    // after the browser inserted the text and Gradio saw its input event
    setTimeout(function () {
        const paste = gradioApp().querySelector("#" + tabId + "_paste");
        if (paste) { paste.click(); }
    }, 200);
});
