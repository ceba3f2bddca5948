"""The custom CSS a tenant may add to its hosted sign-in pages: plain rules only, nothing that loads or runs anything.

The check is an allowlist, not a filter: rules are ``selector { property: value; }`` with no at-rules, no strings,
no escapes, no comments that hide anything, and only functions that compute colours, sizes and gradients. What
passes cannot fetch a URL (no ``url(``, no ``image-set``, no strings), cannot run script (no ``expression(``,
``behavior:``, ``javascript:``) and cannot close a ``<style>`` element. It is served as its own stylesheet, so the
page's Content-Security-Policy (``style-src 'self'``) still holds.
"""

from __future__ import annotations

import re

from idp_mcp.errors import ValidationFailed

MAX_CSS_BYTES = 4096

# Named first so the message says exactly what to remove; the allowlist below refuses them anyway.
_FORBIDDEN = (
    ("@import", "@import is not allowed: the page cannot load other stylesheets"),
    ("url(", "url(...) is not allowed: set images with logoUrl, darkLogoUrl and faviconUrl instead"),
    ("expression(", "expression(...) is not allowed: CSS cannot run script here"),
    ("</style", "'</style' is not allowed"),
    ("javascript:", "'javascript:' is not allowed"),
    ("behavior:", "behavior: is not allowed: CSS cannot run script here"),
    ("-moz-binding", "-moz-binding is not allowed: CSS cannot run script here"),
    ("image-set(", "image-set(...) is not allowed: set images with logoUrl, darkLogoUrl and faviconUrl instead"),
)
_VALUE_FUNCTIONS = frozenset(
    {
        "rgb", "rgba", "hsl", "hsla", "hwb", "lab", "lch", "oklab", "oklch", "color-mix", "calc", "min", "max",
        "clamp", "var", "linear-gradient", "radial-gradient", "conic-gradient", "repeating-linear-gradient",
        "repeating-radial-gradient", "translate", "translatex", "translatey", "scale", "rotate", "cubic-bezier",
        "steps", "blur", "brightness", "contrast", "drop-shadow", "grayscale", "opacity", "saturate", "minmax",
        "repeat", "fit-content",
    }
)  # fmt: skip
_SELECTOR_FUNCTIONS = frozenset(
    {"not", "is", "where", "has", "nth-child", "nth-last-child", "nth-of-type", "nth-last-of-type", "lang", "dir"}
)
_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_SELECTOR_CHARS = re.compile(r"^[A-Za-z0-9\s.#:,>+~*\[\]=()_|^$-]+$")
_PROPERTY = re.compile(r"^(?:--[A-Za-z0-9_-]+|-?[A-Za-z][A-Za-z0-9-]*)$")
_VALUE_CHARS = re.compile(r"^[A-Za-z0-9\s#.,%()+*/!_-]+$")
_FUNCTION = re.compile(r"([A-Za-z-]+)\s*\(")
_PLAIN_RULES = "write plain rules such as `.card { border-radius: 4px; }`"


def check_custom_css(css: str) -> str:
    """``css`` with surrounding whitespace removed, or :class:`ValidationFailed` saying what to change."""
    size = len(css.encode())
    if size > MAX_CSS_BYTES:
        raise ValidationFailed(f"customCss is too long ({size} bytes): keep it to at most {MAX_CSS_BYTES} bytes.")
    compact = re.sub(r"\s+", "", css.lower())
    for needle, reason in _FORBIDDEN:
        if needle in compact:
            raise ValidationFailed(f"customCss: {reason}.")
    if "@" in css:
        raise ValidationFailed(f"customCss: at-rules (@media, @font-face, …) are not allowed; {_PLAIN_RULES}.")
    for char, what in (("\\", "backslash escapes"), ('"', "strings"), ("'", "strings"), ("<", "'<'"), ("&", "nesting")):
        if char in css:
            raise ValidationFailed(f"customCss: {what} are not allowed; {_PLAIN_RULES}.")
    if any(ord(char) < 32 and char not in "\t\n\r" for char in css):
        raise ValidationFailed("customCss: control characters are not allowed.")
    without_comments = re.sub(r"/\*.*?\*/", " ", css, flags=re.DOTALL)
    if "/*" in without_comments or "*/" in without_comments:
        raise ValidationFailed("customCss: a comment is not closed; close it with */ or remove it.")
    position = 0
    for match in _RULE.finditer(without_comments):
        if without_comments[position : match.start()].strip():
            break
        _check_selector(match.group(1).strip())
        for declaration in match.group(2).split(";"):
            if declaration.strip():
                _check_declaration(declaration.strip())
        position = match.end()
    if without_comments[position:].strip():
        raise ValidationFailed(
            f"customCss must be plain rules, each `selector {{ property: value; }}` without nesting; {_PLAIN_RULES}."
        )
    return css.strip()


def _check_selector(selector: str) -> None:
    if not _SELECTOR_CHARS.match(selector):
        raise ValidationFailed(f"customCss: the selector '{selector[:60]}' has characters that are not allowed.")
    functions = re.findall(r":{1,2}([A-Za-z-]+)\(", selector)
    if any(name.lower() not in _SELECTOR_FUNCTIONS for name in functions) or selector.count("(") != len(functions):
        raise ValidationFailed(
            f"customCss: the selector '{selector[:60]}' uses parentheses other than :not(), :is(), :where(), "
            ":has() or :nth-child()."
        )


def _check_declaration(declaration: str) -> None:
    name, colon, value = declaration.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _PROPERTY.match(name) or not value:
        raise ValidationFailed(f"customCss: '{declaration[:60]}' is not a `property: value` declaration.")
    if not _VALUE_CHARS.match(value):
        raise ValidationFailed(f"customCss: the value of {name} has characters that are not allowed.")
    functions = _FUNCTION.findall(value)
    unknown = sorted({function.lower() for function in functions} - _VALUE_FUNCTIONS)
    if unknown:
        raise ValidationFailed(
            f"customCss: the function {unknown[0]}() is not allowed in {name}; colours, calc(), var() and "
            "gradients are."
        )
    if value.count("(") != len(functions):
        raise ValidationFailed(f"customCss: the value of {name} has parentheses that do not follow a function name.")
