"""Tools for the tenant's API resources: the APIs its access tokens are for, and the permissions each defines."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from idp_mcp.core.api_resources import MAX_PERMISSIONS, MAX_TTL, MIN_TTL, ApiResource
from idp_mcp.domain import SCOPE_READ, SCOPE_WRITE
from idp_mcp.mcp_server.links import tenant_issuer
from idp_mcp.mcp_server.registry import ToolContext, ToolFailure, ToolSpec, confirm_field, confirm_first
from idp_mcp.mcp_server.tools.tenant import NoInput

ApiResourceId = Annotated[
    str, Field(min_length=1, max_length=64, description="The API resource's id, from listApiResources.")
]
Ttl = Annotated[int, Field(ge=MIN_TTL, le=MAX_TTL, description="Access-token lifetime for this API, in seconds.")]


class PermissionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        min_length=1, max_length=64, description="e.g. read:invoices: 1 to 64 letters, digits, ':', '.', '_' or '-'."
    )
    description: str = Field(default="", max_length=256, description="What it allows, shown on consent screens.")


PermissionList = Annotated[list[PermissionInput], Field(max_length=MAX_PERMISSIONS)]


class PermissionInfo(BaseModel):
    name: str
    description: str


class ApiResourceInfo(BaseModel):
    apiResourceId: str
    name: str
    identifier: str = Field(description="The resource indicator: apps send resource=<identifier>; tokens have aud=it.")
    permissions: list[PermissionInfo]
    accessTokenTtl: int | None = Field(description="Token lifetime in seconds; null: the server's default.")
    issuer: str = Field(description="The issuer of the tokens the API must accept (its JWKS is <issuer>/jwks).")
    createdAt: datetime


class CreatedApiResource(ApiResourceInfo):
    next: str = Field(description="What to do next.")


class ApiResourceList(BaseModel):
    apiResources: list[ApiResourceInfo]


class RoleRef(BaseModel):
    roleId: str
    name: str


class RemovedPermission(BaseModel):
    permission: str
    rolesThatLostIt: list[RoleRef] = Field(
        description="Roles that granted it; their holders lose it at their next token."
    )


class UpdatedApiResource(ApiResourceInfo):
    changed: list[str] = Field(description="The fields that changed; empty when the values were the same already.")
    addedPermissions: list[str]
    removedPermissions: list[RemovedPermission]


class DeletedApiResource(BaseModel):
    apiResourceId: str
    identifier: str
    deleted: bool
    rolesAffected: list[str] = Field(description="Roles that granted its permissions and no longer do.")


def _info(ctx: ToolContext, resource: ApiResource) -> dict[str, Any]:
    return {
        "apiResourceId": resource.id,
        "name": resource.name,
        "identifier": resource.identifier,
        "permissions": [PermissionInfo(name=p.name, description=p.description) for p in resource.permissions],
        "accessTokenTtl": resource.access_token_ttl,
        "issuer": tenant_issuer(ctx.settings, ctx.actor.tenant_id),
        "createdAt": resource.created_at,
    }


# --- createApiResource ----------------------------------------------------------------------------------------


class CreateApiResourceInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, description="A display name, e.g. Invoices API.")
    identifier: str = Field(
        min_length=1,
        max_length=512,
        description="The API's absolute https URI, e.g. https://api.example.com (http://localhost… for development). "
        "It becomes the tokens' aud and cannot change later.",
    )
    permissions: PermissionList = Field(default_factory=list, description="The permissions (scopes) the API checks.")
    accessTokenTtl: Ttl | None = None


async def create_api_resource(ctx: ToolContext, args: CreateApiResourceInput) -> CreatedApiResource:
    """Register an API and its permissions."""
    resource = await run_in_threadpool(
        lambda: ctx.core.api_resources.create(
            ctx.actor.tenant_id,
            name=args.name,
            identifier=args.identifier,
            permissions=[(p.name, p.description) for p in args.permissions],
            access_token_ttl=args.accessTokenTtl,
            actor=ctx.actor,
        )
    )
    return CreatedApiResource(
        **_info(ctx, resource),
        next="Create roles that grant these permissions (createRole) and give them to users or m2m applications "
        "(assignRoles). Apps ask for tokens with resource=<identifier>; the API must check the token's signature "
        "(issuer's JWKS), iss, aud = identifier, and the permission each route needs in scope: "
        "getInstructions('protect-an-api') has complete code.",
    )


# --- listApiResources, getApiResource -------------------------------------------------------------------------


async def list_api_resources(ctx: ToolContext, _: NoInput) -> ApiResourceList:
    """Every API resource of the tenant with its permissions."""
    resources = await run_in_threadpool(ctx.core.api_resources.list, ctx.actor.tenant_id)
    return ApiResourceList(apiResources=[ApiResourceInfo(**_info(ctx, r)) for r in resources])


class ApiResourceRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    apiResourceId: ApiResourceId


async def get_api_resource(ctx: ToolContext, args: ApiResourceRef) -> ApiResourceInfo:
    """One API resource."""
    resource = await run_in_threadpool(ctx.core.api_resources.get, ctx.actor.tenant_id, args.apiResourceId)
    return ApiResourceInfo(**_info(ctx, resource))


# --- updateApiResource ----------------------------------------------------------------------------------------


class UpdateApiResourceInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    apiResourceId: ApiResourceId
    name: str | None = Field(default=None, min_length=1, max_length=128, description="A new display name.")
    permissions: PermissionList | None = Field(
        default=None,
        description="The complete new list of permissions: names kept keep their roles, names left out are removed "
        "from every role.",
    )
    accessTokenTtl: Ttl | None = None


async def update_api_resource(ctx: ToolContext, args: UpdateApiResourceInput) -> UpdatedApiResource:
    """Rename, change the permission list or the token lifetime; the identifier never changes."""
    if args.name is None and args.permissions is None and args.accessTokenTtl is None:
        raise ToolFailure("Give at least one field to change: name, permissions or accessTokenTtl.")
    update = await run_in_threadpool(
        lambda: ctx.core.api_resources.update(
            ctx.actor.tenant_id,
            args.apiResourceId,
            actor=ctx.actor,
            name=args.name,
            permissions=[(p.name, p.description) for p in args.permissions] if args.permissions is not None else None,
            access_token_ttl=args.accessTokenTtl,
        )
    )
    return UpdatedApiResource(
        **_info(ctx, update.after),
        changed=list(update.changed),
        addedPermissions=list(update.added),
        removedPermissions=[
            RemovedPermission(
                permission=lost.permission, rolesThatLostIt=[RoleRef(roleId=r, name=n) for r, n in lost.roles]
            )
            for lost in update.removed
        ],
    )


# --- deleteApiResource ----------------------------------------------------------------------------------------


class DeleteApiResourceInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    apiResourceId: ApiResourceId
    confirm: bool = confirm_field()


async def delete_api_resource(ctx: ToolContext, args: DeleteApiResourceInput) -> DeletedApiResource:
    """Delete an API resource after the person acting confirmed it."""
    tenant_id = ctx.actor.tenant_id

    def question() -> str:
        resource = ctx.core.api_resources.get(tenant_id, args.apiResourceId)
        return (
            f"Delete the API resource '{resource.name}' ({resource.identifier}) and its {len(resource.permissions)} "
            "permissions? Roles stop granting them and no new token is issued for this API."
        )

    await confirm_first(ctx, question, confirmed=args.confirm, tool="deleteApiResource")
    deleted, affected = await run_in_threadpool(ctx.core.api_resources.delete, tenant_id, args.apiResourceId, ctx.actor)
    return DeletedApiResource(
        apiResourceId=deleted.id, identifier=deleted.identifier, deleted=True, rolesAffected=affected
    )


TOOLS: list[ToolSpec[Any]] = [
    ToolSpec(
        name="createApiResource",
        title="Create API resource",
        description="Register an API that accepts this tenant's access tokens, with the permissions (scopes) it "
        "checks. Tokens requested with resource=<identifier> have aud=<identifier> and carry the permissions the "
        "subject's roles grant.",
        input_model=CreateApiResourceInput,
        output_model=CreatedApiResource,
        handler=create_api_resource,
        scope=SCOPE_WRITE,
        toolset="api_resources",
        read_only=False,
    ),
    ToolSpec(
        name="listApiResources",
        title="List API resources",
        description="List the tenant's API resources with their identifiers and permissions. Use it to find an API "
        "resource's id or identifier.",
        input_model=NoInput,
        output_model=ApiResourceList,
        handler=list_api_resources,
        scope=SCOPE_READ,
        toolset="api_resources",
        read_only=True,
    ),
    ToolSpec(
        name="getApiResource",
        title="Get API resource",
        description="Read one API resource: its identifier, permissions and token lifetime.",
        input_model=ApiResourceRef,
        output_model=ApiResourceInfo,
        handler=get_api_resource,
        scope=SCOPE_READ,
        toolset="api_resources",
        read_only=True,
    ),
    ToolSpec(
        name="updateApiResource",
        title="Update API resource",
        description="Rename an API resource, replace its permission list or change its token lifetime; the "
        "identifier cannot change. Removing a permission takes it from every role that granted it (the result "
        "names them).",
        input_model=UpdateApiResourceInput,
        output_model=UpdatedApiResource,
        handler=update_api_resource,
        scope=SCOPE_WRITE,
        toolset="api_resources",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
    ToolSpec(
        name="deleteApiResource",
        title="Delete API resource",
        description="Delete an API resource and its permissions, after the person you act for confirms. No new "
        "token is issued for it; tokens already issued last until they expire.",
        input_model=DeleteApiResourceInput,
        output_model=DeletedApiResource,
        handler=delete_api_resource,
        scope=SCOPE_WRITE,
        toolset="api_resources",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
]
