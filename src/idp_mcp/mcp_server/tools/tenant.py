"""Tools about the tenant this connection acts on."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from idp_mcp.domain import SCOPE_READ, SCOPE_WRITE
from idp_mcp.mcp_server.registry import ToolContext, ToolSpec


class NoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantInfo(BaseModel):
    tenantId: str
    tenantName: str
    authorizationServer: str = Field(description="Issuer of the tokens this MCP connection uses.")
    mcpServerUrl: str
    consoleUrl: str = Field(description="The web console for this tenant, where a person manages production secrets.")
    signedInAs: str | None
    agent: str | None = Field(description="The MCP client acting for the signed-in administrator.")
    scopes: list[str]
    readOnly: bool
    availableTools: list[str]


async def get_tenant_info(ctx: ToolContext, _: NoInput) -> TenantInfo:
    """Describe the tenant and what this connection may do."""
    tenant = await run_in_threadpool(ctx.core.tenants.get, ctx.actor.tenant_id)
    return TenantInfo(
        tenantId=tenant.id,
        tenantName=tenant.name,
        authorizationServer=ctx.settings.issuer,
        mcpServerUrl=ctx.settings.mcp_resource,
        consoleUrl=ctx.settings.url(f"/console/t/{tenant.id}/applications"),
        signedInAs=ctx.user_email,
        agent=ctx.actor.client_name,
        scopes=sorted(ctx.scopes),
        readOnly=SCOPE_WRITE not in ctx.scopes,
        availableTools=sorted(ctx.tool_names),
    )


class UpdateTenantInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, description="The tenant's new display name.")


class UpdatedTenant(BaseModel):
    tenantId: str
    tenantName: str


async def update_tenant(ctx: ToolContext, args: UpdateTenantInput) -> UpdatedTenant:
    """Rename the tenant."""
    tenant = await run_in_threadpool(ctx.core.tenants.rename, ctx.actor.tenant_id, args.name, ctx.actor)
    return UpdatedTenant(tenantId=tenant.id, tenantName=tenant.name)


TOOLS: list[ToolSpec[Any]] = [
    ToolSpec(
        name="getTenantInfo",
        title="Get tenant info",
        description="Describe the tenant this connection acts on, its issuer and console, and what this "
        "connection may do. Call it first to orient yourself.",
        input_model=NoInput,
        output_model=TenantInfo,
        handler=get_tenant_info,
        scope=SCOPE_READ,
        toolset="tenant",
        read_only=True,
    ),
    ToolSpec(
        name="updateTenant",
        title="Rename tenant",
        description="Change the tenant's display name.",
        input_model=UpdateTenantInput,
        output_model=UpdatedTenant,
        handler=update_tenant,
        scope=SCOPE_WRITE,
        toolset="tenant",
        read_only=False,
        idempotent=True,
    ),
]
