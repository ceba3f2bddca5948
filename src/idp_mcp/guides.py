"""Guides: ``instructions/*.md`` with YAML front matter (id, title, summary, tools), validated at start-up.

This module also owns what every view of a guide must agree on: the Markdown parser (CommonMark with raw HTML
disabled), the heading anchors (GitHub-style slugs), the sections a guide is split into for search, and the
placeholders (``{{CLIENT_ID}}``...) that :func:`render` fills in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

from idp_mcp.docs_index import DocsIndex, IndexedSection, SearchHit

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n(.*)\Z", re.DOTALL)
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# Links between guides are relative Markdown links: [text](other-guide.md), (./other-guide.md#part) or (#part).
_GUIDE_HREF = re.compile(r"^(?:\./)?([a-z0-9-]+)\.md(?:#(.*))?$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
# {{NAME}} in capitals (spaces inside the braces tolerated); lower-case {{ user.name }} in a template is left alone.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Z][A-Z0-9_]*)\s*\}\}")
_NOT_IN_SLUG = re.compile(r"[^\w\- ]")

#: Every placeholder a guide may use, with what a reader sees when the value is not known.
PLACEHOLDERS: dict[str, str] = {
    "PUBLIC_URL": "<this server's URL>",
    "TENANT_ID": "<your tenant id>",
    "ISSUER": "<your issuer URL>",
    "DISCOVERY_URL": "<your discovery URL>",
    "CLIENT_ID": "<your client id>",
    "REDIRECT_URI": "<your redirect URI>",
    "POST_LOGOUT_REDIRECT_URI": "<your post-logout redirect URI>",
    "API_IDENTIFIER": "<your API identifier>",
}
#: Headings that start a section of their own for search; deeper ones stay inside their section.
SECTION_LEVELS = (1, 2, 3)


class GuideError(ValueError):
    """A guide is malformed; the message names the file and what to fix."""


@dataclass(frozen=True)
class Guide:
    id: str
    title: str
    summary: str
    tools: tuple[str, ...]
    body: str


@dataclass(frozen=True)
class Section:
    """The text under one heading, up to the next heading of level 1 to 3."""

    heading: str
    anchor: str  # the heading's id on the /docs page; "" for text before the first heading
    level: int  # 0 for text before the first heading
    text: str


# --- Markdown -------------------------------------------------------------------------------------------------


def slugify(text: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    return _NOT_IN_SLUG.sub("", text.strip().lower()).replace(" ", "-")


def _heading_text(inline: Token) -> str:
    return "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))


def _heading_ids(state: StateCore) -> None:
    """Give every heading a stable ``id``; a repeated slug gets -1, -2... as on GitHub."""
    seen: dict[str, int] = {}
    tokens = state.tokens
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        slug = slugify(_heading_text(tokens[index + 1])) or "section"
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        token.attrSet("id", slug if count == 0 else f"{slug}-{count}")


@cache
def markdown_parser() -> MarkdownIt:
    """CommonMark plus tables, with raw HTML off so a guide cannot inject markup, and ids on headings."""
    parser = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    parser.core.ruler.push("heading_ids", _heading_ids)
    return parser


def parse_markdown(text: str) -> list[Token]:
    return markdown_parser().parse(text)


def guide_link(href: str) -> tuple[str, str] | None:
    """``(guide id, anchor)`` when ``href`` is a link to another guide (``other.md#part``), else None."""
    match = _GUIDE_HREF.match(href)
    return (match.group(1), match.group(2) or "") if match else None


def _links(tokens: list[Token]) -> list[str]:
    return [
        str(child.attrGet("href") or "")
        for token in tokens
        if token.type == "inline"
        for child in token.children or []
        if child.type == "link_open"
    ]


def _sections(title: str, body: str, tokens: list[Token]) -> list[Section]:
    lines = body.split("\n")
    starts: list[tuple[int, int, str, str, int]] = []  # (first line, line after the heading, heading, anchor, level)
    for index, token in enumerate(tokens):
        level = int(token.tag[1]) if token.type == "heading_open" else 0
        if level in SECTION_LEVELS and token.map:
            heading = _heading_text(tokens[index + 1]).strip()
            starts.append((token.map[0], token.map[1], heading, str(token.attrGet("id")), level))
    sections = []
    if not starts or starts[0][0] > 0:
        preamble = "\n".join(lines[: starts[0][0] if starts else len(lines)]).strip()
        if preamble:
            sections.append(Section(title, "", 0, preamble))
    for number, (_, text_start, heading, anchor, level) in enumerate(starts):
        end = starts[number + 1][0] if number + 1 < len(starts) else len(lines)
        sections.append(Section(heading, anchor, level, "\n".join(lines[text_start:end]).strip()))
    return sections


def _about(guide: Guide) -> str:
    return f"{guide.summary} {guide.id.replace('-', ' ')}"


# --- placeholders ---------------------------------------------------------------------------------------------


def render(markdown: str, values: Mapping[str, str]) -> str:
    """Fill a guide's ``{{PLACEHOLDERS}}``: with ``values`` where given, else with a readable ``<your ...>``.

    The one place placeholders are filled, for the MCP tools and the /docs pages alike. There is no placeholder
    for a client secret: guides read it from the ``IDP_CLIENT_SECRET`` environment variable.
    """

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in PLACEHOLDERS:  # validation keeps these out of guides; never fill what is not a placeholder
            return match.group(0)
        return values.get(name) or PLACEHOLDERS[name]

    return _PLACEHOLDER.sub(fill, markdown)


def placeholders_in(markdown: str) -> list[str]:
    """The placeholder names a text uses, each once, in order of first use."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(markdown)))


# --- loading and validation -----------------------------------------------------------------------------------


def default_directory() -> Path:
    """Shipped inside the wheel as ``idp_mcp/instructions``; in a source checkout, the repository's folder."""
    packaged = Path(__file__).parent / "instructions"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "instructions"


def parse_guide(path: Path) -> Guide:
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    match = _FRONT_MATTER.match(text)
    if not match:
        raise GuideError(f"{path.name}: must start with YAML front matter between '---' lines")
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise GuideError(f"{path.name}: front matter is not valid YAML ({exc})") from exc
    if not isinstance(meta, dict):
        raise GuideError(f"{path.name}: front matter must be a mapping")
    for field in ("id", "title", "summary"):
        if not isinstance(meta.get(field), str) or not meta[field].strip():
            raise GuideError(f"{path.name}: front matter needs a non-empty '{field}'")
    tools = meta.get("tools")
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise GuideError(f"{path.name}: front matter needs 'tools', a list of tool names")
    if meta["id"] != path.stem or not _ID.match(meta["id"]):
        raise GuideError(f"{path.name}: 'id' must be kebab-case and equal the file name ('{path.stem}')")
    body = match.group(2).strip() + "\n"
    unknown = [name for name in placeholders_in(body) if name not in PLACEHOLDERS]
    if unknown:
        raise GuideError(
            f"{path.name}: unknown placeholder(s) {', '.join('{{' + name + '}}' for name in unknown)}; "
            f"use one of {', '.join('{{' + name + '}}' for name in PLACEHOLDERS)}"
        )
    return Guide(meta["id"], meta["title"].strip(), meta["summary"].strip(), tuple(tools), body)


class GuideLibrary:
    """The guides, their sections and anchors, and a full-text index of the sections (built once, here)."""

    def __init__(self, guides: Iterable[Guide]) -> None:
        self._guides = {guide.id: guide for guide in sorted(guides, key=lambda g: g.id)}
        self._sections: dict[str, list[Section]] = {}
        self._anchors: dict[str, set[str]] = {}
        self._links: dict[str, list[str]] = {}
        for guide in self._guides.values():
            # Keep what is read from the tokens, not the tokens (~3 MB for the shipped guides, held for good).
            tokens = parse_markdown(guide.body)
            self._sections[guide.id] = _sections(guide.title, guide.body, tokens)
            self._anchors[guide.id] = {str(token.attrGet("id")) for token in tokens if token.type == "heading_open"}
            self._links[guide.id] = _links(tokens)
        self._index = DocsIndex(
            IndexedSection(guide.id, guide.title, s.heading, s.anchor, s.text, _about(guide))
            for guide in self._guides.values()
            for s in self._sections[guide.id]
        )

    @classmethod
    def load(cls, directory: Path, known_tools: Iterable[str]) -> GuideLibrary:
        """Load and validate every guide; any problem raises :class:`GuideError` (start-up fails)."""
        if not directory.is_dir():
            raise GuideError(f"guides folder {directory} does not exist")
        guides = [parse_guide(path) for path in sorted(directory.glob("*.md"))]
        if not guides:
            raise GuideError(f"no guides in {directory}")
        library = cls(guides)
        library.validate(set(known_tools))
        return library

    def validate(self, known_tools: set[str]) -> None:
        for guide in self._guides.values():
            unknown = [tool for tool in guide.tools if tool not in known_tools]
            if unknown:
                raise GuideError(f"{guide.id}.md: unknown tool(s) {', '.join(unknown)}")
            for section in self._sections[guide.id]:
                if section.level and placeholders_in(section.heading):
                    raise GuideError(
                        f"{guide.id}.md: heading '{section.heading}' has a placeholder; headings must not change "
                        "when a guide is filled in, or links to them break"
                    )
            for href in self._links[guide.id]:
                self._check_link(guide.id, href)

    def _check_link(self, guide_id: str, href: str) -> None:
        if href.startswith("#"):
            target, anchor = guide_id, href[1:]
        elif (link := guide_link(href)) is not None:
            target, anchor = link
            if target not in self._guides:
                raise GuideError(f"{guide_id}.md: broken link to '{target}.md'")
        elif not _SCHEME.match(href) and not href.startswith("/") and href.split("#")[0].endswith(".md"):
            raise GuideError(f"{guide_id}.md: broken link to '{href}'; link other guides as 'guide-id.md'")
        else:
            return
        if anchor and anchor not in self.anchors(target):
            raise GuideError(f"{guide_id}.md: link '{href}' points at no heading of {target}.md (no '#{anchor}')")

    def all(self) -> list[Guide]:
        return list(self._guides.values())

    def get(self, guide_id: str) -> Guide | None:
        return self._guides.get(guide_id)

    def sections(self, guide_id: str) -> list[Section]:
        return list(self._sections.get(guide_id, []))

    def anchors(self, guide_id: str) -> set[str]:
        """The ids of the guide's headings (every level), as the /docs page renders them."""
        return set(self._anchors.get(guide_id, set()))

    def search(self, query: str, limit: int = 5) -> list[SearchHit]:
        """Sections that match ``query``, best first; raises :class:`~idp_mcp.docs_index.DocsQueryError`."""
        return self._index.search(query, limit)

    def close(self) -> None:
        self._index.close()
