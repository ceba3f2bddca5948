"""Tools that serve the Markdown guides in instructions/ on demand: list them, read one filled in with the
tenant's (and an application's) values, and search them with citations."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from idp_mcp.core.applications import Application
from idp_mcp.docs_index import DocsQueryError, passage
from idp_mcp.domain import SCOPE_READ
from idp_mcp.guides import placeholders_in, render
from idp_mcp.mcp_server.links import discovery_url, docs_url, tenant_issuer
from idp_mcp.mcp_server.registry import ToolContext, ToolFailure, ToolSpec, read_once
from idp_mcp.mcp_server.tools.tenant import NoInput


class GuideSummary(BaseModel):
    id: str
    title: str
    summary: str


class GuideList(BaseModel):
    guides: list[GuideSummary]


async def list_instructions(ctx: ToolContext, _: NoInput) -> GuideList:
    """List the guides: id, title and a one-line summary."""
    return GuideList(guides=[GuideSummary(id=g.id, title=g.title, summary=g.summary) for g in ctx.guides.all()])


def _values(ctx: ToolContext, app: Application | None = None) -> dict[str, str]:
    """What a guide's placeholders become for this connection's tenant and, when given, one of its applications.

    Values that are not known (no application, or one without redirect URIs) are left out, so :func:`render`
    shows a readable ``<your ...>`` instead.
    """
    tenant_id = ctx.actor.tenant_id
    values = {
        "PUBLIC_URL": ctx.settings.public_url,
        "TENANT_ID": tenant_id,
        "ISSUER": tenant_issuer(ctx.settings, tenant_id),
        "DISCOVERY_URL": discovery_url(ctx.settings, tenant_id),
    }
    if app is not None:
        values["CLIENT_ID"] = app.id
        if app.redirect_uris:
            values["REDIRECT_URI"] = app.redirect_uris[0]
        if app.post_logout_redirect_uris:
            values["POST_LOGOUT_REDIRECT_URI"] = app.post_logout_redirect_uris[0]
    return values


class GetInstructionsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str = Field(min_length=1, max_length=100, description="A guide id from listInstructions.")
    applicationId: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Optional: the id of the application the guide is for (from listApplications). Its client id "
        "and redirect URIs are then filled into the guide's code.",
    )


class GuideContent(BaseModel):
    id: str
    title: str
    tools: list[str]
    markdown: str = Field(description="The guide, with this tenant's URLs (and the application's ids) filled in.")
    applicationId: str | None = Field(description="The application whose values were filled in, if one was given.")
    unfilled: list[str] = Field(
        description="Placeholders shown as <your ...> because their value is not known: pass applicationId for the "
        "client id and redirect URIs (and, for an m2m app with roles, its API identifier; with one API resource in "
        "the tenant, that one is filled in). The client secret is never filled in; code reads IDP_CLIENT_SECRET."
    )
    url: str = Field(description="The guide on this server's /docs pages, for the user to read.")


async def get_instructions(ctx: ToolContext, args: GetInstructionsInput) -> GuideContent:
    """Return one guide's Markdown, filled in with the tenant's values and, given an applicationId, the
    application's."""
    guide = ctx.guides.get(args.topic.strip())
    if guide is None:
        known = ", ".join(g.id for g in ctx.guides.all())
        raise ToolFailure(f"There is no guide '{args.topic[:100]}'. Use one of: {known}.")
    tenant_id = ctx.actor.tenant_id
    application_id = args.applicationId.strip() if args.applicationId is not None else None

    def read() -> tuple[Application | None, str | None]:
        # An id of another tenant is "not found" here too: applications are read by (tenant, id).
        found = ctx.core.applications.get(tenant_id, application_id) if application_id is not None else None
        api = ctx.core.api_resources.suggested_identifier(tenant_id, found.id if found else None)
        return found, api

    app, api_identifier = await read_once(ctx, read)
    values = _values(ctx, app)
    if api_identifier is not None:
        values["API_IDENTIFIER"] = api_identifier
    return GuideContent(
        id=guide.id,
        title=guide.title,
        tools=list(guide.tools),
        markdown=render(guide.body, values),
        applicationId=app.id if app else None,
        unfilled=[name for name in placeholders_in(guide.body) if name not in values],
        url=docs_url(ctx.settings, guide.id),
    )


class SearchDocsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(
        min_length=1, max_length=200, description="A few keywords or a question, like 'refresh token rotation'."
    )
    limit: int = Field(default=5, ge=1, le=20, description="How many passages to return at most.")


class Citation(BaseModel):
    guideId: str = Field(description="The guide to read in full with getInstructions.")
    heading: str = Field(description="The heading the passage sits under.")
    url: str = Field(description="The passage on this server's /docs pages, to cite to the user.")


class DocsPassage(BaseModel):
    guideTitle: str
    passage: str = Field(description="The section's Markdown, cut to about 600 characters.")
    citation: Citation


class DocsSearchResult(BaseModel):
    results: list[DocsPassage] = Field(description="The best passages first.")
    next: str = Field(description="What to do next.")


async def search_docs(ctx: ToolContext, args: SearchDocsInput) -> DocsSearchResult:
    """Search the guides' sections (SQLite FTS5, bm25) and return passages with citations."""
    try:
        hits = ctx.guides.search(args.query, args.limit)
    except DocsQueryError as exc:
        raise ToolFailure(str(exc)) from exc
    values = _values(ctx)
    results = [
        DocsPassage(
            guideTitle=hit.section.title,
            passage=passage(render(hit.section.text, values)),
            citation=Citation(
                guideId=hit.section.guide_id,
                heading=hit.section.heading,
                url=docs_url(ctx.settings, hit.section.guide_id, hit.section.anchor),
            ),
        )
        for hit in hits
    ]
    if results:
        follow = (
            "Read the whole guide with getInstructions (topic: citation.guideId, and applicationId when the task "
            "is about one application) before acting, and give the user the citation url."
        )
    else:
        follow = "Nothing matched. Try other keywords, or call listInstructions to see every guide."
    return DocsSearchResult(results=results, next=follow)


TOOLS: list[ToolSpec[Any]] = [
    ToolSpec(
        name="listInstructions",
        title="List guides",
        description="List the step-by-step guides for tasks on this identity provider. Use it to find the "
        "guide to read before a task.",
        input_model=NoInput,
        output_model=GuideList,
        handler=list_instructions,
        scope=SCOPE_READ,
        toolset="guides",
        read_only=True,
    ),
    ToolSpec(
        name="getInstructions",
        title="Read a guide",
        description="Read one guide by its id, with the steps and the tools to call. Pass applicationId to get "
        "its code filled in with that application's client id and redirect URI.",
        input_model=GetInstructionsInput,
        output_model=GuideContent,
        handler=get_instructions,
        scope=SCOPE_READ,
        toolset="guides",
        read_only=True,
    ),
    ToolSpec(
        name="searchDocs",
        title="Search the guides",
        description="Search the guides for passages that answer a question, each with a citation (guide, heading "
        "and URL). Use it when you do not know which guide covers a task.",
        input_model=SearchDocsInput,
        output_model=DocsSearchResult,
        handler=search_docs,
        scope=SCOPE_READ,
        toolset="guides",
        read_only=True,
    ),
]
