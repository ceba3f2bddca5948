"""Tools that serve the Markdown guides in instructions/ on demand."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from idp_mcp.domain import SCOPE_READ
from idp_mcp.mcp_server.registry import ToolContext, ToolFailure, ToolSpec
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


class GetInstructionsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str = Field(min_length=1, max_length=100, description="A guide id from listInstructions.")


class GuideContent(BaseModel):
    id: str
    title: str
    tools: list[str]
    markdown: str


async def get_instructions(ctx: ToolContext, args: GetInstructionsInput) -> GuideContent:
    """Return one guide's Markdown."""
    guide = ctx.guides.get(args.topic.strip())
    if guide is None:
        known = ", ".join(g.id for g in ctx.guides.all())
        raise ToolFailure(f"There is no guide '{args.topic[:100]}'. Use one of: {known}.")
    return GuideContent(id=guide.id, title=guide.title, tools=list(guide.tools), markdown=guide.body)


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
        description="Read one guide by its id, with the steps and the tools to call.",
        input_model=GetInstructionsInput,
        output_model=GuideContent,
        handler=get_instructions,
        scope=SCOPE_READ,
        toolset="guides",
        read_only=True,
    ),
]
