"""What every view of a guide agrees on: placeholders filled in one place, GitHub-style heading anchors, and the
sections search indexes (headings inside code blocks are code, not headings)."""

from __future__ import annotations

import pytest

from idp_mcp.guides import (
    PLACEHOLDERS,
    Guide,
    GuideLibrary,
    guide_link,
    parse_markdown,
    placeholders_in,
    render,
    slugify,
)


def _library(body: str, guide_id: str = "sample", title: str = "Sample guide") -> GuideLibrary:
    return GuideLibrary([Guide(guide_id, title, "A summary.", ("getTenantInfo",), body)])


# --- render -----------------------------------------------------------------------------------------------------


def test_render_fills_every_given_value_in_prose_and_code() -> None:
    text = 'Issuer {{ISSUER}}.\n```py\nCLIENT_ID = "{{CLIENT_ID}}"\nREDIRECT = "{{ REDIRECT_URI }}"\n```\n'
    values = {"ISSUER": "https://id.example.com/t/acme/oidc", "CLIENT_ID": "abc123", "REDIRECT_URI": "https://a/cb"}

    filled = render(text, values)

    assert filled == (
        'Issuer https://id.example.com/t/acme/oidc.\n```py\nCLIENT_ID = "abc123"\nREDIRECT = "https://a/cb"\n```\n'
    )


def test_render_shows_a_readable_placeholder_for_each_missing_value() -> None:
    filled = render("{{CLIENT_ID}} {{REDIRECT_URI}} {{POST_LOGOUT_REDIRECT_URI}} {{TENANT_ID}}", {"TENANT_ID": ""})

    assert filled == "<your client id> <your redirect URI> <your post-logout redirect URI> <your tenant id>"


def test_every_placeholder_has_a_readable_stand_in_and_none_is_for_a_secret() -> None:
    assert set(PLACEHOLDERS) == {
        "PUBLIC_URL", "TENANT_ID", "ISSUER", "DISCOVERY_URL", "CLIENT_ID", "REDIRECT_URI", "POST_LOGOUT_REDIRECT_URI",
        "API_IDENTIFIER",
    }  # fmt: skip
    assert all(stand_in.startswith("<") and stand_in.endswith(">") for stand_in in PLACEHOLDERS.values())
    assert render("{{CLIENT_SECRET}}", {"CLIENT_SECRET": "s3cret"}) == "{{CLIENT_SECRET}}"


def test_render_leaves_lower_case_template_braces_alone() -> None:
    text = "<p>{{ user.email }}</p> {{message}}"
    assert render(text, {"CLIENT_ID": "x"}) == text


def test_placeholders_in_lists_each_name_once_in_order() -> None:
    assert placeholders_in("{{ISSUER}} {{CLIENT_ID}} {{ ISSUER }} {{x}}") == ["ISSUER", "CLIENT_ID"]


# --- anchors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Install", "install"),
        ("1. Orient yourself", "1-orient-yourself"),
        ("Protect routes with Next.js middleware", "protect-routes-with-nextjs-middleware"),
        ("Step 2 — configure the client", "step-2--configure-the-client"),
        ("What's `offline_access`?", "whats-offline_access"),
        ("Réglages & sécurité", "réglages--sécurité"),
        ("  Trailing spaces  ", "trailing-spaces"),
    ],
)
def test_slugify_makes_github_style_anchors(heading: str, anchor: str) -> None:
    assert slugify(heading) == anchor


def test_headings_get_ids_from_their_text_and_repeats_are_numbered() -> None:
    tokens = parse_markdown("# Guide\n\n## Step `one`\n\n## Install\n\n### Install\n\n#### Install\n")
    ids = [token.attrGet("id") for token in tokens if token.type == "heading_open"]
    assert ids == ["guide", "step-one", "install", "install-1", "install-2"]


def test_heading_made_only_of_symbols_still_gets_an_id() -> None:
    tokens = parse_markdown("## !!!\n")
    assert tokens[0].attrGet("id") == "section"


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("other-guide.md", ("other-guide", "")),
        ("./other-guide.md#step-2", ("other-guide", "step-2")),
        ("https://example.com/x.md", None),
        ("#local", None),
        ("Other.md", None),
    ],
)
def test_guide_link_recognises_links_to_other_guides(href: str, expected: tuple[str, str] | None) -> None:
    assert guide_link(href) == expected


# --- sections ---------------------------------------------------------------------------------------------------


def test_guide_is_split_into_sections_at_headings_of_level_one_to_three() -> None:
    body = (
        "# Sample guide\n\nIntro.\n\n## Install\n\npip install x\n\n### On Windows\n\nUse py.\n\n"
        "#### A detail\n\nStays with Windows.\n\n## Run\n\nGo.\n"
    )
    sections = _library(body).sections("sample")

    assert [(s.level, s.heading, s.anchor) for s in sections] == [
        (1, "Sample guide", "sample-guide"),
        (2, "Install", "install"),
        (3, "On Windows", "on-windows"),
        (2, "Run", "run"),
    ]
    assert sections[0].text == "Intro."
    assert sections[2].text == "Use py.\n\n#### A detail\n\nStays with Windows."
    assert sections[3].text == "Go."


def test_comment_lines_in_code_blocks_are_not_headings() -> None:
    body = "## The app\n\n```python\n# file: app.py\nimport os\n## not a heading either\n```\n"
    sections = _library(body).sections("sample")

    assert [s.heading for s in sections] == ["The app"]
    assert "# file: app.py" in sections[0].text


def test_text_before_the_first_heading_is_a_section_named_after_the_guide() -> None:
    sections = _library("Some words first.\n\n## Then a heading\n\nMore.\n").sections("sample")

    assert [(s.level, s.heading, s.anchor, s.text) for s in sections] == [
        (0, "Sample guide", "", "Some words first."),
        (2, "Then a heading", "then-a-heading", "More."),
    ]


def test_setext_headings_are_sections_too() -> None:
    sections = _library("Title\n=====\n\nIntro.\n\nPart\n----\n\nText.\n").sections("sample")
    assert [(s.heading, s.anchor, s.text) for s in sections] == [
        ("Title", "title", "Intro."),
        ("Part", "part", "Text."),
    ]
