// Translates the UI with window.localization (set in the page head when a localization is
// chosen in Settings): texts, and the placeholder / title / aria-label attributes, as the page
// draws them. Keys are the English texts, trimmed; what the user typed is never touched.
(function () {
    const texts = window.localization;
    if (!texts || Object.keys(texts).length === 0) {
        return;
    }
    const ATTRIBUTES = ["placeholder", "title", "aria-label"];
    const NOT_UI_TEXT = new Set(["SCRIPT", "STYLE", "TEXTAREA", "CODE", "PRE"]);

    function translated(text) {
        const key = text.trim();
        return Object.prototype.hasOwnProperty.call(texts, key) ? text.replace(key, texts[key]) : null;
    }

    function translateText(node) {
        const parent = node.parentElement;
        if (parent && !NOT_UI_TEXT.has(parent.tagName)) {
            const text = translated(node.nodeValue);
            if (text !== null) {
                node.nodeValue = text;
            }
        }
    }

    function translateAttributes(element) {
        for (const attribute of ATTRIBUTES) {
            const value = element.getAttribute(attribute);
            const text = value ? translated(value) : null;
            if (text !== null) {
                element.setAttribute(attribute, text);
            }
        }
    }

    function translateTree(node) {
        if (node.nodeType === Node.TEXT_NODE) {
            translateText(node);
            return;
        }
        if (node.nodeType !== Node.ELEMENT_NODE) {
            return;
        }
        translateAttributes(node);
        const walker = document.createTreeWalker(node, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
        for (let child = walker.nextNode(); child; child = walker.nextNode()) {
            if (child.nodeType === Node.TEXT_NODE) {
                translateText(child);
            } else {
                translateAttributes(child);
            }
        }
    }

    const observer = new MutationObserver(function (mutations) {
        for (const mutation of mutations) {
            if (mutation.type === "characterData") {
                translateText(mutation.target);
            }
            mutation.addedNodes.forEach(translateTree);
        }
    });

    function start() {
        translateTree(document.body);
        observer.observe(document.body, {childList: true, subtree: true, characterData: true});
    }

    if (document.body) {
        start();
    } else {
        document.addEventListener("DOMContentLoaded", start);
    }
})();
