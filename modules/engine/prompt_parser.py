"""The AUTOMATIC1111 prompt language (a1111-compat.md §6).

* comments (`# ...`) and extra-network tags (`<lora:name:1>`) are removed first;
* `AND` splits a prompt into weighted sub-prompts (composable diffusion);
* `[from:to:when]` / `[a|b]` expand a sub-prompt into a schedule of plain texts (lark grammar);
* `(text)`, `[text]`, `(text:1.3)` and `BREAK` turn one plain text into weighted runs.

All functions are pure: text in, data out.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

import lark

# A1111's grammar (1.6+). `!` keeps the literal brackets/colons of `start` and `emphasized` in the tree,
# so an emphasised run is rendered back as written; `[...]` makes lark insert None placeholders, so
# `scheduled` always has five children: before | None, after, WHITESPACE | None, NUMBER, WHITESPACE | None.
_SCHEDULE_GRAMMAR = r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
        | "(" prompt ":" prompt ")"
        | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""

# Building an Earley parser compiles the grammar; one immutable parser object serves every call.
_SCHEDULE_PARSER = lark.Lark(_SCHEDULE_GRAMMAR, maybe_placeholders=True)

# One lexeme of the attention syntax per match. Group 1 is the number of a `:weight)` closer.
_ATTENTION_LEXEME = re.compile(
    r"""
      \\[()\[\]\\]          # escaped bracket or backslash -> the literal character
    | \\                    # any other backslash (consumed, adds nothing)
    | \(                    # open round
    | \[                    # open square
    | :\s*([+-]?[.\d]+)\s*\)  # explicit weight, closes a round bracket
    | \)                    # close round
    | ]                     # close square
    | [^\\()\[\]:]+         # plain text
    | :                     # a colon that is not part of a weight
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
ROUND_BRACKET_MULTIPLIER = 1.1
SQUARE_BRACKET_MULTIPLIER = 1 / 1.1
BREAK_MARKER: tuple[str, float] = ("BREAK", -1.0)

_AND = re.compile(r"\bAND\b")
_SUBPROMPT_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")

_EXTRA_NETWORK_TAG = re.compile(r"<(\w+):([^>]+)>")
_WHOLE_LINE_COMMENT = re.compile(r"(^|\n)#[^\n]*(\n|$)")
_TRAILING_COMMENT = re.compile(r"#[^\n]*(\n|$)")


# --------------------------------------------------------------------------------------------------
# comments, extra networks, AND
# --------------------------------------------------------------------------------------------------
def strip_prompt_comments(text: str) -> str:
    """Remove `#` comments as A1111 1.8+ does (opts.enable_prompt_comments): a whole comment line
    collapses to one newline, and `#` in the middle of a line hides the rest of that line."""
    text = _WHOLE_LINE_COMMENT.sub("\n", text)
    return _TRAILING_COMMENT.sub("\n", text)


def extract_extra_networks(text: str) -> tuple[str, dict[str, list[list[str]]]]:
    """Remove `<kind:arg1:arg2...>` tags; return the remaining text and {kind: [args, ...]} in the
    order the tags appear (args split on ':', e.g. `<lora:name:0.8>` -> {"lora": [["name", "0.8"]]})."""
    found: dict[str, list[list[str]]] = {}

    def take(match: re.Match[str]) -> str:
        found.setdefault(match.group(1), []).append(match.group(2).split(":"))
        return ""

    return _EXTRA_NETWORK_TAG.sub(take, text), found


def split_composable(prompt: str) -> list[tuple[str, float]]:
    """Split on uppercase `AND`; each sub-prompt may end with `:weight` (default 1.0). Trailing
    whitespace of a sub-prompt is dropped, leading whitespace kept (as A1111)."""
    parts: list[tuple[str, float]] = []
    for subprompt in _AND.split(prompt):
        match = _SUBPROMPT_WEIGHT.search(subprompt)
        if match is None:
            parts.append((subprompt, 1.0))
            continue
        text, weight = match.groups()
        parts.append((text, float(weight) if weight is not None else 1.0))
    return parts


# --------------------------------------------------------------------------------------------------
# prompt editing and alternation
# --------------------------------------------------------------------------------------------------
class _StepRules:
    """How a `when` number of `[from:to:when]` maps to a step (1.6+ rules, or the old ones)."""

    def __init__(self, base_steps: int, hires_steps: int | None, use_old_scheduling: bool) -> None:
        self.use_old_scheduling = use_old_scheduling
        if hires_steps is None or use_old_scheduling:
            self.steps, self.int_offset, self.fraction_offset = base_steps, 0, 0.0
        else:
            # the hires pass: 1.x addresses its fraction, integers past the base steps are offsets
            self.steps, self.int_offset, self.fraction_offset = hires_steps, base_steps, 1.0

    def switch_step(self, number: str) -> int:
        value = float(number)
        if self.use_old_scheduling:
            value = value * self.steps if value < 1 else value
        elif "." in number:
            value = (value - self.fraction_offset) * self.steps
        else:
            value = value - self.int_offset
        return min(self.steps, int(value))


def _scheduled_parts(node: lark.Tree) -> tuple[lark.Tree | None, lark.Tree, str]:
    before, after, _space, number, _space_after = node.children
    return before, after, str(number)


def _collect_schedule_points(tree: lark.Tree, rules: _StepRules) -> list[int]:
    points = {rules.steps}
    for node in tree.iter_subtrees():
        if node.data == "scheduled":
            step = rules.switch_step(_scheduled_parts(node)[2])
            if step >= 1:  # a switch before the first step never shows
                points.add(step)
        elif node.data == "alternate":
            points.update(range(1, rules.steps + 1))
    return sorted(points)


def _render_pieces(node: lark.Tree | lark.Token | None, step: int, rules: _StepRules) -> Iterator[str]:
    """The text of a parsed prompt as seen at `step` (1-based, matching A1111)."""
    if node is None:
        return
    if isinstance(node, lark.Token):
        yield str(node)
        return
    if node.data == "scheduled":
        before, after, number = _scheduled_parts(node)
        yield from _render_pieces(before if step <= rules.switch_step(number) else after, step, rules)
    elif node.data == "alternate":
        options = node.children
        yield from _render_pieces(options[(step - 1) % len(options)], step, rules)
    else:
        for child in node.children:
            yield from _render_pieces(child, step, rules)


def _schedule_one(prompt: str, rules: _StepRules) -> list[tuple[int, str]]:
    try:
        tree = _SCHEDULE_PARSER.parse(prompt)
    except lark.exceptions.LarkError:
        return [(rules.steps, prompt)]  # not valid editing syntax: the whole text, for every step
    return [(step, "".join(_render_pieces(tree, step, rules)))
            for step in _collect_schedule_points(tree, rules)]


def get_learned_conditioning_prompt_schedules(
    prompts: list[str],
    base_steps: int,
    hires_steps: int | None = None,
    use_old_scheduling: bool = False,
) -> list[list[tuple[int, str]]]:
    """For each prompt, the (end_at_step, text) pairs of its prompt-editing schedule.

    `[from:to:when]`: `from` while step <= when, then `to`. `when` with a "." is a fraction of the
    steps, an integer is a step. Given `hires_steps`, the schedule is the hires pass's: fractions in
    (1, 2] and integers above `base_steps` address it. `[a|b]` alternates every step.
    """
    rules = _StepRules(base_steps, hires_steps, use_old_scheduling)
    by_prompt: dict[str, list[tuple[int, str]]] = {}
    for prompt in prompts:
        if prompt not in by_prompt:
            by_prompt[prompt] = _schedule_one(prompt, rules)
    return [list(by_prompt[prompt]) for prompt in prompts]


# --------------------------------------------------------------------------------------------------
# attention / emphasis
# --------------------------------------------------------------------------------------------------
def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split text into (text, weight) runs: `(x)` x1.1, `[x]` /1.1, `(x:w)` xw, nesting multiplies,
    `\\(` etc. are literal, brackets left open apply to the rest of the text, stray closers are text.
    `BREAK` becomes ("BREAK", -1.0). Equal neighbouring weights are merged; "" -> [("", 1.0)]."""
    runs: list[list] = []           # [text, weight]; mutable while brackets close
    open_round: list[int] = []      # index into runs where each open bracket started
    open_square: list[int] = []

    def scale_from(start: int, multiplier: float) -> None:
        for run in runs[start:]:
            run[1] *= multiplier

    for match in _ATTENTION_LEXEME.finditer(text):
        lexeme, explicit_weight = match.group(0), match.group(1)
        if lexeme.startswith("\\"):
            runs.append([lexeme[1:], 1.0])
        elif lexeme == "(":
            open_round.append(len(runs))
        elif lexeme == "[":
            open_square.append(len(runs))
        elif explicit_weight is not None and open_round:
            scale_from(open_round.pop(), float(explicit_weight))
        elif lexeme == ")" and open_round:
            scale_from(open_round.pop(), ROUND_BRACKET_MULTIPLIER)
        elif lexeme == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_BRACKET_MULTIPLIER)
        else:
            for index, piece in enumerate(_BREAK.split(lexeme)):
                if index > 0:
                    runs.append(list(BREAK_MARKER))
                runs.append([piece, 1.0])

    # unclosed brackets extend to the end of the text
    for start in open_round:
        scale_from(start, ROUND_BRACKET_MULTIPLIER)
    for start in open_square:
        scale_from(start, SQUARE_BRACKET_MULTIPLIER)

    if not runs:
        return [("", 1.0)]
    merged: list[list] = [runs[0]]
    for run in runs[1:]:
        if run[1] == merged[-1][1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [(run_text, weight) for run_text, weight in merged]
