"""Tools for the tenant's sign-in experience: the branding of its hosted sign-in page, how users sign in, and
whether (and how) they can create an account. Updates are partial; the core validates the whole result and refuses
a contradiction with a sentence that says what to change, writing nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from idp_mcp.core.custom_css import MAX_CSS_BYTES
from idp_mcp.core.sign_in_experience import ExperienceUpdate, SignInExperience
from idp_mcp.domain import SCOPE_READ, SCOPE_WRITE, as_utc
from idp_mcp.mcp_server.links import sign_in_preview_url
from idp_mcp.mcp_server.registry import ToolContext, ToolFailure, ToolSpec
from idp_mcp.mcp_server.tools.tenant import NoInput

DarkMode = Literal["on", "off", "auto"]
Identifier = Literal["email", "username"]
# Phone numbers are left out until an SMS connector exists: an agent must not offer what cannot work.
IdentifierInput = Literal["email", "username"]

# --- results --------------------------------------------------------------------------------------------------


class BrandingState(BaseModel):
    displayName: str | None = Field(description="Shown on the page and in emails; null: the tenant's name.")
    logoUrl: str | None
    darkLogoUrl: str | None
    faviconUrl: str | None
    primaryColor: str
    darkPrimaryColor: str | None = Field(description="null: the primary colour is used in dark mode too.")
    darkMode: DarkMode
    customCss: str
    termsOfUseUrl: str | None
    privacyPolicyUrl: str | None


class SignInMethodState(BaseModel):
    identifier: Identifier
    password: bool
    verificationCode: bool = Field(description="A 6-digit code sent by email signs the user in.")


class SignInState(BaseModel):
    methods: list[SignInMethodState] = Field(description="In the order the sign-in page shows them.")
    social: list[str] = Field(
        default_factory=list, description="Connector ids whose 'Continue with …' buttons the page shows, in order."
    )


class SignUpState(BaseModel):
    enabled: bool
    identifiers: list[Identifier] = Field(description="What a new user must give.")
    password: bool = Field(description="Whether a password is set at sign-up.")
    verifyEmail: bool = Field(
        description="Whether the email is confirmed with an emailed code before the account exists."
    )


class AdjustedColour(BaseModel):
    field: Literal["primaryColor", "darkPrimaryColor"] = Field(description="The branding field the colour came from.")
    mode: Literal["light", "dark"] = Field(description="The page mode the adjustment applies to.")
    use: Literal["text", "button"] = Field(
        description="text: links and text in the colour on the page; button: a button filled with it."
    )
    given: str = Field(description="The colour as set; kept in branding.")
    used: str = Field(description="The variant the hosted pages show instead.")
    text: str = Field(description="The foreground of the measured pair.")
    background: str = Field(description="The background of the measured pair.")
    ratio: float = Field(description="WCAG contrast ratio of text on background now (at least 4.5).")


class MfaState(BaseModel):
    policy: Literal["off", "optional", "required"] = Field(
        description="off: only when an app asks (acr_values); optional: users who enrolled; required: everyone."
    )
    factors: list[Literal["totp", "email", "passkey"]] = Field(description="The second factors users may use.")
    passkeyFirst: bool = Field(description="Whether a passkey may be the first factor (passwordless).")


class SignInExperienceInfo(BaseModel):
    version: int = Field(description="Moves by one on every change; 0 is the default, never changed.")
    branding: BrandingState
    signIn: SignInState
    signUp: SignUpState
    mfa: MfaState = Field(description="Multi-factor authentication policy (updateMfaPolicy).")
    emailConnector: bool = Field(description="Whether this server can send email codes (an SMTP connector is set up).")
    previewUrl: str = Field(description="The hosted sign-in page as users will see it; show it to the user.")
    adjusted: list[AdjustedColour] = Field(
        default_factory=list,
        description="Brand colours the hosted pages show as a darker or lighter variant, because as given they "
        "would not reach WCAG AA contrast (4.5:1); empty when every colour is shown as set. Tell the user.",
    )
    updatedAt: datetime | None


class UpdatedSignInExperience(SignInExperienceInfo):
    changed: list[str] = Field(description="The fields that changed, e.g. branding.logoUrl; empty when none did.")
    summary: str = Field(description="What changed, in a sentence to tell the user.")


def _info(ctx: ToolContext, experience: SignInExperience) -> dict[str, Any]:
    return {
        **experience.document(),
        "version": experience.version,
        "emailConnector": ctx.core.sign_in_experiences.email_connector,
        "previewUrl": sign_in_preview_url(ctx.settings, experience.tenant_id),
        "adjusted": [adjustment.document() for adjustment in experience.branding.colours().adjusted],
        "updatedAt": as_utc(experience.updated_at) if experience.updated_at else None,
    }


def _adjusted_sentence(adjusted: list[dict[str, Any]]) -> str:
    parts = [
        f"{item['field']} {item['given']} as {item['used']} for {'text' if item['use'] == 'text' else 'buttons'} in "
        f"{item['mode']} mode ({item['ratio']}:1)"
        for item in adjusted
    ]
    return " For WCAG AA contrast the pages show " + "; ".join(parts) + "." if parts else ""


def updated_experience(ctx: ToolContext, update: ExperienceUpdate) -> UpdatedSignInExperience:
    """The result of every tool that changes the experience."""
    info = _info(ctx, update.experience)
    summary = update.summary + _adjusted_sentence(info["adjusted"]) if update.changed else update.summary
    return UpdatedSignInExperience(**info, changed=list(update.changed), summary=summary)


# --- getSignInExperience --------------------------------------------------------------------------------------


async def get_sign_in_experience(ctx: ToolContext, _: NoInput) -> SignInExperienceInfo:
    """The tenant's sign-in experience as it is now."""
    experience = await run_in_threadpool(ctx.core.sign_in_experiences.get, ctx.actor.tenant_id)
    return SignInExperienceInfo(**_info(ctx, experience))


# --- updateBranding -------------------------------------------------------------------------------------------


class UpdateBrandingInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    displayName: str | None = Field(
        default=None, max_length=64, description="Name on the page and in emails; null: the tenant's name."
    )
    logoUrl: str | None = Field(default=None, max_length=2048, description="https URL of the logo; null removes it.")
    darkLogoUrl: str | None = Field(
        default=None, max_length=2048, description="https URL of a logo for dark backgrounds; null removes it."
    )
    faviconUrl: str | None = Field(default=None, max_length=2048, description="https URL of the favicon.")
    primaryColor: str | None = Field(
        default=None,
        max_length=16,
        description="Buttons and links, #rgb or #rrggbb; null: the default colour. Kept as given; where it would not "
        "reach WCAG AA contrast the page shows the nearest variant that does (see adjusted in the result).",
    )
    darkPrimaryColor: str | None = Field(
        default=None, max_length=16, description="The primary colour in dark mode; null: primaryColor."
    )
    darkMode: DarkMode | None = Field(
        default=None, description="on: always dark; off: always light; auto: follow the device (the default)."
    )
    customCss: str | None = Field(
        default=None,
        max_length=MAX_CSS_BYTES,
        description=f"Plain CSS rules, at most {MAX_CSS_BYTES} bytes: no @-rules, url(), strings, escapes or script. "
        "Null or '' removes it. Prefer the colour fields; the page's classes may change.",
    )
    termsOfUseUrl: str | None = Field(default=None, max_length=2048, description="https URL of the terms of use.")
    privacyPolicyUrl: str | None = Field(default=None, max_length=2048, description="https URL of the privacy policy.")


async def update_branding(ctx: ToolContext, args: UpdateBrandingInput) -> UpdatedSignInExperience:
    """Change the branding fields given (null resets one)."""
    changes = args.model_dump(exclude_unset=True)
    if not changes:
        raise ToolFailure(f"Give at least one field to change: {', '.join(UpdateBrandingInput.model_fields)}.")
    update = await run_in_threadpool(
        ctx.core.sign_in_experiences.update_branding, ctx.actor.tenant_id, changes, ctx.actor
    )
    return updated_experience(ctx, update)


# --- updateSignInMethod ---------------------------------------------------------------------------------------


class SignInMethodInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identifier: IdentifierInput = Field(
        description="What the user types: email or username (phone numbers are not supported)."
    )
    password: bool = Field(default=False, description="The user proves it with a password.")
    verificationCode: bool = Field(
        default=False, description="The user proves it with a 6-digit code sent by email (email only; needs SMTP)."
    )


class UpdateSignInMethodInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    methods: list[SignInMethodInput] | None = Field(
        default=None,
        max_length=3,
        description="The complete list of sign-in methods, in the order the page shows them; it replaces the "
        "current list. Leave it out to keep the current methods.",
    )
    social: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None,
        max_length=10,
        description="Connector ids (listConnectors) whose 'Continue with …' buttons the page shows, in this order; "
        "replaces the current list, [] removes every button. Leave it out to keep the current buttons.",
    )


async def update_sign_in_method(ctx: ToolContext, args: UpdateSignInMethodInput) -> UpdatedSignInExperience:
    """Replace the ordered list of sign-in methods and/or of connector buttons."""
    changes: dict[str, Any] = {}
    if args.methods is not None:
        changes["methods"] = [method.model_dump() for method in args.methods]
    if args.social is not None:
        changes["social"] = list(args.social)
    update = await run_in_threadpool(
        ctx.core.sign_in_experiences.update_sign_in, ctx.actor.tenant_id, changes, ctx.actor
    )
    return updated_experience(ctx, update)


# --- updateSignUpMethod ---------------------------------------------------------------------------------------


class UpdateSignUpMethodInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = Field(default=None, description="Whether the sign-in page offers 'Create account'.")
    identifiers: list[IdentifierInput] | None = Field(
        default=None, max_length=2, description="What a new user must give: ['email'], ['username'] or both."
    )
    password: bool | None = Field(default=None, description="Whether a new user sets a password.")
    verifyEmail: bool | None = Field(
        default=None, description="Whether the email is confirmed with an emailed code before the account exists."
    )


async def update_sign_up_method(ctx: ToolContext, args: UpdateSignUpMethodInput) -> UpdatedSignInExperience:
    """Change the sign-up fields given; the others stay as they are."""
    changes = args.model_dump(exclude_none=True)
    if not changes:
        raise ToolFailure("Give at least one field to change: enabled, identifiers, password or verifyEmail.")
    update = await run_in_threadpool(
        ctx.core.sign_in_experiences.update_sign_up, ctx.actor.tenant_id, changes, ctx.actor
    )
    return updated_experience(ctx, update)


TOOLS: list[ToolSpec[Any]] = [
    ToolSpec(
        name="getSignInExperience",
        title="Get sign-in experience",
        description="Read the tenant's sign-in experience: branding, sign-in methods, sign-up, MFA policy, its version "
        "and a preview URL of the hosted sign-in page. Call it before changing any of them.",
        input_model=NoInput,
        output_model=SignInExperienceInfo,
        handler=get_sign_in_experience,
        scope=SCOPE_READ,
        toolset="sign_in_experience",
        read_only=True,
    ),
    ToolSpec(
        name="updateBranding",
        title="Update branding",
        description="Change how the hosted sign-in page looks: display name, logos, favicon, colours, dark mode, "
        "custom CSS, terms and privacy links. Only the fields given change (null resets one), a colour too faint to "
        "read is shown as its nearest WCAG AA variant (listed in adjusted), and the result has a previewUrl to show "
        "the user.",
        input_model=UpdateBrandingInput,
        output_model=UpdatedSignInExperience,
        handler=update_branding,
        scope=SCOPE_WRITE,
        toolset="sign_in_experience",
        read_only=False,
        idempotent=True,
    ),
    ToolSpec(
        name="updateSignInMethod",
        title="Update sign-in methods",
        description="Set how users sign in: the identifiers (email, username), how each is proven (password, a "
        "code sent by email), their order, and the 'Continue with …' buttons of connectors (social). Each list given "
        "replaces the current one, and a contradiction is refused without changing anything.",
        input_model=UpdateSignInMethodInput,
        output_model=UpdatedSignInExperience,
        handler=update_sign_in_method,
        scope=SCOPE_WRITE,
        toolset="sign_in_experience",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
    ToolSpec(
        name="updateSignUpMethod",
        title="Update sign-up",
        description="Turn self-service sign-up on or off and choose what it asks for: identifiers, a password, and "
        "whether the email is confirmed with a code. Only the fields given change.",
        input_model=UpdateSignUpMethodInput,
        output_model=UpdatedSignInExperience,
        handler=update_sign_up_method,
        scope=SCOPE_WRITE,
        toolset="sign_in_experience",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
]
