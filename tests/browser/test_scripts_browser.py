"""Built-in scripts in the browser, as a person uses them: X/Y/Z plot chosen from the Script
dropdown, axes set with the type dropdowns, the values typed or picked, a labelled grid back."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import choose_option, fill_small_generation, wait_for_gallery_images

XYZ = "script_txt2img_xyz_plot"


def pick(page, elem_id: str, *options: str) -> None:
    """Choose options of a multiselect dropdown."""
    for option in options:
        page.locator(f"#{elem_id} input").click()
        page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")
    for option in options:
        expect(page.locator(f"#{elem_id}")).to_contain_text(option)


def test_xyz_plot_draws_a_labelled_grid_of_steps_by_sampler(page):
    fill_small_generation(page, "txt2img", "a yellow boat", steps=2, seed=11)
    choose_option(page, "txt2img_script_list", "X/Y/Z plot")
    choose_option(page, f"{XYZ}_x_type", "Steps")
    page.locator(f"#{XYZ}_x_values textarea").fill("1, 2")
    choose_option(page, f"{XYZ}_y_type", "Sampler")
    # an axis with choices takes its values from a dropdown instead of the text box
    expect(page.locator(f"#{XYZ}_y_values")).to_be_hidden()
    pick(page, f"{XYZ}_y_values_dropdown", "Euler", "Euler a")
    page.locator(f"#{XYZ}_include_lone_images input").check()

    page.locator("#txt2img_generate").click()
    sizes = wait_for_gallery_images(page, "txt2img", count=5)
    info = page.locator("#html_info_txt2img").inner_text()
    assert "X Type: Steps" in info, info
    assert 'X Values: "1, 2"' in info and "Y Type: Sampler" in info
    assert 'Y Values: "Euler,Euler a"' in info
    grid, cells = sizes[0], sizes[1:]
    assert cells == [(64, 64)] * 4
    assert grid[0] > 2 * 64 and grid[1] > 2 * 64       # 2 x 2 cells and the legends
