"""Tools for multi-factor authentication: the tenant's MFA policy, and removing a user's factors so they enroll
again. Factors themselves are enrolled by the users, on the hosted pages; no tool ever sees a secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from idp_mcp.core.mfa import FactorInfo
from idp_mcp.domain import SCOPE_WRITE
from idp_mcp.mcp_server.registry import ToolContext, ToolFailure, ToolSpec, confirm_field, confirm_first
from idp_mcp.mcp_server.tools.sign_in_experience import UpdatedSignInExperience, updated_experience

Policy = Literal["off", "optional", "required"]
Factor = Literal["totp", "email", "passkey"]


class FactorSummary(BaseModel):
    kind: Literal["totp", "passkey", "backup_codes"] | str = Field(
        description="totp (authenticator app), passkey, or backup_codes (single-use codes given at enrollment)."
    )
    createdAt: datetime
    lastUsedAt: datetime | None
    remaining: int | None = Field(default=None, description="For backup_codes: how many are still unused.")


def factor_summaries(factors: list[FactorInfo]) -> list[FactorSummary]:
    return [
        FactorSummary(kind=f.kind, createdAt=f.created_at, lastUsedAt=f.last_used_at, remaining=f.remaining)
        for f in factors
    ]


# --- updateMfaPolicy ------------------------------------------------------------------------------------------


class UpdateMfaPolicyInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: Policy | None = Field(
        default=None,
        description="off: no second factor unless an app asks with acr_values; optional: users who enrolled a factor "
        "are asked for it, others may enroll; required: every user proves a second factor (enrolling at next sign-in).",
    )
    factors: list[Factor] | None = Field(
        default=None,
        max_length=3,
        description="The second factors users may use: totp (authenticator app), email (a code by email; needs SMTP), "
        "passkey. Backup codes come with totp and passkey enrollment.",
    )
    passkeyFirst: bool | None = Field(
        default=None, description="Whether a passkey may also be the first factor (passwordless); needs 'passkey'."
    )


async def update_mfa_policy(ctx: ToolContext, args: UpdateMfaPolicyInput) -> UpdatedSignInExperience:
    """Change the MFA policy fields given; the others stay as they are."""
    changes = args.model_dump(exclude_none=True)
    if not changes:
        raise ToolFailure("Give at least one field to change: policy, factors or passkeyFirst.")
    update = await run_in_threadpool(ctx.core.sign_in_experiences.update_mfa, ctx.actor.tenant_id, changes, ctx.actor)
    return updated_experience(ctx, update)


# --- resetUserMfa ---------------------------------------------------------------------------------------------


class ResetUserMfaInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    userId: str = Field(min_length=1, max_length=64, description="The user's id, from listUsers.")
    confirm: bool = confirm_field()


class ResetUserMfaResult(BaseModel):
    userId: str
    factorsRemoved: int = Field(description="Authenticator apps and passkeys removed; backup codes go with them.")
    next: str = Field(description="What happens now, to tell the user.")


async def reset_user_mfa(ctx: ToolContext, args: ResetUserMfaInput) -> ResetUserMfaResult:
    """Remove a user's second factors after the user confirmed it."""
    tenant_id = ctx.actor.tenant_id

    def question() -> str:
        user = ctx.core.tenant_users.get(tenant_id, args.userId)
        return (
            "Remove every second factor (authenticator apps, backup codes) of "
            f"{user.email or user.username or user.id}? They will set one up again at their next sign-in if the "
            "tenant requires MFA."
        )

    await confirm_first(ctx, question, confirmed=args.confirm, tool="resetUserMfa")
    removed = await run_in_threadpool(ctx.core.mfa.reset, tenant_id, args.userId, ctx.actor)
    return ResetUserMfaResult(
        userId=args.userId,
        factorsRemoved=removed,
        next="The user signs in with their first factor; under a required policy they enroll a new factor then.",
    )


TOOLS: list[ToolSpec[Any]] = [
    ToolSpec(
        name="updateMfaPolicy",
        title="Update MFA policy",
        description="Set when users must prove a second factor (off, optional, required), which factors they may use "
        "(totp, email, passkey) and whether a passkey may sign in alone. Only the fields given change.",
        input_model=UpdateMfaPolicyInput,
        output_model=UpdatedSignInExperience,
        handler=update_mfa_policy,
        scope=SCOPE_WRITE,
        toolset="sign_in_experience",
        read_only=False,
        idempotent=True,
        destructive=True,  # factors replaces the list, and a weaker policy applies at once (like updateSignInMethod)
    ),
    ToolSpec(
        name="resetUserMfa",
        title="Reset user MFA",
        description="Remove a user's second factors (authenticator app, backup codes) when they lost them, after the "
        "user you act for confirms; the user enrolls again at their next sign-in.",
        input_model=ResetUserMfaInput,
        output_model=ResetUserMfaResult,
        handler=reset_user_mfa,
        scope=SCOPE_WRITE,
        toolset="users",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
]
