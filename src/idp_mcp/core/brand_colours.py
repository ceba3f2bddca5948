"""Accessible variants of a tenant's brand colours: WCAG 2.x contrast maths, and the colours the hosted pages use.

The tenant's chosen colours are kept as given; the hosted pages use, for each, the nearest variant that reaches
WCAG AA (4.5:1) where it is read: as text and links on the page's light or dark background, and behind the white or
near-black text of primary buttons. A colour that already passes is used unchanged. Pure functions, no I/O.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Mode = Literal["light", "dark"]
AA_TEXT = 4.5  # WCAG 2.x success criterion 1.4.3, normal-size text
WHITE = "#ffffff"
NEAR_BLACK = "#1b1b1f"  # the pages' ink (--ink in web/static/app.css)
# The backgrounds primary-coloured text sits on: the page (--bg) and the card (--card) of web/static/app.css, per mode.
# A unit test checks they match the stylesheet.
BACKGROUNDS: dict[Mode, tuple[str, ...]] = {"light": ("#f4f4f7", "#ffffff"), "dark": ("#121216", "#1c1c22")}


def rgb(hex_color: str) -> tuple[int, int, int]:
    """The 0-255 channels of ``#rgb`` or ``#rrggbb``."""
    digits = hex_color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(char * 2 for char in digits)
    if len(digits) != 6:
        raise ValueError(f"not a #rgb or #rrggbb colour: {hex_color!r}")
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def hex_of(channels: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{max(0, min(255, c)):02x}" for c in channels)


def relative_luminance(hex_color: str) -> float:
    """WCAG 2.x relative luminance (sRGB linearised; 0 for black, 1 for white)."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb(hex_color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: str, b: str) -> float:
    """WCAG 2.x contrast ratio of two colours, from 1 (same) to 21 (black on white); symmetric."""
    high, low = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def min_contrast(color: str, backgrounds: Sequence[str]) -> tuple[float, str]:
    """The lowest ratio of ``color`` against any of ``backgrounds``, and that background."""
    return min((contrast_ratio(color, background), background) for background in backgrounds)


def ink_for(background: str) -> str:
    """White or near-black, whichever reads better on ``background``."""
    return WHITE if contrast_ratio(WHITE, background) >= contrast_ratio(NEAR_BLACK, background) else NEAR_BLACK


def _with_lightness(hex_color: str, lightness: float) -> str:
    r, g, b = rgb(hex_color)
    hue, _, saturation = colorsys.rgb_to_hls(r / 255, g / 255, b / 255)
    channels = colorsys.hls_to_rgb(hue, lightness, saturation)
    return hex_of((round(channels[0] * 255), round(channels[1] * 255), round(channels[2] * 255)))


def shift_until(hex_color: str, passes: Callable[[str], bool], direction: Literal["darken", "lighten"]) -> str:
    """The variant of ``hex_color`` with the same hue and saturation and the lightness closest to its own that
    ``passes``: darker or lighter as told. Black and white end each search, so a check any of them meets is met."""
    if passes(hex_color):
        return hex_color
    r, g, b = rgb(hex_color)
    start = colorsys.rgb_to_hls(r / 255, g / 255, b / 255)[1]
    # Luminance grows with HLS lightness at a fixed hue and saturation, so a bisection finds the boundary.
    near, far = start, (0.0 if direction == "darken" else 1.0)
    for _ in range(40):
        middle = (near + far) / 2
        if passes(_with_lightness(hex_color, middle)):
            far = middle
        else:
            near = middle
    candidate = _with_lightness(hex_color, far)
    step = -1 / 512 if direction == "darken" else 1 / 512
    while not passes(candidate):  # rounding to 8-bit channels can land a hair short of the boundary
        far = min(1.0, max(0.0, far + step))
        candidate = _with_lightness(hex_color, far)
    return candidate


def readable_text(hex_color: str, mode: Mode) -> str:
    """``hex_color`` as text on the ``mode`` page: itself if it reaches 4.5:1 on every background of that mode, else
    the nearest darker (light mode) or lighter (dark mode) variant that does."""
    backgrounds = BACKGROUNDS[mode]
    return shift_until(
        hex_color,
        lambda c: min_contrast(c, backgrounds)[0] >= AA_TEXT,
        "darken" if mode == "light" else "lighten",
    )


def readable_button(hex_color: str) -> tuple[str, str]:
    """The background and ink of a primary button in ``hex_color``: itself with white or near-black, whichever
    reads better, if that reaches 4.5:1; else the nearer of a darker variant under white ink and a lighter one under
    near-black ink."""
    if contrast_ratio(ink_for(hex_color), hex_color) >= AA_TEXT:
        return hex_color, ink_for(hex_color)
    darker = shift_until(hex_color, lambda c: contrast_ratio(WHITE, c) >= AA_TEXT, "darken")
    lighter = shift_until(hex_color, lambda c: contrast_ratio(NEAR_BLACK, c) >= AA_TEXT, "lighten")
    given = relative_luminance(hex_color)
    if abs(relative_luminance(darker) - given) <= abs(relative_luminance(lighter) - given):
        return darker, WHITE
    return lighter, NEAR_BLACK


@dataclass(frozen=True)
class Adjustment:
    """A colour the pages show differently from how it was given, and why it reads now."""

    field: str  # primaryColor or darkPrimaryColor
    mode: Mode
    use: Literal["text", "button"]  # links and text on the page, or the background of a button's text
    given: str
    used: str
    text: str  # the foreground of the pair measured
    background: str
    ratio: float  # of text on background, rounded down to two decimals so it never overstates

    def document(self) -> dict[str, object]:
        return {
            "field": self.field, "mode": self.mode, "use": self.use, "given": self.given, "used": self.used,
            "text": self.text, "background": self.background, "ratio": self.ratio,
        }  # fmt: skip


@dataclass(frozen=True)
class Palette:
    """The colours of one mode: button background and its ink, and primary-coloured text."""

    button: str
    ink: str
    text: str


@dataclass(frozen=True)
class BrandColours:
    light: Palette
    dark: Palette
    adjusted: tuple[Adjustment, ...]  # for the modes the page shows


def _floor2(ratio: float) -> float:
    return int(ratio * 100) / 100


def _palette(field: str, given: str, mode: Mode) -> tuple[Palette, list[Adjustment]]:
    button, ink = readable_button(given)
    text = readable_text(given, mode)
    adjusted: list[Adjustment] = []
    if text != given:
        ratio, background = min_contrast(text, BACKGROUNDS[mode])
        adjusted.append(Adjustment(field, mode, "text", given, text, text, background, _floor2(ratio)))
    if button != given:
        ratio = contrast_ratio(ink, button)
        adjusted.append(Adjustment(field, mode, "button", given, button, ink, button, _floor2(ratio)))
    return Palette(button, ink, text), adjusted


def brand_colours(
    primary: str, dark_primary: str, *, dark_primary_field: str, dark_mode: Literal["on", "off", "auto"]
) -> BrandColours:
    """The accessible palettes for light and dark mode, and what was adjusted in the modes ``dark_mode`` shows.

    ``dark_primary_field`` names the field the dark colour came from (darkPrimaryColor, or primaryColor when no dark
    colour is set), so the report points at what to change."""
    light, light_adjusted = _palette("primaryColor", primary, "light")
    dark, dark_adjusted = _palette(dark_primary_field, dark_primary, "dark")
    adjusted = (light_adjusted if dark_mode != "on" else []) + (dark_adjusted if dark_mode != "off" else [])
    return BrandColours(light, dark, tuple(adjusted))
