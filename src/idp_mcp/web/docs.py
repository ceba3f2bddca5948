"""The guides as public web pages: /docs lists them, /docs/{id} renders one from Markdown.

Markdown goes through the parser :mod:`idp_mcp.guides` owns (raw HTML disabled, so a guide cannot inject markup;
code is escaped), so heading ids here are the anchors ``searchDocs`` cites. Links to other guides
(``other.md#part``) become links to their pages. Placeholders read ``<your client id>`` and the like: a page has
no tenant or application; an agent gets them filled in through ``getInstructions``.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.guides import Guide, GuideLibrary, guide_link, markdown_parser, parse_markdown, render
from idp_mcp.settings import Settings
from idp_mcp.web.pages import Pages


def guide_html(markdown: str) -> str:
    """A guide's Markdown as HTML, with ids on headings and links between guides pointing at /docs pages."""
    tokens = parse_markdown(markdown)
    for token in tokens:
        for child in token.children or []:
            if child.type == "link_open" and (link := guide_link(str(child.attrGet("href") or ""))):
                guide_id, anchor = link
                child.attrSet("href", f"/docs/{guide_id}" + (f"#{anchor}" if anchor else ""))
    parser = markdown_parser()
    html: str = parser.renderer.render(tokens, parser.options, {})
    return html


class Docs:
    def __init__(self, pages: Pages, guides: GuideLibrary, settings: Settings) -> None:
        self.pages = pages
        self.guides = guides
        self.settings = settings
        self._rendered: dict[str, str] = {}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/docs", self.index, methods=["GET"]),
            Route("/docs/{guide_id}", self.guide, methods=["GET"]),
        ]

    def _render(self, template: str, status: int = 200, **context: Any) -> Response:
        # No session and no form on these pages, so no CSRF cookie either (unlike Pages.render).
        html = self.pages.templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status)

    async def index(self, request: Request) -> Response:
        return self._render("docs/index.html", guides=self.guides.all())

    async def guide(self, request: Request) -> Response:
        guide = self.guides.get(request.path_params["guide_id"])
        if guide is None:
            return self._render("docs/not_found.html", status=404, guides=self.guides.all())
        sections = self.guides.sections(guide.id)
        return self._render(
            "docs/guide.html",
            guide=guide,
            content=Markup(self._html(guide)),  # noqa: S704 - markdown-it output, raw HTML disabled
            starts_with_title=bool(sections) and sections[0].level == 1,
        )

    def _html(self, guide: Guide) -> str:
        # Guides do not change while the server runs, and a page depends on nothing else: render each once.
        if guide.id not in self._rendered:
            filled = render(guide.body, {"PUBLIC_URL": self.settings.public_url})
            self._rendered[guide.id] = guide_html(filled)
        return self._rendered[guide.id]
