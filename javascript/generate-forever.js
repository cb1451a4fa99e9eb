// Right-click on Generate opens a small menu: "Generate forever" clicks Generate again each time
// the tab's job has finished, until "Cancel generate forever". A job counts as finished when its
// progress bar, shown while it runs, is cleared again, or when the result info / error changes.

const GENERATE_FOREVER_TABS = ["txt2img", "img2img"];
const generateForeverState = {};   // tab id -> {active, sawRunning, observer}

function contextMenuElement() {
    let menu = document.getElementById("context-menu");
    if (!menu) {
        menu = document.createElement("nav");
        menu.id = "context-menu";
        menu.className = "context-menu";
        menu.style.display = "none";
        document.body.appendChild(menu);
        // only a person's click closes it: the script's own click on Generate (the next run of
        // Generate forever) must not close a menu the user just opened
        document.addEventListener("click", function (event) {
            if (event.isTrusted) { menu.style.display = "none"; }
        });
        document.addEventListener("keydown", function (event) {
            if (event.key === "Escape") { menu.style.display = "none"; }
        });
    }
    return menu;
}

function showContextMenu(event, entries) {
    const menu = contextMenuElement();
    menu.innerHTML = "";
    const list = document.createElement("ul");
    for (const entry of entries) {
        const item = document.createElement("li");
        item.textContent = entry.label;
        item.dataset.action = entry.action;
        item.addEventListener("click", function (clickEvent) {
            clickEvent.stopPropagation();
            menu.style.display = "none";
            entry.run();
        });
        list.appendChild(item);
    }
    menu.appendChild(list);
    menu.style.left = event.pageX + "px";
    menu.style.top = event.pageY + "px";
    menu.style.display = "block";
}

function generateButton(tabId) {
    return gradioApp().querySelector("#" + tabId + "_generate");
}

function jobFinished(tabId) {
    const state = generateForeverState[tabId];
    if (!state || !state.active) { return; }
    state.sawRunning = false;
    // a moment for Gradio to settle the last outputs before the next click
    setTimeout(function () {
        if (state.active && generateButton(tabId)) { generateButton(tabId).click(); }
    }, 300);
}

function watchJob(tabId) {
    const state = generateForeverState[tabId];
    const progress = gradioApp().querySelector("#" + tabId + "_progress");
    const results = ["#html_info_" + tabId, "#html_log_" + tabId]
        .map(function (selector) { return gradioApp().querySelector(selector); })
        .filter(Boolean);
    state.observer = new MutationObserver(function (mutations) {
        const running = progress !== null && progress.querySelector(".progressDiv") !== null;
        if (running) {
            state.sawRunning = true;
            return;
        }
        const resultChanged = mutations.some(function (mutation) {
            return results.some(function (element) { return element.contains(mutation.target); });
        });
        if (state.sawRunning || resultChanged) { jobFinished(tabId); }
    });
    for (const element of [progress, ...results]) {
        if (element) {
            state.observer.observe(element, {childList: true, subtree: true, characterData: true});
        }
    }
}

function startGenerateForever(tabId) {
    if (generateForeverState[tabId] && generateForeverState[tabId].active) { return; }
    generateForeverState[tabId] = {active: true, sawRunning: false, observer: null};
    watchJob(tabId);
    const button = generateButton(tabId);
    if (button) {
        button.classList.add("generate-forever");
        button.click();
    }
}

function cancelGenerateForever(tabId) {
    const state = generateForeverState[tabId];
    if (!state) { return; }
    state.active = false;
    if (state.observer) { state.observer.disconnect(); }
    const button = generateButton(tabId);
    if (button) { button.classList.remove("generate-forever"); }
}

function isGeneratingForever(tabId) {
    return Boolean(generateForeverState[tabId] && generateForeverState[tabId].active);
}

// delegated: the buttons of tabs Gradio renders later are covered too
document.addEventListener("contextmenu", function (event) {
    const button = event.target instanceof Element ? event.target.closest("[id$='_generate']") : null;
    const tabId = button ? button.id.replace(/_generate$/, "") : null;
    if (!tabId || !GENERATE_FOREVER_TABS.includes(tabId)) { return; }
    event.preventDefault();
    showContextMenu(event, [
        {label: "Generate forever", action: "generate-forever",
         run: function () { startGenerateForever(tabId); }},
        {label: "Cancel generate forever", action: "cancel-generate-forever",
         run: function () { cancelGenerateForever(tabId); }},
    ]);
});
