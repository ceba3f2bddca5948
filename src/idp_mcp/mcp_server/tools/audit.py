"""The audit log as the agent reads it: what was done in this tenant, by which human, through which agent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from idp_mcp.core.audit import AuditQuery
from idp_mcp.domain import SCOPE_READ, AuditEntry, as_utc
from idp_mcp.mcp_server.registry import ToolContext, ToolSpec

MAX_EVENTS = 200


class ListAuditEventsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: AwareDatetime | None = Field(
        default=None,
        description="Only events at or after this time, ISO 8601 with a time zone, e.g. 2026-12-01T00:00:00Z.",
    )
    actor: str | None = Field(
        default=None, min_length=1, max_length=320, description="The human who acted: an email address or a user id."
    )
    agent: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="The agent (OAuth client) that acted: its client id or name.",
    )
    tool: str | None = Field(
        default=None,
        pattern=r"^[a-z][A-Za-z0-9]{0,63}$",
        description="Only calls of this MCP tool, e.g. deleteApplication.",
    )
    targetId: str | None = Field(
        default=None, min_length=1, max_length=512, description="Only events about this object, e.g. an applicationId."
    )
    limit: int = Field(default=50, ge=1, le=MAX_EVENTS, description="How many events at most, newest first.")


class AuditActor(BaseModel):
    userId: str | None
    agentClientId: str | None = Field(description="The OAuth client that acted for the human; null for the console.")
    agentName: str | None


class AuditEvent(BaseModel):
    eventId: int
    at: datetime
    action: str = Field(description="What happened, e.g. application.update, or tool.<name> for a tool call.")
    outcome: str = Field(description="success or failure.")
    targetType: str | None
    targetId: str | None
    actor: AuditActor
    details: dict[str, Any] = Field(description="What changed (field names, never secret values) or the arguments.")


class AuditEvents(BaseModel):
    events: list[AuditEvent]
    hasMore: bool = Field(description="More events match: narrow with since or a filter, or raise limit.")


def _event(entry: AuditEntry) -> AuditEvent:
    return AuditEvent(
        eventId=entry.id,
        at=as_utc(entry.at),
        action=entry.action,
        outcome=entry.outcome,
        targetType=entry.target_type,
        targetId=entry.target_id,
        actor=AuditActor(
            userId=entry.actor_sub, agentClientId=entry.actor_client_id, agentName=entry.actor_client_name
        ),
        details=entry.details,
    )


async def list_audit_events(ctx: ToolContext, args: ListAuditEventsInput) -> AuditEvents:
    """What was done in this tenant, newest first, narrowed by the filters given."""
    query = AuditQuery(
        limit=args.limit + 1,  # one more than asked, to tell whether more exist
        since=args.since,
        actor=args.actor,
        agent=args.agent,
        action=f"tool.{args.tool}" if args.tool else None,
        target_id=args.targetId,
    )
    entries = await run_in_threadpool(ctx.core.audit.search, ctx.actor.tenant_id, query)
    return AuditEvents(events=[_event(entry) for entry in entries[: args.limit]], hasMore=len(entries) > args.limit)


TOOLS: list[ToolSpec[Any]] = [
    ToolSpec(
        name="listAuditEvents",
        title="List audit events",
        description="List what was done in this tenant, by which human and through which agent, newest first. Use "
        "it to answer who changed something, or to check what an earlier step really did.",
        input_model=ListAuditEventsInput,
        output_model=AuditEvents,
        handler=list_audit_events,
        scope=SCOPE_READ,
        toolset="audit",
        read_only=True,
    ),
]
