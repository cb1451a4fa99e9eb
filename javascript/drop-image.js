// Dropping an image on a prompt box reads its generation parameters into the tab (A1111's
// drag and drop): the file is handed to the tab's hidden "<tab>_prompt_image" upload, whose
// upload event does the reading on the server.

function promptBoxOf(target) {
    const box = target instanceof HTMLTextAreaElement
        ? target.closest("[id$='_prompt'], [id$='_neg_prompt']") : null;
    return box && !box.id.startsWith("hires") ? box : null;
}

function droppedImageFiles(event) {
    const files = event.dataTransfer ? event.dataTransfer.files : null;
    return files && files.length > 0 && files[0].type.startsWith("image/") ? files : null;
}

document.addEventListener("dragover", function (event) {
    if (promptBoxOf(event.target) && event.dataTransfer
        && [...event.dataTransfer.types].includes("Files")) {
        event.preventDefault();
        event.dataTransfer.dropEffect = "copy";
    }
});

document.addEventListener("drop", function (event) {
    const box = promptBoxOf(event.target);
    const files = box ? droppedImageFiles(event) : null;
    if (!files) {
        return;
    }
    const tabId = box.id.replace(/_(neg_)?prompt$/, "");
    const input = gradioApp().querySelector("#" + tabId + "_prompt_image input[type=file]");
    if (!input) {
        return;
    }
    event.preventDefault();
    const transfer = new DataTransfer();
    transfer.items.add(files[0]);
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", {bubbles: true}));
});
