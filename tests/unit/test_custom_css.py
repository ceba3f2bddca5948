"""The custom CSS allowlist: plain rules pass unchanged; anything that could load, run or escape is refused with a
message that says what to remove."""

from __future__ import annotations

import pytest

from idp_mcp.core.custom_css import MAX_CSS_BYTES, check_custom_css
from idp_mcp.errors import ValidationFailed


@pytest.mark.parametrize(
    "css",
    [
        "",
        ".card { border-radius: 4px; box-shadow: none; }",
        "h1, .muted { color: #333; font-family: Inter, system-ui, sans-serif; }",
        "button.primary:hover { background: color-mix(in srgb, var(--primary) 80%, black); }",
        ".card:not(.wide) > h1 { margin: calc(1rem + 2px) 0 !important; }",
        "input[type=email] { border-width: 2px }",
        ":root { --radius: 2px; }\n/* a comment */\n.card { background: linear-gradient(90deg, #fff, #eee); }",
    ],
)
def test_plain_rules_pass_unchanged(css: str) -> None:
    assert check_custom_css(css) == css.strip()


@pytest.mark.parametrize(
    ("css", "message"),
    [
        ("@import x;", "@import"),
        ("@IMPORT x;", "@import"),
        (".a { background: url(https://evil.example/x.png) }", "url("),
        (".a { background: URL (x) }", "url("),
        (".a { width: expression(alert(1)) }", "expression("),
        ("</style><script>alert(1)</script>", "</style"),
        (".a { x: javascript:alert(1) }", "javascript:"),
        (".a { behavior: x.htc }", "behavior"),
        (".a { -moz-binding: x }", "-moz-binding"),
        (".a { background: image-set(x 1x) }", "image-set("),
        ("@media (max-width: 1px) { .a { color: red } }", "at-rules"),
        ("@font-face { font-family: x }", "at-rules"),
        (".a { content: 'x' }", "strings"),
        ('.a { font-family: "Inter" }', "strings"),
        (".a { color: \\72 ed }", "backslash"),
        (".a { color: red } .b {", "plain rules"),
        (".a { .b { color: red } }", "plain rules"),
        ("color: red;", "plain rules"),
        (".a { color red }", "property: value"),
        (".a { background: attr(title) }", "attr()"),
        (".a::after { content: counter(x) }", "counter()"),
        (".a:hover(x) { color: red }", "parentheses"),
        (".a { color: red /* open", "comment"),
        (".a { color: red }\x00", "control characters"),
        ("&.a { color: red }", "nesting"),
        (".a { color: red } }", "plain rules"),
    ],
)
def test_anything_else_is_refused_with_a_reason(css: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_custom_css(css)
    assert message in refused.value.message
    assert refused.value.message.startswith("customCss")


def test_the_size_is_limited_in_bytes() -> None:
    rule = ".a { color: red; }\n"
    fits = rule * (MAX_CSS_BYTES // len(rule))
    assert check_custom_css(fits)
    with pytest.raises(ValidationFailed, match="at most 4096 bytes"):
        check_custom_css(fits + ".é { color: red; }" * 5)
