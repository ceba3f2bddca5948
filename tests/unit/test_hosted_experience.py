"""The branded stylesheet of a tenant's hosted pages: colours as custom properties (their accessible variants) with
readable ink, then the tenant's custom CSS."""

from __future__ import annotations

from idp_mcp.core.sign_in_experience import Branding, merge_branding
from idp_mcp.web.hosted_experience import branding_stylesheet


def test_the_stylesheet_sets_readable_ink_and_appends_the_custom_css() -> None:
    css = branding_stylesheet(merge_branding(Branding(), {"primaryColor": "#123456", "customCss": ".a { color: red }"}))
    assert css.startswith(":root { --primary: #123456; --primary-ink: #ffffff; --primary-text: #123456; }")
    # #123456 is too dark to read on the dark page: its text variant there is lighter; its buttons stay.
    assert "@media (prefers-color-scheme: dark) { :root:not(.light) { --primary: #123456;" in css
    assert ":root.dark { --primary: #123456; --primary-ink: #ffffff; --primary-text: #3887d5; }" in css
    default = branding_stylesheet(Branding())
    assert ":root { --primary: #5d34f2; --primary-ink: #ffffff; --primary-text: #5d34f2; }" in default
    assert ":root.dark { --primary: #8f74ff; --primary-ink: #1b1b1f; --primary-text: #8f74ff; }" in default
    dark = branding_stylesheet(merge_branding(Branding(), {"primaryColor": "#123456", "darkPrimaryColor": "#abcdef"}))
    assert ":root.dark { --primary: #abcdef; --primary-ink: #1b1b1f; --primary-text: #abcdef; }" in dark
    assert css.endswith(".a { color: red }\n")
