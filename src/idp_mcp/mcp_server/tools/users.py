"""Tools for the tenant's users (the people who sign in to the developer's applications). No result ever carries a
password or its hash."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.concurrency import run_in_threadpool

from idp_mcp.core.passwords import MAX_LENGTH, MIN_LENGTH
from idp_mcp.core.users import UserChanges
from idp_mcp.domain import SCOPE_READ, SCOPE_WRITE, User, as_utc
from idp_mcp.mcp_server.registry import ToolContext, ToolFailure, ToolSpec, confirm_field, confirm_first, read_once
from idp_mcp.mcp_server.tools.mfa import FactorSummary, factor_summaries
from idp_mcp.mcp_server.tools.roles import EffectivePermission, HeldRole, roles_and_permissions

UserId = Annotated[str, Field(min_length=1, max_length=64, description="The user's id, from listUsers.")]

# --- results --------------------------------------------------------------------------------------------------


class UserInfo(BaseModel):
    userId: str
    email: str | None
    username: str | None
    name: str | None
    emailVerified: bool = Field(
        description="Whether the email address is proven (the user entered a code sent to it, or an administrator "
        "vouched for it). Sent to applications as the email_verified claim."
    )
    suspended: bool = Field(description="A suspended user cannot sign in.")
    createdAt: datetime


class IdentityInfo(BaseModel):
    connectorId: str
    connectorName: str | None
    subject: str = Field(description="The user's id at the provider.")
    email: str | None = Field(description="The email the provider gave at the last sign-in.")
    emailVerified: bool = Field(description="True only when the provider said the email is verified.")
    name: str | None
    picture: str | None
    lastSignInAt: datetime


class UserDetails(UserInfo):
    roles: list[HeldRole] = Field(description="The user roles the user holds (assignRoles, removeRoles).")
    permissions: list[EffectivePermission] = Field(description="The API permissions those roles grant.")
    identities: list[IdentityInfo] = Field(
        description="The user's accounts at connectors (upstream providers); unlinkIdentity removes one."
    )
    mfaFactors: list[FactorSummary] = Field(
        default_factory=list, description="Enrolled second factors (kinds and dates, never secrets); resetUserMfa."
    )


class UserPage(BaseModel):
    users: list[UserInfo]
    total: int = Field(description="How many users match, on every page.")
    page: int
    pageSize: int
    hasMore: bool = Field(description="Whether a later page has more users.")


class UpdatedUser(UserInfo):
    changed: list[str] = Field(description="The fields that changed; empty when the values were the same already.")


class DeletedUser(BaseModel):
    userId: str
    deleted: bool


def _info(user: User) -> UserInfo:
    return UserInfo(
        userId=user.id,
        email=user.email,
        username=user.username,
        name=user.name,
        emailVerified=user.email_verified,
        suspended=user.suspended,
        createdAt=as_utc(user.created_at),
    )


# --- createUser -----------------------------------------------------------------------------------------------


class CreateUserInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str | None = Field(default=None, min_length=3, max_length=254, description="The user's email address.")
    username: str | None = Field(
        default=None, min_length=3, max_length=64, description="A sign-in name: letters, digits, '_', '.' or '-'."
    )
    # The core checks the length (8 to 256) and says what to change; the schema tells clients up front.
    password: SecretStr = Field(
        description="An initial password the user signs in with: 8 to 256 characters, not a common password.",
        json_schema_extra={"minLength": MIN_LENGTH, "maxLength": MAX_LENGTH},
    )
    name: str | None = Field(default=None, max_length=128, description="The user's display name.")
    emailVerified: bool = Field(
        default=False,
        description="true only when you know the address belongs to this person; otherwise it stays unproven until "
        "they sign in with a code sent to it. Applications may link accounts by a verified email.",
    )


async def create_user(ctx: ToolContext, args: CreateUserInput) -> UserInfo:
    """Create a user with a password."""
    user = await ctx.core.tenant_users.create(
        ctx.actor.tenant_id,
        password=args.password.get_secret_value(),
        actor=ctx.actor,
        email=args.email,
        username=args.username,
        name=args.name,
        email_verified=args.emailVerified,
    )
    return _info(user)


# --- listUsers, getUser ---------------------------------------------------------------------------------------


class ListUsersInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str | None = Field(
        default=None, max_length=100, description="Part of an email, username or name to search for."
    )
    page: int = Field(default=1, ge=1, le=100_000, description="The page, from 1.")
    pageSize: int = Field(default=20, ge=1, le=100, description="Users per page, 1 to 100.")


async def list_users(ctx: ToolContext, args: ListUsersInput) -> UserPage:
    """A page of the tenant's users, oldest first."""
    users, total = await run_in_threadpool(
        lambda: ctx.core.tenant_users.list(
            ctx.actor.tenant_id, query=args.query, page=args.page, page_size=args.pageSize
        )
    )
    return UserPage(
        users=[_info(user) for user in users],
        total=total,
        page=args.page,
        pageSize=args.pageSize,
        hasMore=args.page * args.pageSize < total,
    )


class UserRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    userId: UserId


async def get_user(ctx: ToolContext, args: UserRef) -> UserDetails:
    """One user, with their roles, effective API permissions and identities at connectors."""
    tenant_id = ctx.actor.tenant_id

    def read() -> tuple[User, Any, Any, Any]:
        user = ctx.core.tenant_users.get(tenant_id, args.userId)
        return (
            user,
            ctx.core.roles.of_subject(tenant_id, "user", user.id),
            ctx.core.connectors.identities(tenant_id, user.id),
            ctx.core.mfa.factors(tenant_id, user.id),
        )

    user, held, identities, factors = await read_once(ctx, read)
    return UserDetails(
        **_info(user).model_dump(),
        **roles_and_permissions(held),
        identities=[
            IdentityInfo(
                connectorId=i.connector_id,
                connectorName=i.connector_name,
                subject=i.subject,
                email=i.email,
                emailVerified=i.email_verified,
                name=i.name,
                picture=i.picture,
                lastSignInAt=i.last_sign_in_at,
            )
            for i in identities
        ],
        mfaFactors=factor_summaries(factors),
    )


# --- updateUser -----------------------------------------------------------------------------------------------


class UpdateUserInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    userId: UserId
    name: str | None = Field(default=None, max_length=128, description="A new display name; an empty string clears it.")
    suspended: bool | None = Field(
        default=None,
        description="true stops the user signing in, signs them out everywhere and revokes their applications' "
        "tokens (reactivating does not restore those: they sign in again); false lets them back.",
    )
    emailVerified: bool | None = Field(
        default=None,
        description="true when you know the address belongs to this person; false marks it unproven again.",
    )


async def update_user(ctx: ToolContext, args: UpdateUserInput) -> UpdatedUser:
    """Change the fields given; the others stay as they are."""
    if args.name is None and args.suspended is None and args.emailVerified is None:
        raise ToolFailure("Give at least one field to change: name, suspended or emailVerified.")
    changes = UserChanges(name=args.name, suspended=args.suspended, email_verified=args.emailVerified)
    update = await run_in_threadpool(ctx.core.tenant_users.revise, ctx.actor.tenant_id, args.userId, changes, ctx.actor)
    changed = ["emailVerified" if field == "email_verified" else field for field in update.changed]
    return UpdatedUser(**_info(update.after).model_dump(), changed=changed)


# --- deleteUser -----------------------------------------------------------------------------------------------


class DeleteUserInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    userId: UserId
    confirm: bool = confirm_field()


async def delete_user(ctx: ToolContext, args: DeleteUserInput) -> DeletedUser:
    """Delete a user after the person acting confirmed it."""
    tenant_id = ctx.actor.tenant_id

    def question() -> str:
        user = ctx.core.tenant_users.get(tenant_id, args.userId)
        who = user.email or user.username or user.id
        return f"Delete the user {who} (id {user.id})? They can no longer sign in and their account is gone."

    await confirm_first(ctx, question, confirmed=args.confirm, tool="deleteUser")
    deleted = await run_in_threadpool(ctx.core.tenant_users.delete, tenant_id, args.userId, ctx.actor)
    return DeletedUser(userId=deleted.id, deleted=True)


# --- setUserPassword, sendPasswordReset ------------------------------------------------------------------------


class SetUserPasswordInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    userId: UserId
    password: SecretStr = Field(
        description="The new password: 8 to 256 characters, not a common password, not containing the user's email "
        "or username.",
        json_schema_extra={"minLength": MIN_LENGTH, "maxLength": MAX_LENGTH},
    )


class PasswordSet(BaseModel):
    userId: str
    passwordSet: bool
    revokedGrants: int = Field(
        description="How many of the user's grants (with their refresh and access tokens) were revoked. The user was "
        "also signed out of the hosted pages: their applications must sign them in again."
    )


async def set_user_password(ctx: ToolContext, args: SetUserPasswordInput) -> PasswordSet:
    """Set a user's password; the value is never stored in clear, audited or returned."""
    changed = await run_in_threadpool(  # one hop: Argon2id, then the one transaction
        ctx.core.password_recovery.set_by_admin,
        ctx.actor.tenant_id,
        args.userId,
        args.password.get_secret_value(),
        ctx.actor,
    )
    return PasswordSet(userId=changed.user.id, passwordSet=True, revokedGrants=changed.revoked_grants)


class PasswordResetSent(BaseModel):
    userId: str
    email: str = Field(description="Where the code went.")
    delivered: bool = Field(description="Whether the SMTP server accepted the email.")
    expiresAt: datetime = Field(description="When the code stops working; a new request replaces it.")
    resetUrl: str = Field(description="The hosted page where the user enters the code and a new password.")


async def send_password_reset(ctx: ToolContext, args: UserRef) -> PasswordResetSent:
    """Email the user a reset code with a link to the tenant's hosted reset page."""
    tenant_id = ctx.actor.tenant_id
    sent = await run_in_threadpool(ctx.core.password_recovery.send_by_admin, tenant_id, args.userId, ctx.actor)
    if not await ctx.core.mailer.send(sent.email):
        raise ToolFailure(
            "The SMTP server did not accept the email, so the user got no code. Ask the server's operator to check "
            "the IDP_MCP_SMTP_* settings and the server log, then call sendPasswordReset again."
        )
    return PasswordResetSent(
        userId=args.userId, email=sent.email.to, delivered=True, expiresAt=as_utc(sent.expires_at),
        resetUrl=ctx.core.password_recovery.reset_url(tenant_id, sent.email.to),
    )  # fmt: skip


TOOLS: list[ToolSpec[Any]] = [
    ToolSpec(
        name="createUser",
        title="Create user",
        description="Create a user who signs in to the tenant's applications, with an email and/or a username and "
        "an initial password.",
        input_model=CreateUserInput,
        output_model=UserInfo,
        handler=create_user,
        scope=SCOPE_WRITE,
        toolset="users",
        read_only=False,
    ),
    ToolSpec(
        name="listUsers",
        title="List users",
        description="List or search the tenant's users, a page at a time. Use it to find a user's id.",
        input_model=ListUsersInput,
        output_model=UserPage,
        handler=list_users,
        scope=SCOPE_READ,
        toolset="users",
        read_only=True,
    ),
    ToolSpec(
        name="getUser",
        title="Get user",
        description="Read one user's profile, whether their email is verified, whether they are suspended, their "
        "roles and the API permissions those grant, and their identities at connectors.",
        input_model=UserRef,
        output_model=UserDetails,
        handler=get_user,
        scope=SCOPE_READ,
        toolset="users",
        read_only=True,
    ),
    ToolSpec(
        name="updateUser",
        title="Update user",
        description="Change a user's display name or whether their email is verified, or suspend or reactivate them. "
        "A suspended user is signed out everywhere and cannot sign in.",
        input_model=UpdateUserInput,
        output_model=UpdatedUser,
        handler=update_user,
        scope=SCOPE_WRITE,
        toolset="users",
        read_only=False,
        idempotent=True,
    ),
    ToolSpec(
        name="deleteUser",
        title="Delete user",
        description="Delete a user and their account, after the person you act for confirms. Prefer updateUser "
        "with suspended: true when the account may be needed again.",
        input_model=DeleteUserInput,
        output_model=DeletedUser,
        handler=delete_user,
        scope=SCOPE_WRITE,
        toolset="users",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
    ToolSpec(
        name="setUserPassword",
        title="Set user password",
        description="Set a user's password for a test user or a person support has verified (prefer "
        "sendPasswordReset otherwise). It signs them out everywhere and revokes their applications' tokens.",
        input_model=SetUserPasswordInput,
        output_model=PasswordSet,
        handler=set_user_password,
        scope=SCOPE_WRITE,
        toolset="users",
        read_only=False,
        destructive=True,
    ),
    ToolSpec(
        name="sendPasswordReset",
        title="Send password reset",
        description="Email a user a one-time code and a link to the tenant's hosted page where they choose a new "
        "password. Needs the email connector (SMTP) and a user with an email address.",
        input_model=UserRef,
        output_model=PasswordResetSent,
        handler=send_password_reset,
        scope=SCOPE_WRITE,
        toolset="users",
        read_only=False,
    ),
]
