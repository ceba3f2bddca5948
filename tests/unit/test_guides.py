"""Guides: the shipped instructions/ folder is valid, and every kind of malformed guide is refused (front matter,
unknown tools, unknown placeholders, links to missing guides or headings)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from idp_mcp.guides import GuideError, GuideLibrary, default_directory, parse_guide
from idp_mcp.mcp_server.tools import all_tools

KNOWN_TOOLS = {"getTenantInfo", "listInstructions"}


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _guide(
    guide_id: str, *, tools: str = "[getTenantInfo]", body: str = "# Title\n\nSome steps.\n", extra: str = ""
) -> str:
    return f"---\nid: {guide_id}\ntitle: A title\nsummary: A summary.\ntools: {tools}\n{extra}---\n{body}"


# --- the real guides -----------------------------------------------------------------------------------------


def test_shipped_guides_load_against_the_real_tool_names() -> None:
    tool_names = [tool.name for tool in all_tools()]
    library = GuideLibrary.load(default_directory(), tool_names)
    guides = library.all()
    assert guides, "the instructions/ folder has no guides"
    for guide in guides:
        assert guide.title and guide.summary and guide.body.strip()
        assert set(guide.tools) <= set(tool_names)
    assert library.get("using-this-server") is not None


def test_shipped_guides_are_listed_in_id_order() -> None:
    library = GuideLibrary.load(default_directory(), [tool.name for tool in all_tools()])
    ids = [guide.id for guide in library.all()]
    assert ids == sorted(ids)


# --- a valid guide -------------------------------------------------------------------------------------------


def test_valid_guide_is_parsed_into_its_fields(tmp_path: Path) -> None:
    path = _write(tmp_path, "rename-tenant.md", _guide("rename-tenant", tools="[getTenantInfo, listInstructions]"))
    guide = parse_guide(path)
    assert guide.id == "rename-tenant"
    assert guide.title == "A title"
    assert guide.summary == "A summary."
    assert guide.tools == ("getTenantInfo", "listInstructions")
    assert guide.body == "# Title\n\nSome steps.\n"


def test_guide_with_windows_line_endings_is_parsed(tmp_path: Path) -> None:
    path = _write(tmp_path, "crlf.md", "")
    path.write_bytes(_guide("crlf").replace("\n", "\r\n").encode())
    assert parse_guide(path).id == "crlf"


def test_links_between_existing_guides_are_accepted(tmp_path: Path) -> None:
    _write(tmp_path, "first.md", _guide("first", body="# First\n\nSee [the second](second.md#part-two).\n"))
    _write(tmp_path, "second.md", _guide("second", body="Back to [the first](./first.md).\n\n## Part two\n"))
    library = GuideLibrary.load(tmp_path, KNOWN_TOOLS)
    assert [guide.id for guide in library.all()] == ["first", "second"]
    assert library.get("missing") is None


# --- malformed guides ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "text", "message"),
    [
        pytest.param("no-front-matter.md", "# Just Markdown\n", "must start with YAML front matter", id="missing"),
        pytest.param(
            "unclosed.md", "---\nid: unclosed\ntitle: T\n# never closed\n", "must start with YAML front matter",
            id="unclosed-front-matter",
        ),
        pytest.param("bad-yaml.md", "---\nid: [unclosed\ntitle: T\n---\nbody\n", "not valid YAML", id="invalid-yaml"),
        pytest.param("a-list.md", "---\n- id\n- title\n---\nbody\n", "must be a mapping", id="yaml-not-a-mapping"),
        pytest.param(
            "no-id.md", "---\ntitle: T\nsummary: S\ntools: []\n---\nbody\n", "needs a non-empty 'id'", id="missing-id"
        ),
        pytest.param(
            "no-title.md", "---\nid: no-title\nsummary: S\ntools: []\n---\nbody\n", "needs a non-empty 'title'",
            id="missing-title",
        ),
        pytest.param(
            "no-summary.md", "---\nid: no-summary\ntitle: T\ntools: []\n---\nbody\n", "needs a non-empty 'summary'",
            id="missing-summary",
        ),
        pytest.param(
            "blank-title.md", "---\nid: blank-title\ntitle: '  '\nsummary: S\ntools: []\n---\nbody\n",
            "needs a non-empty 'title'", id="blank-title",
        ),
        pytest.param(
            "no-tools.md", "---\nid: no-tools\ntitle: T\nsummary: S\n---\nbody\n", "'tools', a list of tool names",
            id="missing-tools",
        ),
        pytest.param(
            "tools-string.md", _guide("tools-string", tools="getTenantInfo"), "'tools', a list of tool names",
            id="tools-not-a-list",
        ),
        pytest.param(
            "tools-numbers.md", _guide("tools-numbers", tools="[1, 2]"), "'tools', a list of tool names",
            id="tools-not-strings",
        ),
        pytest.param(
            "file-name.md", _guide("other-name"), "equal the file name ('file-name')", id="id-differs-from-file-name"
        ),
        pytest.param("Bad_Guide.md", _guide("Bad_Guide"), "'id' must be kebab-case", id="id-not-kebab-case"),
        pytest.param("trailing-.md", _guide("trailing-"), "'id' must be kebab-case", id="id-trailing-hyphen"),
    ],
)  # fmt: skip
def test_malformed_guide_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, file_name: str, text: str, message: str
) -> None:
    path = _write(tmp_path, file_name, text)
    with pytest.raises(GuideError, match=re.escape(message)) as excinfo:
        parse_guide(path)
    assert str(excinfo.value).startswith(f"{file_name}:")
    with pytest.raises(GuideError, match=re.escape(message)):
        GuideLibrary.load(tmp_path, KNOWN_TOOLS)


def test_guide_naming_an_unknown_tool_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "uses-ghost.md", _guide("uses-ghost", tools="[getTenantInfo, deleteEverything]"))
    with pytest.raises(GuideError, match=r"uses-ghost\.md: unknown tool\(s\) deleteEverything"):
        GuideLibrary.load(tmp_path, KNOWN_TOOLS)


def test_guide_with_a_broken_relative_link_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "linker.md", _guide("linker", body="Read [x](missing-guide.md) first.\n"))
    with pytest.raises(GuideError, match=r"linker\.md: broken link to 'missing-guide\.md'"):
        GuideLibrary.load(tmp_path, KNOWN_TOOLS)


def test_broken_link_with_an_anchor_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "linker.md", _guide("linker", body="Read [x](missing-guide.md#step-2) first.\n"))
    with pytest.raises(GuideError, match=r"broken link to 'missing-guide\.md'"):
        GuideLibrary.load(tmp_path, KNOWN_TOOLS)


def test_missing_guides_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GuideError, match="does not exist"):
        GuideLibrary.load(tmp_path / "nowhere", KNOWN_TOOLS)


def test_empty_guides_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GuideError, match="no guides in"):
        GuideLibrary.load(tmp_path, KNOWN_TOOLS)


# --- placeholders and links to headings ------------------------------------------------------------------------


def test_known_placeholders_are_accepted_in_prose_and_code(tmp_path: Path) -> None:
    body = (
        '# Setup\n\nIssuer: {{ISSUER}} ({{ TENANT_ID }}).\n\n```python\nCLIENT_ID = "{{CLIENT_ID}}"\n'
        'REDIRECT = "{{REDIRECT_URI}}"\nLOGOUT = "{{POST_LOGOUT_REDIRECT_URI}}"\n'
        'DISCOVERY = "{{DISCOVERY_URL}}"\nBASE = "{{PUBLIC_URL}}"\n```\n'
    )
    _write(tmp_path, "placeholders.md", _guide("placeholders", body=body))
    assert GuideLibrary.load(tmp_path, KNOWN_TOOLS).get("placeholders") is not None


def test_lower_case_template_braces_are_not_placeholders(tmp_path: Path) -> None:
    _write(tmp_path, "vue.md", _guide("vue", body="# Vue\n\n```html\n<p>{{ user.email }} {{ message }}</p>\n```\n"))
    assert GuideLibrary.load(tmp_path, KNOWN_TOOLS).get("vue") is not None


@pytest.mark.parametrize("placeholder", ["{{CLIENT_SECRET}}", "{{ CLIENTID }}", "{{API_KEY}}"])
def test_guide_with_an_unknown_placeholder_is_refused(tmp_path: Path, placeholder: str) -> None:
    _write(tmp_path, "typo.md", _guide("typo", body=f'# Typo\n\n```js\nconst x = "{placeholder}";\n```\n'))
    with pytest.raises(GuideError, match=r"typo\.md: unknown placeholder\(s\) \{\{[A-Z_]+\}\}; use one of") as excinfo:
        GuideLibrary.load(tmp_path, KNOWN_TOOLS)
    assert "{{CLIENT_ID}}" in str(excinfo.value)


def test_placeholder_in_a_heading_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "moving.md", _guide("moving", body="# Guide\n\n## Configure {{CLIENT_ID}}\n\nText.\n"))
    with pytest.raises(GuideError, match=r"moving\.md: heading 'Configure \{\{CLIENT_ID\}\}' has a placeholder"):
        GuideLibrary.load(tmp_path, KNOWN_TOOLS)


def test_link_to_a_missing_heading_of_another_guide_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "first.md", _guide("first", body="# First\n\nSee [step two](second.md#step-2).\n"))
    _write(tmp_path, "second.md", _guide("second", body="# Second\n\n## Step 1\n\n## Step 3\n"))
    with pytest.raises(GuideError, match=r"first\.md: link 'second\.md#step-2' points at no heading of second\.md"):
        GuideLibrary.load(tmp_path, KNOWN_TOOLS)


def test_link_to_a_missing_heading_of_the_same_guide_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "self.md", _guide("self", body="# Self\n\n## Install\n\nSee [below](#configure).\n"))
    with pytest.raises(GuideError, match=r"self\.md: link '#configure' points at no heading of self\.md"):
        GuideLibrary.load(tmp_path, KNOWN_TOOLS)


def test_links_to_existing_headings_are_accepted_including_repeated_ones(tmp_path: Path) -> None:
    body = "# Self\n\n## Install\n\nSee [the second install](#install-1) and [top](#self).\n\n## Install\n"
    _write(tmp_path, "self.md", _guide("self", body=body))
    library = GuideLibrary.load(tmp_path, KNOWN_TOOLS)
    assert library.anchors("self") == {"self", "install", "install-1"}


def test_relative_markdown_link_that_is_no_guide_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "readme-link.md", _guide("readme-link", body="# Links\n\nSee [the readme](../README.md).\n"))
    with pytest.raises(GuideError, match=r"readme-link\.md: broken link to '\.\./README\.md'"):
        GuideLibrary.load(tmp_path, KNOWN_TOOLS)


def test_links_in_code_and_to_other_sites_are_not_checked(tmp_path: Path) -> None:
    body = (
        "# Links\n\n[RFC 6749](https://www.rfc-editor.org/rfc/rfc6749#section-1.5), [home](/docs)\n\n"
        "```md\nSee [x](missing-guide.md#nowhere).\n```\n"
    )
    _write(tmp_path, "links.md", _guide("links", body=body))
    assert GuideLibrary.load(tmp_path, KNOWN_TOOLS).get("links") is not None
