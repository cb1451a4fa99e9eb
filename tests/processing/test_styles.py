"""styles.csv reading/writing and applying styles to prompts (§6.2)."""
from modules.processing.styles import (PromptStyle, StyleDatabase, apply_negative_styles_to_prompt,
                                       apply_styles_to_prompt, extract_styles_from_prompt)

CSV = ('name,prompt,negative_prompt\n'
       '"Anime","{prompt}, anime style, ""cel"" shading","photo, 3d"\n'
       'Sharp,"sharp focus, 8k",\n'
       ',"nameless rows are skipped",\n')


def test_reads_a1111_csv_with_quotes_and_bom(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text(CSV, encoding="utf-8-sig")
    db = StyleDatabase([path])
    assert db.names() == ["Anime", "Sharp"]
    assert db.get("Anime").prompt == '{prompt}, anime style, "cel" shading'
    assert db.get("Anime").negative_prompt == "photo, 3d"
    assert db.get("Sharp").negative_prompt == "" and db.get("Sharp").path == path


def test_apply_with_placeholder_and_join():
    anime = PromptStyle("Anime", "{prompt}, anime style", "photo")
    sharp = PromptStyle("Sharp", "sharp focus", "")
    assert apply_styles_to_prompt("a cat", [anime]) == "a cat, anime style"
    assert apply_styles_to_prompt("a cat", [sharp, anime]) == "a cat, sharp focus, anime style"
    assert apply_styles_to_prompt("", [sharp]) == "sharp focus"
    assert apply_styles_to_prompt("  a cat ", [sharp]) == "a cat, sharp focus"
    assert apply_negative_styles_to_prompt("blurry", [anime, sharp]) == "blurry, photo"
    assert apply_negative_styles_to_prompt("", [anime]) == "photo"


def test_extract_undoes_apply():
    anime = PromptStyle("Anime", "masterpiece, {prompt}, anime style", "photo")
    sharp = PromptStyle("Sharp", "sharp focus", "lowres")
    prompt = apply_styles_to_prompt("a cat", [sharp, anime])
    negative = apply_negative_styles_to_prompt("bad", [sharp, anime])
    assert prompt == "masterpiece, a cat, sharp focus, anime style"
    found, rest, rest_neg = extract_styles_from_prompt(prompt, negative, [anime, sharp])
    assert found == ["Sharp", "Anime"] and rest == "a cat" and rest_neg == "bad"
    assert extract_styles_from_prompt("a dog", "", [anime, sharp]) == ([], "a dog", "")


def test_database_methods_take_names_and_skip_unknown(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text(CSV, encoding="utf-8")
    db = StyleDatabase([path])
    assert db.apply_styles_to_prompt("girl", ["Sharp", "Missing"]) == "girl, sharp focus, 8k"
    assert db.apply_negative_styles_to_prompt("", ["Anime"]) == "photo, 3d"
    assert db.apply_styles_to_prompt("girl", None) == "girl"


def test_save_round_trip_and_keeps_each_file_s_styles(tmp_path):
    first, second = tmp_path / "styles.csv", tmp_path / "more" / "extra.csv"
    second.parent.mkdir()
    second.write_text("name,prompt,negative_prompt\nWatercolor,\"watercolor, soft\",ink\n")
    db = StyleDatabase([first, second])
    db.set_style(PromptStyle("New", 'a "quoted", {prompt}\nnext line', "neg"))
    db.set_style(PromptStyle("Watercolor", "watercolor v2", "ink"))
    db.save()
    assert not list(tmp_path.rglob("*.tmp"))
    again = StyleDatabase([first, second])
    assert again.get("New").prompt == 'a "quoted", {prompt}\nnext line'
    assert again.get("New").path == first
    assert again.get("Watercolor").path == second                  # stayed in its own file
    assert again.get("Watercolor").prompt == "watercolor v2"
    assert "Watercolor" not in first.read_text(encoding="utf-8-sig")
    assert first.read_text(encoding="utf-8-sig").startswith("name,prompt,negative_prompt\n")
    again.delete_style("New")
    again.save()
    assert StyleDatabase([first, second]).names() == ["Watercolor"]


def test_missing_file_gives_empty_database(tmp_path):
    db = StyleDatabase([tmp_path / "absent.csv"])
    assert db.names() == [] and db.apply_styles_to_prompt("x", ["Any"]) == "x"
