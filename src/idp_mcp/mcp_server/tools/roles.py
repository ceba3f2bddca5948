"""Tools for roles (named sets of API permissions) and who holds them: users (user roles) and machine-to-machine
applications (m2m roles)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from idp_mcp.core.roles import MAX_ROLE_PERMISSIONS, GrantedPermission, Role, RoleAssignment, SubjectRoles
from idp_mcp.domain import SCOPE_READ, SCOPE_WRITE
from idp_mcp.mcp_server.registry import ToolContext, ToolFailure, ToolSpec, confirm_field, confirm_first
from idp_mcp.mcp_server.tools.tenant import NoInput

RoleType = Literal["user", "m2m"]
RoleId = Annotated[str, Field(min_length=1, max_length=64, description="The role's id, from listRoles.")]


class RolePermissionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resource: str = Field(min_length=1, max_length=512, description="The API resource's identifier (its URI).")
    permission: str = Field(min_length=1, max_length=64, description="One of that API resource's permissions.")


RolePermissions = Annotated[list[RolePermissionInput], Field(max_length=MAX_ROLE_PERMISSIONS)]


class PermissionGrant(BaseModel):
    resource: str = Field(description="The API resource's identifier.")
    resourceName: str
    permission: str
    description: str


class RoleInfo(BaseModel):
    roleId: str
    name: str
    description: str
    type: RoleType = Field(description="user: held by users; m2m: held by machine-to-machine applications.")
    permissions: list[PermissionGrant]
    createdAt: datetime


class CreatedRole(RoleInfo):
    next: str = Field(description="What to do next.")


class RoleList(BaseModel):
    roles: list[RoleInfo]


class UserHolder(BaseModel):
    userId: str
    email: str | None
    username: str | None


class ApplicationHolder(BaseModel):
    applicationId: str
    name: str


class RoleWithHolders(RoleInfo):
    users: list[UserHolder] = Field(description="Users holding the role (the first 100).")
    applications: list[ApplicationHolder] = Field(description="Applications holding the role (the first 100).")
    userCount: int
    applicationCount: int


class UpdatedRole(RoleInfo):
    changed: list[str] = Field(description="The fields that changed; empty when the values were the same already.")


class DeletedRole(BaseModel):
    roleId: str
    name: str
    deleted: bool
    usersAffected: int
    applicationsAffected: int


class HeldRole(BaseModel):
    roleId: str
    name: str
    type: RoleType


class EffectivePermission(BaseModel):
    resource: str = Field(description="The API resource's identifier.")
    permission: str


class RolesAndPermissions(BaseModel):
    """What a user or an application holds now (shown by getUser, getApplication, assignRoles and removeRoles)."""

    roles: list[HeldRole]
    permissions: list[EffectivePermission] = Field(
        description="Every (API, permission) pair its roles grant: the most a token for that API can carry."
    )


class AssignmentResult(RolesAndPermissions):
    userId: str | None
    applicationId: str | None
    changed: list[str] = Field(description="Role ids given (assignRoles) or taken away (removeRoles) now.")
    unchanged: list[str] = Field(description="Role ids already held (assignRoles) or not held (removeRoles).")
    next: str


def _grants(permissions: tuple[GrantedPermission, ...]) -> list[PermissionGrant]:
    return [
        PermissionGrant(resource=g.resource, resourceName=g.resource_name, permission=g.permission,
                        description=g.description)
        for g in permissions
    ]  # fmt: skip


def _info(role: Role) -> dict[str, Any]:
    return {
        "roleId": role.id,
        "name": role.name,
        "description": role.description,
        "type": role.type,
        "permissions": _grants(role.permissions),
        "createdAt": role.created_at,
    }


def roles_and_permissions(held: SubjectRoles) -> dict[str, Any]:
    """The ``roles`` and ``permissions`` fields of a user or an application."""
    return {
        "roles": [HeldRole(roleId=r.id, name=r.name, type=r.type) for r in held.roles],
        "permissions": [EffectivePermission(resource=g.resource, permission=g.permission) for g in held.permissions],
    }


def _pairs(permissions: list[RolePermissionInput]) -> list[tuple[str, str]]:
    return [(p.resource, p.permission) for p in permissions]


# --- createRole -----------------------------------------------------------------------------------------------


class CreateRoleInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, description="Unique in the tenant, e.g. Invoice admin.")
    description: str = Field(default="", max_length=1000, description="Who should hold it, for administrators.")
    type: RoleType = Field(description="user: for people; m2m: for machine-to-machine applications.")
    permissions: RolePermissions = Field(default_factory=list, description="The API permissions the role grants.")


async def create_role(ctx: ToolContext, args: CreateRoleInput) -> CreatedRole:
    """Create a role."""
    role = await run_in_threadpool(
        lambda: ctx.core.roles.create(
            ctx.actor.tenant_id, name=args.name, description=args.description, role_type=args.type,
            permissions=_pairs(args.permissions), actor=ctx.actor,
        )
    )  # fmt: skip
    holder = "users (userId)" if role.type == "user" else "m2m applications (applicationId)"
    return CreatedRole(
        **_info(role),
        next=f"Give it to {holder} with assignRoles. Their next token for each API carries these permissions.",
    )


# --- listRoles, getRole ---------------------------------------------------------------------------------------


async def list_roles(ctx: ToolContext, _: NoInput) -> RoleList:
    """Every role of the tenant with its permissions."""
    roles = await run_in_threadpool(ctx.core.roles.list, ctx.actor.tenant_id)
    return RoleList(roles=[RoleInfo(**_info(role)) for role in roles])


class RoleRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roleId: RoleId


async def get_role(ctx: ToolContext, args: RoleRef) -> RoleWithHolders:
    """One role and who holds it."""
    role, holders = await run_in_threadpool(ctx.core.roles.with_holders, ctx.actor.tenant_id, args.roleId)
    return RoleWithHolders(
        **_info(role),
        users=[UserHolder(userId=i, email=e, username=u) for i, e, u in holders.users],
        applications=[ApplicationHolder(applicationId=i, name=n) for i, n in holders.applications],
        userCount=holders.user_count,
        applicationCount=holders.application_count,
    )


# --- updateRole -----------------------------------------------------------------------------------------------


class UpdateRoleInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roleId: RoleId
    name: str | None = Field(default=None, min_length=1, max_length=128, description="A new name.")
    description: str | None = Field(default=None, max_length=1000, description="A new description.")
    permissions: RolePermissions | None = Field(
        default=None, description="The complete new list of permissions the role grants."
    )


async def update_role(ctx: ToolContext, args: UpdateRoleInput) -> UpdatedRole:
    """Change the fields given; the others stay as they are."""
    if args.name is None and args.description is None and args.permissions is None:
        raise ToolFailure("Give at least one field to change: name, description or permissions.")
    _, after, changed = await run_in_threadpool(
        lambda: ctx.core.roles.update(
            ctx.actor.tenant_id, args.roleId, actor=ctx.actor, name=args.name, description=args.description,
            permissions=_pairs(args.permissions) if args.permissions is not None else None,
        )
    )  # fmt: skip
    return UpdatedRole(**_info(after), changed=list(changed))


# --- deleteRole -----------------------------------------------------------------------------------------------


class DeleteRoleInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roleId: RoleId
    confirm: bool = confirm_field()


async def delete_role(ctx: ToolContext, args: DeleteRoleInput) -> DeletedRole:
    """Delete a role after the person acting confirmed it."""
    tenant_id = ctx.actor.tenant_id

    def question() -> str:
        role, holders = ctx.core.roles.with_holders(tenant_id, args.roleId)
        return (
            f"Delete the role '{role.name}' ({role.type}, id {role.id})? {holders.user_count} users and "
            f"{holders.application_count} applications lose its permissions at their next token."
        )

    await confirm_first(ctx, question, confirmed=args.confirm, tool="deleteRole")
    deleted, now = await run_in_threadpool(ctx.core.roles.delete, tenant_id, args.roleId, ctx.actor)
    return DeletedRole(
        roleId=deleted.id, name=deleted.name, deleted=True, usersAffected=now.user_count,
        applicationsAffected=now.application_count,
    )  # fmt: skip


# --- assignRoles, removeRoles ---------------------------------------------------------------------------------


class RoleHolderInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roleIds: list[RoleId] = Field(min_length=1, max_length=50, description="The roles, from listRoles.")
    userId: str | None = Field(
        default=None, min_length=1, max_length=64, description="A user (for user roles); or give applicationId."
    )
    applicationId: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="A machine-to-machine application (for m2m roles); or give userId.",
    )  # fmt: skip


def _assignment(result: RoleAssignment, next_step: str) -> AssignmentResult:
    return AssignmentResult(
        **roles_and_permissions(result.now),
        userId=result.subject_id if result.kind == "user" else None,
        applicationId=result.subject_id if result.kind == "application" else None,
        changed=list(result.changed),
        unchanged=list(result.unchanged),
        next=next_step,
    )


async def assign_roles(ctx: ToolContext, args: RoleHolderInput) -> AssignmentResult:
    """Give roles to one user or one m2m application."""
    result = await run_in_threadpool(
        lambda: ctx.core.roles.assign(
            ctx.actor.tenant_id, args.roleIds, actor=ctx.actor, user_id=args.userId, application_id=args.applicationId
        )
    )
    return _assignment(result, "The next token for each API (a sign-in, a refresh or client credentials) carries "
                       "the requested permissions these roles grant.")  # fmt: skip


async def remove_roles(ctx: ToolContext, args: RoleHolderInput) -> AssignmentResult:
    """Take roles from one user or one m2m application."""
    result = await run_in_threadpool(
        lambda: ctx.core.roles.remove(
            ctx.actor.tenant_id, args.roleIds, actor=ctx.actor, user_id=args.userId, application_id=args.applicationId
        )
    )
    return _assignment(result, "Tokens already issued keep their permissions until they expire; the next token "
                       "(a refresh included) no longer carries what these roles granted.")  # fmt: skip


TOOLS: list[ToolSpec[Any]] = [
    ToolSpec(
        name="createRole",
        title="Create role",
        description="Create a role that grants API permissions, for users (type user) or for machine-to-machine "
        "applications (type m2m). Give it to holders with assignRoles.",
        input_model=CreateRoleInput,
        output_model=CreatedRole,
        handler=create_role,
        scope=SCOPE_WRITE,
        toolset="roles",
        read_only=False,
    ),
    ToolSpec(
        name="listRoles",
        title="List roles",
        description="List the tenant's roles with their type and permissions. Use it to find a role's id.",
        input_model=NoInput,
        output_model=RoleList,
        handler=list_roles,
        scope=SCOPE_READ,
        toolset="roles",
        read_only=True,
    ),
    ToolSpec(
        name="getRole",
        title="Get role",
        description="Read one role: its permissions and the users or applications that hold it.",
        input_model=RoleRef,
        output_model=RoleWithHolders,
        handler=get_role,
        scope=SCOPE_READ,
        toolset="roles",
        read_only=True,
    ),
    ToolSpec(
        name="updateRole",
        title="Update role",
        description="Rename a role, change its description or replace the permissions it grants. Holders get the "
        "change at their next token.",
        input_model=UpdateRoleInput,
        output_model=UpdatedRole,
        handler=update_role,
        scope=SCOPE_WRITE,
        toolset="roles",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
    ToolSpec(
        name="deleteRole",
        title="Delete role",
        description="Delete a role, after the person you act for confirms. Its holders lose its permissions at "
        "their next token.",
        input_model=DeleteRoleInput,
        output_model=DeletedRole,
        handler=delete_role,
        scope=SCOPE_WRITE,
        toolset="roles",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
    ToolSpec(
        name="assignRoles",
        title="Assign roles",
        description="Give roles to a user (user roles, with userId) or to a machine-to-machine application (m2m "
        "roles, with applicationId). Returns what the holder has now.",
        input_model=RoleHolderInput,
        output_model=AssignmentResult,
        handler=assign_roles,
        scope=SCOPE_WRITE,
        toolset="roles",
        read_only=False,
        idempotent=True,
    ),
    ToolSpec(
        name="removeRoles",
        title="Remove roles",
        description="Take roles from a user (userId) or a machine-to-machine application (applicationId). Their "
        "next token, a refresh included, no longer carries what the roles granted.",
        input_model=RoleHolderInput,
        output_model=AssignmentResult,
        handler=remove_roles,
        scope=SCOPE_WRITE,
        toolset="roles",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
]
