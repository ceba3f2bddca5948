"""WCAG 2.x contrast maths and the accessible variants of brand colours: a colour that reads is kept, one that does
not becomes the nearest variant that does, in light and dark mode, and the report says what changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from idp_mcp.core.brand_colours import (
    AA_TEXT,
    BACKGROUNDS,
    NEAR_BLACK,
    WHITE,
    brand_colours,
    contrast_ratio,
    ink_for,
    min_contrast,
    readable_button,
    readable_text,
    relative_luminance,
    rgb,
)

APP_CSS = Path(__file__).resolve().parents[2] / "src" / "idp_mcp" / "web" / "static" / "app.css"
SAMPLES = ["#ffff00", "#000080", "#777777", "#808080", "#ff5500", "#3a7bd5", "#00ff00", "#5d34f2", "#8f74ff", "#f0f",
           "#000000", "#ffffff", "#0ff", "#c0c0c0", "#404040", "#e4a11b", "#1a1a1a"]  # fmt: skip


@pytest.mark.parametrize(
    ("foreground", "background", "ratio"),
    [
        ("#777777", "#ffffff", 4.48),  # the classic near miss
        ("#767676", "#ffffff", 4.54),  # the lightest grey that passes on white
        ("#000000", "#ffffff", 21.0),
        ("#ffffff", "#ffffff", 1.0),
        ("#0000ff", "#ffffff", 8.59),
        ("#ff0000", "#ffffff", 4.0),
        ("#ffff00", "#ffffff", 1.07),
        ("#000080", "#121216", 1.17),
    ],
)
def test_contrast_ratio_matches_known_pairs(foreground: str, background: str, ratio: float) -> None:
    assert round(contrast_ratio(foreground, background), 2) == ratio
    assert contrast_ratio(background, foreground) == contrast_ratio(foreground, background)


def test_relative_luminance_and_parsing() -> None:
    assert relative_luminance("#000") == 0 and relative_luminance("#fff") == pytest.approx(1)
    assert relative_luminance("#808080") == pytest.approx(0.2158605)
    assert rgb("#abc") == (0xAA, 0xBB, 0xCC) and rgb("#5D34F2") == (0x5D, 0x34, 0xF2)
    with pytest.raises(ValueError):
        rgb("#12345")


def test_ink_is_white_or_near_black_by_contrast() -> None:
    assert ink_for("#ffff00") == NEAR_BLACK and ink_for("#5d34f2") == WHITE and ink_for("#000") == WHITE


def test_a_colour_that_reads_is_kept_as_it_is() -> None:
    assert readable_text("#5d34f2", "light") == "#5d34f2"
    assert readable_text("#8f74ff", "dark") == "#8f74ff"
    assert readable_text("#000080", "light") == "#000080" and readable_text("#ffff00", "dark") == "#ffff00"
    assert readable_button("#5d34f2") == ("#5d34f2", WHITE) and readable_button("#ffff00") == ("#ffff00", NEAR_BLACK)


@pytest.mark.parametrize("colour", SAMPLES)
def test_every_text_variant_passes_on_every_background_of_its_mode_and_is_the_nearest(colour: str) -> None:
    for mode, direction in (("light", -1), ("dark", 1)):
        used = readable_text(colour, mode)  # type: ignore[arg-type]
        assert min_contrast(used, BACKGROUNDS[mode])[0] >= AA_TEXT  # type: ignore[index]
        if used != colour:
            # Darker on light pages, lighter on dark ones, and only just past the threshold (nearest variant).
            assert (relative_luminance(used) - relative_luminance(colour)) * direction > 0
            assert min_contrast(used, BACKGROUNDS[mode])[0] < AA_TEXT + 0.2  # type: ignore[index]


@pytest.mark.parametrize("colour", SAMPLES)
def test_every_button_reads_with_its_ink(colour: str) -> None:
    background, ink = readable_button(colour)
    assert ink in (WHITE, NEAR_BLACK) and contrast_ratio(ink, background) >= AA_TEXT


def test_a_mid_tone_no_ink_reads_on_becomes_the_nearest_button_that_reads() -> None:
    # #808080: 3.95:1 under white, 3.52:1 under near-black: neither reaches 4.5:1.
    assert max(contrast_ratio(WHITE, "#808080"), contrast_ratio(NEAR_BLACK, "#808080")) < AA_TEXT
    background, ink = readable_button("#808080")
    assert background != "#808080" and contrast_ratio(ink, background) >= AA_TEXT


def test_yellow_on_the_light_page_is_darkened_for_text_and_kept_for_buttons() -> None:
    colours = brand_colours("#ffff00", "#ffff00", dark_primary_field="primaryColor", dark_mode="off")
    assert colours.light.button == "#ffff00" and colours.light.ink == NEAR_BLACK
    assert colours.light.text == "#747400"
    [adjusted] = colours.adjusted  # dark mode is off: only the light page is reported
    assert adjusted.document() == {
        "field": "primaryColor", "mode": "light", "use": "text", "given": "#ffff00", "used": "#747400",
        "text": "#747400", "background": "#f4f4f7", "ratio": 4.51,
    }  # fmt: skip


def test_navy_in_dark_mode_is_lightened_and_reported_against_the_dark_field() -> None:
    colours = brand_colours("#5d34f2", "#000080", dark_primary_field="darkPrimaryColor", dark_mode="on")
    assert colours.dark.text == "#7373ff" and colours.dark.button == "#000080" and colours.dark.ink == WHITE
    assert [(a.field, a.mode, a.use, a.given, a.used) for a in colours.adjusted] == [
        ("darkPrimaryColor", "dark", "text", "#000080", "#7373ff")
    ]
    assert colours.adjusted[0].background == "#1c1c22" and colours.adjusted[0].ratio >= AA_TEXT


def test_auto_mode_reports_both_modes_and_passing_colours_report_nothing() -> None:
    auto = brand_colours("#777777", "#777777", dark_primary_field="primaryColor", dark_mode="auto")
    assert {(a.mode, a.use) for a in auto.adjusted} == {("light", "text"), ("dark", "text"), ("light", "button"),
                                                         ("dark", "button")}  # fmt: skip
    assert brand_colours("#5d34f2", "#8f74ff", dark_primary_field="primaryColor", dark_mode="auto").adjusted == ()


def test_the_backgrounds_are_the_stylesheets() -> None:
    """The maths measures against the colours app.css really paints: a change there must be made here too."""
    css = APP_CSS.read_text()
    light = re.search(r"--bg: (#\w+); --card: (#\w+);", css)
    dark = re.search(r"--bg: (#\w+); --card: (#\w+);", css[css.index("prefers-color-scheme: dark") :])
    assert light and dark
    assert [rgb(c) for c in BACKGROUNDS["light"]] == [rgb(c) for c in light.groups()]
    assert [rgb(c) for c in BACKGROUNDS["dark"]] == [rgb(c) for c in dark.groups()]
    assert f"--ink: {NEAR_BLACK};" in css
