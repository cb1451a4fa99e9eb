"""A1111 prompt grammar: a1111-compat.md §6.1-§6.5 and the worked examples of §12.4 / §12.5."""
import pytest

from modules.engine.prompt_parser import (
    extract_extra_networks,
    get_learned_conditioning_prompt_schedules,
    parse_prompt_attention,
    split_composable,
    strip_prompt_comments,
)


def schedule(prompt, steps=10, hires_steps=None, use_old_scheduling=False):
    return get_learned_conditioning_prompt_schedules([prompt], steps, hires_steps, use_old_scheduling)[0]


# ---------------------------------------------------------------- §12.4 prompt editing
@pytest.mark.parametrize("prompt, expected", [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("a [b:c:0.5 ] d", [(5, "a b d"), (10, "a c d")]),
    ("[from::4] tail", [(4, "from tail"), (10, " tail")]),
])
def test_prompt_editing_examples(prompt, expected):
    assert schedule(prompt) == expected


def test_alternation_with_emphasis_alternates_every_step():
    assert schedule("[a|(b:1.1)]") == [(step, "a" if step % 2 else "(b:1.1)") for step in range(1, 11)]


def test_alternation_with_empty_option():
    assert [text for _, text in schedule("[fe|]male")] == ["female", "male"] * 5
    assert [text for _, text in schedule("[fe|||]male")][:5] == ["female", "male", "male", "male", "female"]


def test_switch_before_first_step_is_dropped_and_when_clamps_to_steps():
    assert schedule("[a:b:-1]") == [(10, "b")]
    assert schedule("[a:b:0.05]") == [(10, "b")]        # int(0.5) = 0 < 1: never a switch point
    assert schedule("[a:b:25]") == [(10, "a")]          # clamped to the last step


def test_hires_pass_schedule():
    # a decimal <= 1 addresses the first pass, so in the hires pass the edit already happened
    assert schedule("a [b:.5] c", 10, hires_steps=10) == [(10, "a b c")]
    # 1.x addresses the hires pass; an integer above the base steps is an offset into it
    assert schedule("a [b:1.5] c", 10, hires_steps=10) == [(5, "a  c"), (10, "a b c")]
    assert schedule("a [b:13] c", 10, hires_steps=20) == [(3, "a  c"), (20, "a b c")]


def test_old_scheduling_treats_values_from_one_as_absolute_steps():
    # new rules: "1.0" has a dot -> fraction 1.0 of 10 steps; old rules: >= 1 is an absolute step
    assert schedule("a [b:1.0] c") == [(10, "a  c")]
    assert schedule("a [b:1.0] c", use_old_scheduling=True) == [(1, "a  c"), (10, "a b c")]
    assert schedule("a [b:0.3] c", use_old_scheduling=True) == [(3, "a  c"), (10, "a b c")]
    # old rules ignore the hires offsets
    assert schedule("a [b:5] c", 10, hires_steps=20, use_old_scheduling=True) == [(5, "a  c"), (10, "a b c")]


def test_schedules_of_several_prompts_keep_order_and_duplicates():
    result = get_learned_conditioning_prompt_schedules(["x [y:2]", "plain", "x [y:2]"], 4)
    assert result == [[(2, "x "), (4, "x y")], [(4, "plain")], [(2, "x "), (4, "x y")]]


# ---------------------------------------------------------------- §12.5 attention
@pytest.mark.parametrize("text, expected", [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("", [("", 1.0)]),
    ("[less]", [("less", 1 / 1.1)]),
    ("(more:1.5) (spaced: 0.5 )", [("more", 1.5), (" ", 1.0), ("spaced", 0.5)]),
    ("stray) closer]", [("stray) closer]", 1.0)]),
    ("a \\\\ b", [("a \\ b", 1.0)]),
])
def test_attention_examples(text, expected):
    result = parse_prompt_attention(text)
    assert [run for run, _ in result] == [run for run, _ in expected]
    assert [weight for _, weight in result] == pytest.approx([weight for _, weight in expected])


def test_attention_nesting_multiplies():
    result = parse_prompt_attention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")
    assert [text for text, _ in result] == ["a ", "house", " ", "on", " a ", "hill", ", sun, ", "sky", "."]
    assert [weight for _, weight in result] == pytest.approx(
        [1.0, 1.573, 1.1, 1.0, 1.1, 0.55, 1.1, 1.4641, 1.1])
    assert parse_prompt_attention("((a))") == [("a", pytest.approx(1.21))]


def test_break_splits_and_eats_whitespace():
    assert parse_prompt_attention("a BREAK b") == [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]
    # only uppercase, word-bounded BREAK
    assert parse_prompt_attention("a break b BREAKING") == [("a break b BREAKING", 1.0)]


# ---------------------------------------------------------------- §6.4 AND
def test_split_composable_weights():
    assert split_composable("a cat AND a dog:0.5") == [("a cat", 1.0), (" a dog", 0.5)]
    assert split_composable("a AND b : -1.25 AND c:.5") == [("a", 1.0), (" b", -1.25), (" c", 0.5)]
    assert split_composable("(a:1.2) and b") == [("(a:1.2) and b", 1.0)]   # lowercase and, weight in parens
    assert split_composable("ANDROID") == [("ANDROID", 1.0)]


# ---------------------------------------------------------------- §6.1 comments, extra networks
def test_strip_comments():
    assert strip_prompt_comments("a cat\n# hidden line\nblue sky") == "a cat\nblue sky"
    assert strip_prompt_comments("# first\nkept") == "\nkept"
    assert strip_prompt_comments("kept # trailing note") == "kept \n"
    assert strip_prompt_comments("no comment") == "no comment"


def test_extract_extra_networks():
    text, networks = extract_extra_networks("a cat <lora:detail:0.8>, <hypernet:anime:1> <lora:b:1:0.5> x")
    assert text == "a cat ,   x"
    assert networks == {"lora": [["detail", "0.8"], ["b", "1", "0.5"]], "hypernet": [["anime", "1"]]}
    assert extract_extra_networks("no tags <not a tag>") == ("no tags <not a tag>", {})
