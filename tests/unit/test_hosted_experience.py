"""The branded stylesheet of a tenant's hosted pages: colours as custom properties with readable ink, then the
tenant's custom CSS."""

from __future__ import annotations

from idp_mcp.core.sign_in_experience import Branding, merge_branding
from idp_mcp.web.hosted_experience import branding_stylesheet, ink_for


def test_the_stylesheet_sets_readable_ink_and_appends_the_custom_css() -> None:
    assert ink_for("#ffff00") == "#1b1b1f" and ink_for("#5d34f2") == "#ffffff" and ink_for("#000") == "#ffffff"
    css = branding_stylesheet(merge_branding(Branding(), {"primaryColor": "#123456", "customCss": ".a { color: red }"}))
    assert css.startswith(":root { --primary: #123456; --primary-ink: #ffffff; }")
    assert "@media (prefers-color-scheme: dark) { :root:not(.light) { --primary: #123456;" in css
    default = branding_stylesheet(Branding())
    assert ":root { --primary: #5d34f2;" in default and ":root.dark { --primary: #8f74ff;" in default
    dark = branding_stylesheet(merge_branding(Branding(), {"primaryColor": "#123456", "darkPrimaryColor": "#abcdef"}))
    assert ":root.dark { --primary: #abcdef; --primary-ink: #1b1b1f; }" in dark
    assert css.endswith(".a { color: red }\n")
