"""Tools for the tenant's applications (the OAuth clients a developer's software signs users in with) and their
temporary secrets. No tool ever returns a secret it did not just create."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from idp_mcp.core.applications import Application, ApplicationChanges
from idp_mcp.core.secrets import IssuedSecret, ProductionSecretInConsole, SecretInfo
from idp_mcp.domain import SCOPE_READ, SCOPE_WRITE, as_utc
from idp_mcp.mcp_server.links import console_application_url, discovery_url, tenant_issuer
from idp_mcp.mcp_server.registry import ToolContext, ToolFailure, ToolSpec, confirm_field, confirm_first, read_once
from idp_mcp.mcp_server.tools.roles import EffectivePermission, HeldRole, roles_and_permissions
from idp_mcp.mcp_server.tools.tenant import NoInput

ApplicationType = Literal["traditional", "spa", "native", "m2m"]
IdTokenAlg = Literal["ES256", "RS256"]
Uri = Annotated[str, Field(min_length=1, max_length=2000)]
UriList = Annotated[list[Uri], Field(max_length=20)]
ApplicationId = Annotated[
    str, Field(min_length=1, max_length=64, description="The application's id (its client_id), from listApplications.")
]

# --- results --------------------------------------------------------------------------------------------------


class ApplicationInfo(BaseModel):
    applicationId: str
    clientId: str = Field(description="The OAuth client_id the application is configured with (same as the id).")
    name: str
    type: ApplicationType
    description: str
    redirectUris: list[str]
    postLogoutRedirectUris: list[str]
    corsOrigins: list[str]
    idTokenAlg: IdTokenAlg
    thirdParty: bool = Field(description="Whether users see a consent screen for this app.")
    issuer: str = Field(description="The OpenID Connect issuer the application trusts.")
    discoveryUrl: str = Field(description="The OpenID Connect discovery document; most libraries need only this.")
    consoleUrl: str = Field(description="The application's page in the web console (production secrets).")
    createdAt: datetime | None


class TemporarySecret(BaseModel):
    value: str = Field(description="The client secret. Shown once: store it in an environment variable, never in code.")
    expiresAt: datetime = Field(description="When the secret stops working (ISO 8601, UTC).")


class CreatedApplication(ApplicationInfo):
    temporarySecret: TemporarySecret | None = Field(
        description="For traditional and m2m applications only; public clients (spa, native) have no secret."
    )
    next: str = Field(description="What to do next.")


class SecretSummary(BaseModel):
    secretId: str = Field(description="The secret's id: name it to revokeSecret (temporary ones).")
    kind: Literal["temporary", "production"]
    lastFour: str = Field(description="The last four characters, to tell secrets apart.")
    createdAt: datetime
    expiresAt: datetime | None = Field(description="When it stops working; null for production secrets.")
    revokedAt: datetime | None
    active: bool = Field(description="Whether the token endpoint accepts it now (not revoked, not expired).")


class ApplicationWithSecrets(ApplicationInfo):
    secrets: list[SecretSummary] = Field(description="The application's secrets, without their values.")
    roles: list[HeldRole] = Field(description="Its m2m roles (m2m applications only; others act for their users).")
    permissions: list[EffectivePermission] = Field(description="The API permissions its m2m roles grant.")


class ApplicationList(BaseModel):
    applications: list[ApplicationInfo]


class UpdatedApplication(ApplicationInfo):
    changed: list[str] = Field(description="The fields that changed; empty when the values were the same already.")


class DeletedApplication(BaseModel):
    applicationId: str
    name: str
    deleted: bool


class CreatedSecret(TemporarySecret):
    applicationId: str
    next: str = Field(description="What to do next.")


class RevokedSecret(SecretSummary):
    applicationId: str
    alreadyRevoked: bool = Field(description="True when it had been revoked before: nothing changed.")


class RevokedSecrets(BaseModel):
    applicationId: str
    revoked: int = Field(description="How many temporary secrets stopped working now.")


def _info(ctx: ToolContext, app: Application) -> dict[str, Any]:
    tenant_id = ctx.actor.tenant_id
    return {
        "applicationId": app.id,
        "clientId": app.id,
        "name": app.name,
        "type": app.type,
        "description": app.description,
        "redirectUris": list(app.redirect_uris),
        "postLogoutRedirectUris": list(app.post_logout_redirect_uris),
        "corsOrigins": list(app.cors_origins),
        "idTokenAlg": app.id_token_alg,
        "thirdParty": app.third_party,
        "issuer": tenant_issuer(ctx.settings, tenant_id),
        "discoveryUrl": discovery_url(ctx.settings, tenant_id),
        "consoleUrl": console_application_url(ctx.settings, tenant_id, app.id),
        "createdAt": as_utc(app.created_at) if app.created_at else None,
    }


def _secret_hint(ctx: ToolContext, app_id: str, secret: IssuedSecret) -> str:
    expires = f"{as_utc(secret.expires_at):%Y-%m-%dT%H:%M:%SZ}" if secret.expires_at else "soon"
    return (
        "Put the temporary secret in the environment variable IDP_CLIENT_SECRET (the name every guide reads), e.g. "
        "in a .env file that is not committed, never in source code or chat. "
        f"It stops working at {expires}; call createTemporarySecret for another while developing. "
        "For production, a person creates a production secret in the console: "
        f"{console_application_url(ctx.settings, ctx.actor.tenant_id, app_id)}"
    )


def _first_steps(app: Application) -> str:
    if app.type == "m2m":
        return (
            "Your service gets access tokens with the client_credentials grant at the token_endpoint of the "
            "discovery document, authenticating with the clientId and the secret (HTTP Basic). "
        )
    if app.confidential:
        return "Configure your OpenID Connect library with the discoveryUrl, the clientId and a redirect URI. "
    return (
        "This is a public client: it has no secret and uses the authorization code flow with PKCE. Configure your "
        "OpenID Connect library with the discoveryUrl, the clientId and one of the redirectUris."
    )


def _temporary(secret: IssuedSecret) -> TemporarySecret:
    assert secret.expires_at is not None  # temporary secrets always expire
    return TemporarySecret(value=secret.value, expiresAt=as_utc(secret.expires_at))


# --- createApplication ----------------------------------------------------------------------------------------


class CreateApplicationInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128, description="A display name users see when they sign in.")
    type: ApplicationType = Field(
        description="traditional: a server-side web app (has a secret); spa: a browser app; native: a mobile or "
        "desktop app; m2m: a backend service calling APIs without users (client credentials, has a secret)."
    )
    description: str = Field(default="", max_length=1000, description="What the application is, for administrators.")
    redirectUris: UriList = Field(
        default_factory=list,
        description="Where users return after signing in: exact URLs, https (http only on loopback). Required for "
        "every type but m2m, which must have none.",
    )
    postLogoutRedirectUris: UriList = Field(
        default_factory=list, description="Where users may return after signing out."
    )
    corsOrigins: UriList = Field(
        default_factory=list,
        description="For spa only: origins (https://host[:port]) allowed to call the token endpoint.",
    )
    idTokenAlg: IdTokenAlg = Field(default="ES256", description="How ID tokens are signed; RS256 for older libraries.")
    thirdParty: bool = Field(
        default=False,
        description="True for an app built by someone else (a partner): users then see a consent screen naming it.",
    )


async def create_application(ctx: ToolContext, args: CreateApplicationInput) -> CreatedApplication:
    """Create an application, and a temporary secret for confidential ones (one use case, one transaction)."""
    created = await run_in_threadpool(
        lambda: ctx.core.applications.create_with_secret(
            ctx.actor.tenant_id,
            name=args.name,
            app_type=args.type,
            actor=ctx.actor,
            description=args.description,
            redirect_uris=args.redirectUris,
            post_logout_redirect_uris=args.postLogoutRedirectUris,
            cors_origins=args.corsOrigins,
            id_token_alg=args.idTokenAlg,
            third_party=args.thirdParty,
        )
    )
    app, secret = created.application, created.temporary_secret
    if secret is None:
        return CreatedApplication(**_info(ctx, app), temporarySecret=None, next=_first_steps(app))
    hint = _first_steps(app) + _secret_hint(ctx, app.id, secret)
    return CreatedApplication(**_info(ctx, app), temporarySecret=_temporary(secret), next=hint)


# --- listApplications, getApplication -------------------------------------------------------------------------


async def list_applications(ctx: ToolContext, _: NoInput) -> ApplicationList:
    """Every application of the tenant, without secrets."""
    apps = await run_in_threadpool(ctx.core.applications.list, ctx.actor.tenant_id)
    return ApplicationList(applications=[ApplicationInfo(**_info(ctx, app)) for app in apps])


class ApplicationRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    applicationId: ApplicationId


async def get_application(ctx: ToolContext, args: ApplicationRef) -> ApplicationWithSecrets:
    """One application with its secrets described (id, kind, last four characters, dates), never their values."""
    tenant_id = ctx.actor.tenant_id

    def read() -> tuple[Application, list[Any], Any]:
        app = ctx.core.applications.get(tenant_id, args.applicationId)
        secrets = ctx.core.secrets.list(tenant_id, app.id) if app.confidential else []
        return app, secrets, ctx.core.roles.of_subject(tenant_id, "application", app.id)

    app, secrets, held = await read_once(ctx, read)
    return ApplicationWithSecrets(
        **_info(ctx, app),
        **roles_and_permissions(held),
        secrets=[_summary(secret) for secret in secrets],
    )


def _summary(secret: SecretInfo) -> dict[str, Any]:
    return {
        "secretId": secret.id, "kind": secret.kind, "lastFour": secret.last_four, "createdAt": secret.created_at,
        "expiresAt": secret.expires_at, "revokedAt": secret.revoked_at, "active": secret.active,
    }  # fmt: skip


# --- updateApplication ----------------------------------------------------------------------------------------


class UpdateApplicationInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    applicationId: ApplicationId
    name: str | None = Field(default=None, min_length=1, max_length=128, description="A new display name.")
    description: str | None = Field(default=None, max_length=1000, description="A new description.")
    redirectUris: UriList | None = Field(default=None, description="The complete new list of redirect URIs.")
    postLogoutRedirectUris: UriList | None = Field(
        default=None, description="The complete new list of post-logout redirect URIs."
    )
    corsOrigins: UriList | None = Field(default=None, description="The complete new list of CORS origins (spa only).")
    idTokenAlg: IdTokenAlg | None = Field(default=None, description="ES256 or RS256.")


# The core's field names, as this tool's arguments name them.
_ARGUMENT_NAMES = {
    "name": "name", "description": "description", "redirect_uris": "redirectUris",
    "post_logout_redirect_uris": "postLogoutRedirectUris", "cors_origins": "corsOrigins",
    "id_token_alg": "idTokenAlg",
}  # fmt: skip


async def update_application(ctx: ToolContext, args: UpdateApplicationInput) -> UpdatedApplication:
    """Change the fields given; the others stay as they are."""
    given = args.model_dump(exclude_unset=True, exclude_none=True)
    if not set(given) - {"applicationId"}:
        raise ToolFailure(
            "Give at least one field to change: name, description, redirectUris, postLogoutRedirectUris, "
            "corsOrigins or idTokenAlg."
        )
    changes = ApplicationChanges(
        name=args.name,
        description=args.description,
        redirect_uris=args.redirectUris,
        post_logout_redirect_uris=args.postLogoutRedirectUris,
        cors_origins=args.corsOrigins,
        id_token_alg=args.idTokenAlg,
    )
    update = await run_in_threadpool(
        ctx.core.applications.revise, ctx.actor.tenant_id, args.applicationId, changes, ctx.actor
    )
    return UpdatedApplication(**_info(ctx, update.after), changed=[_ARGUMENT_NAMES[key] for key in update.changed])


# --- deleteApplication ----------------------------------------------------------------------------------------


class DeleteApplicationInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    applicationId: ApplicationId
    confirm: bool = confirm_field()


async def delete_application(ctx: ToolContext, args: DeleteApplicationInput) -> DeletedApplication:
    """Delete an application after the user confirmed it."""
    tenant_id = ctx.actor.tenant_id

    def question() -> str:
        app = ctx.core.applications.get(tenant_id, args.applicationId)
        return (
            f"Delete the application '{app.name}' ({app.type}, id {app.id})? Software using it can no longer sign "
            "users in and every token it holds is revoked."
        )

    await confirm_first(ctx, question, confirmed=args.confirm, tool="deleteApplication")
    deleted = await run_in_threadpool(ctx.core.applications.delete, tenant_id, args.applicationId, ctx.actor)
    return DeletedApplication(applicationId=deleted.id, name=deleted.name, deleted=True)


# --- temporary secrets ----------------------------------------------------------------------------------------


async def create_temporary_secret(ctx: ToolContext, args: ApplicationRef) -> CreatedSecret:
    """Issue a temporary secret for a confidential application."""
    secret = await run_in_threadpool(
        ctx.core.secrets.create, ctx.actor.tenant_id, args.applicationId, "temporary", ctx.actor
    )
    temporary = _temporary(secret)
    return CreatedSecret(
        applicationId=args.applicationId,
        value=temporary.value,
        expiresAt=temporary.expiresAt,
        next=_secret_hint(ctx, args.applicationId, secret),
    )


async def revoke_temporary_secrets(ctx: ToolContext, args: ApplicationRef) -> RevokedSecrets:
    """Revoke every temporary secret of an application now."""
    count = await run_in_threadpool(
        ctx.core.secrets.revoke_temporary, ctx.actor.tenant_id, args.applicationId, ctx.actor
    )
    return RevokedSecrets(applicationId=args.applicationId, revoked=count)


class RevokeSecretInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    applicationId: ApplicationId
    secretId: str = Field(
        min_length=1, max_length=32, description="The secret's id, from getApplication (never the secret's value)."
    )


async def revoke_secret(ctx: ToolContext, args: RevokeSecretInput) -> RevokedSecret:
    """Revoke one temporary secret by id; a production secret is refused with the console link."""
    tenant_id = ctx.actor.tenant_id
    try:
        revoked = await run_in_threadpool(
            partial(ctx.core.secrets.revoke, production=False), tenant_id, args.applicationId, args.secretId, ctx.actor
        )
    except ProductionSecretInConsole:
        raise ToolFailure(
            f"Secret '{args.secretId}' is a production secret: tools cannot revoke it. Ask the person you act for to "
            f"revoke it in the web console (after putting a new one in place, if it is in use): "
            f"{console_application_url(ctx.settings, tenant_id, args.applicationId)}"
        ) from None
    return RevokedSecret(
        **_summary(revoked.secret), applicationId=args.applicationId, alreadyRevoked=revoked.already_revoked
    )


TOOLS: list[ToolSpec[Any]] = [
    ToolSpec(
        name="createApplication",
        title="Create application",
        description="Register an application that signs users in (traditional, spa, native) or calls APIs on its "
        "own (m2m). Returns its client id, discovery URL and, for traditional and m2m, a temporary secret.",
        input_model=CreateApplicationInput,
        output_model=CreatedApplication,
        handler=create_application,
        scope=SCOPE_WRITE,
        toolset="applications",
        read_only=False,
    ),
    ToolSpec(
        name="listApplications",
        title="List applications",
        description="List the tenant's applications with their settings and ids. Use it to find an application "
        "before reading or changing it.",
        input_model=NoInput,
        output_model=ApplicationList,
        handler=list_applications,
        scope=SCOPE_READ,
        toolset="applications",
        read_only=True,
    ),
    ToolSpec(
        name="getApplication",
        title="Get application",
        description="Read one application's settings, a description of its secrets (never their values) and, for "
        "m2m applications, its roles and API permissions.",
        input_model=ApplicationRef,
        output_model=ApplicationWithSecrets,
        handler=get_application,
        scope=SCOPE_READ,
        toolset="applications",
        read_only=True,
    ),
    ToolSpec(
        name="updateApplication",
        title="Update application",
        description="Change an application's name, description, redirect URIs, post-logout redirect URIs, CORS "
        "origins or ID token algorithm. Lists replace the old lists entirely.",
        input_model=UpdateApplicationInput,
        output_model=UpdatedApplication,
        handler=update_application,
        scope=SCOPE_WRITE,
        toolset="applications",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
    ToolSpec(
        name="deleteApplication",
        title="Delete application",
        description="Delete an application and revoke its secrets and tokens, after the user confirms. Use it only "
        "when the user asked to remove that application.",
        input_model=DeleteApplicationInput,
        output_model=DeletedApplication,
        handler=delete_application,
        scope=SCOPE_WRITE,
        toolset="applications",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
    ToolSpec(
        name="createTemporarySecret",
        title="Create temporary secret",
        description="Issue a client secret that expires within the hour for a traditional or m2m application, for "
        "development. Production secrets are created by a person in the web console.",
        input_model=ApplicationRef,
        output_model=CreatedSecret,
        handler=create_temporary_secret,
        scope=SCOPE_WRITE,
        toolset="applications",
        read_only=False,
    ),
    ToolSpec(
        name="revokeSecret",
        title="Revoke secret",
        description="Make one temporary secret of an application stop working now, by its id from getApplication. "
        "Production secrets are revoked (and rotated) by a person in the web console.",
        input_model=RevokeSecretInput,
        output_model=RevokedSecret,
        handler=revoke_secret,
        scope=SCOPE_WRITE,
        toolset="applications",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
    ToolSpec(
        name="revokeTemporarySecrets",
        title="Revoke temporary secrets",
        description="Make every temporary secret of an application stop working now, for example after one was "
        "exposed. Production secrets are not affected.",
        input_model=ApplicationRef,
        output_model=RevokedSecrets,
        handler=revoke_temporary_secrets,
        scope=SCOPE_WRITE,
        toolset="applications",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
]
