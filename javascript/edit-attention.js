// Ctrl+Up / Ctrl+Down in a prompt box raises / lowers the attention weight of the selected text
// (or of the word under the cursor, or of the "(text:weight)" group around it) by 0.1:
// word -> (word:1.1) -> (word:1.2); back to plain "word" when the weight returns to 1.

const ATTENTION_STEP = 0.1;
const WORD_DELIMITERS = ".,\\/!?%^*;:{}=`~()[]<>| \r\n\t";

function formatAttentionWeight(weight) {
    return String(parseFloat(weight.toFixed(2)));
}

// The "(text:weight)" group around `position`: the range of its text, or null.
function enclosingWeightedGroup(text, position) {
    let open = -1;
    for (let index = position - 1; index >= 0; index--) {
        if (text[index] === ")") { return null; }
        if (text[index] === "(") { open = index; break; }
    }
    if (open < 0) { return null; }
    const close = text.indexOf(")", position);
    const nextOpen = text.indexOf("(", position);
    if (close < 0 || (nextOpen >= 0 && nextOpen < close)) { return null; }
    const group = text.slice(open + 1, close);
    const weighted = /^([\s\S]*):\s*[-+]?\d*\.?\d+\s*$/.exec(group);
    if (!weighted) { return null; }
    return {start: open + 1, end: open + 1 + weighted[1].length};
}

function wordAround(text, position) {
    let start = position;
    let end = position;
    while (start > 0 && !WORD_DELIMITERS.includes(text[start - 1])) { start--; }
    while (end < text.length && !WORD_DELIMITERS.includes(text[end])) { end++; }
    return {start: start, end: end};
}

// Pure edit: returns {text, start, end} (the new text and the range to keep selected), or null.
function editAttentionWeight(text, selectionStart, selectionEnd, delta) {
    let start = selectionStart;
    let end = selectionEnd;
    if (start === end) {
        const range = enclosingWeightedGroup(text, start) || wordAround(text, start);
        start = range.start;
        end = range.end;
    }
    while (start < end && /\s/.test(text[start])) { start++; }
    while (end > start && /\s/.test(text[end - 1])) { end--; }
    if (start === end) { return null; }

    // a selection of a whole "(text:weight)" group edits that group
    const whole = /^\(([\s\S]*):\s*[-+]?\d*\.?\d+\s*\)$/.exec(text.slice(start, end));
    if (whole) {
        start += 1;
        end = start + whole[1].length;
    }
    const before = text.slice(0, start);
    const selected = text.slice(start, end);
    const after = text.slice(end);
    const weightMatch = /^:\s*([-+]?\d*\.?\d+)\s*\)/.exec(after);
    if (before.endsWith("(") && weightMatch) {
        const weight = parseFloat((parseFloat(weightMatch[1]) + delta).toFixed(2));
        const rest = after.slice(weightMatch[0].length);
        if (weight === 1) {
            return {text: before.slice(0, -1) + selected + rest, start: start - 1, end: end - 1};
        }
        return {text: before + selected + ":" + formatAttentionWeight(weight) + ")" + rest,
                start: start, end: end};
    }
    const weight = 1 + delta;
    return {text: before + "(" + selected + ":" + formatAttentionWeight(weight) + ")" + after,
            start: start + 1, end: end + 1};
}

function handleAttentionKey(event) {
    if (!(event.ctrlKey || event.metaKey) || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) {
        return;
    }
    const target = event.target;
    if (!(target instanceof HTMLTextAreaElement) || !target.closest(".prompt")) {
        return;
    }
    const delta = event.key === "ArrowUp" ? ATTENTION_STEP : -ATTENTION_STEP;
    const edited = editAttentionWeight(target.value, target.selectionStart, target.selectionEnd, delta);
    if (edited === null) {
        return;
    }
    event.preventDefault();
    target.value = edited.text;
    target.setSelectionRange(edited.start, edited.end);
    updateInput(target);
}

if (typeof document !== "undefined") {
    document.addEventListener("keydown", handleAttentionKey);
}
if (typeof module !== "undefined") {
    module.exports = {editAttentionWeight: editAttentionWeight};
}
