// Helpers every other UI script (ours and extensions') may use, under A1111's names:
// gradioApp(), onUiLoaded / onUiUpdate / onAfterUiUpdate / onUiTabChange callbacks,
// get_uiCurrentTab(), updateInput(). Loaded first.

function gradioApp() {
    const apps = document.getElementsByTagName("gradio-app");
    const app = apps.length === 0 ? document : apps[0];
    return app.shadowRoot ? app.shadowRoot : app;
}

const uiCallbacks = {loaded: [], update: [], afterUpdate: [], tabChange: []};

function onUiLoaded(callback) { uiCallbacks.loaded.push(callback); }
function onUiUpdate(callback) { uiCallbacks.update.push(callback); }
function onAfterUiUpdate(callback) { uiCallbacks.afterUpdate.push(callback); }
function onUiTabChange(callback) { uiCallbacks.tabChange.push(callback); }
function onOptionsChanged(callback) { /* options are applied server side; kept for extensions */ }

function runUiCallbacks(callbacks, argument) {
    for (const callback of callbacks) {
        try {
            callback(argument);
        } catch (error) {
            console.error("UI callback failed:", error);
        }
    }
}

function get_uiCurrentTab() {
    return gradioApp().querySelector("#tabs > .tab-nav > button.selected, #tabs button[role=tab][aria-selected=true]");
}

function get_uiCurrentTabContent() {
    return gradioApp().querySelector("#tabs > .tabitem:not([style*='display: none']), #tabs [role=tabpanel]:not([hidden])");
}

// Tell Gradio that a script changed an input's value (it listens for "input" events).
function updateInput(target) {
    target.dispatchEvent(new Event("input", {bubbles: true}));
}

(function watchUi() {
    let loaded = false;
    let afterUpdateTimer = null;
    let currentTabText = null;
    const observer = new MutationObserver(function (mutations) {
        if (!loaded && gradioApp().querySelector("#txt2img_prompt, #tabs")) {
            loaded = true;
            runUiCallbacks(uiCallbacks.loaded);
        }
        runUiCallbacks(uiCallbacks.update, mutations);
        // the "after update" callbacks run once the page is quiet again
        clearTimeout(afterUpdateTimer);
        afterUpdateTimer = setTimeout(function () { runUiCallbacks(uiCallbacks.afterUpdate); }, 200);
        const tab = get_uiCurrentTab();
        const tabText = tab ? tab.textContent.trim() : null;
        if (tabText !== currentTabText) {
            currentTabText = tabText;
            runUiCallbacks(uiCallbacks.tabChange);
        }
    });
    function start() {
        observer.observe(gradioApp(), {childList: true, subtree: true});
    }
    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();

// Ctrl+Enter (Cmd+Enter) in a prompt box generates; Escape does not interfere with Gradio.
document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) {
        return;
    }
    const target = event.target;
    if (!(target instanceof HTMLTextAreaElement) || !target.closest(".prompt")) {
        return;
    }
    const tabId = (target.closest("[id$='_prompt_container']") || {id: ""}).id.replace(/_prompt_container$/, "");
    const generate = tabId ? gradioApp().querySelector("#" + tabId + "_generate") : null;
    if (generate) {
        event.preventDefault();
        generate.click();
    }
});
