"""Tools for connectors: the upstream identity providers (Google, Microsoft, GitHub, GitLab, any OpenID provider,
or an OAuth 2.0 provider with explicit endpoints) the tenant's users may sign in with. No result ever carries the
client secret: a person sets it in the console at ``secretUrl``; the chat never sees it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from idp_mcp.core.connectors import PRESETS, Connector, ConnectorChanges, ConnectorInput
from idp_mcp.domain import SCOPE_READ, SCOPE_WRITE
from idp_mcp.mcp_server.links import connector_secret_url
from idp_mcp.mcp_server.registry import ToolContext, ToolFailure, ToolSpec, confirm_field, confirm_first
from idp_mcp.mcp_server.tools.tenant import NoInput
from idp_mcp.oauth.upstream import UpstreamSignIn, connector_callback_url

Kind = Literal["oidc", "oauth2"]
PresetName = Literal["google", "microsoft", "github", "gitlab"]
TokenAuth = Literal["client_secret_basic", "client_secret_post", "none"]
ConnectorId = Annotated[
    str, Field(min_length=1, max_length=64, description="The connector's id, from listConnectors or createConnector.")
]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
Domain = Annotated[str, Field(min_length=1, max_length=253)]
Scope = Annotated[str, Field(min_length=1, max_length=128)]
ClaimName = Annotated[str, Field(min_length=1, max_length=64)]


class Endpoints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    authorization: Url | None = Field(default=None, description="The provider's authorization endpoint (https).")
    token: Url | None = Field(default=None, description="The provider's token endpoint (https).")
    userinfo: Url | None = Field(default=None, description="Where the user's profile is read with the access token.")


class ClaimMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: ClaimName | None = Field(default=None, description="The claim holding the user's stable id (default sub).")
    email: ClaimName | None = Field(default=None, description="The claim holding the email (default email).")
    emailVerified: ClaimName | None = Field(
        default=None, description="The claim saying the email is verified (default email_verified)."
    )
    name: ClaimName | None = Field(default=None, description="The claim holding the display name (default name).")
    picture: ClaimName | None = Field(default=None, description="The claim holding a picture URL (default picture).")


# --- results --------------------------------------------------------------------------------------------------


class ConnectorInfo(BaseModel):
    connectorId: str
    kind: Kind
    preset: str | None
    name: str
    label: str = Field(description="The button says 'Continue with <label>'.")
    clientId: str
    issuer: str | None = Field(description="oidc: the provider's issuer; endpoints come from its discovery document.")
    endpoints: dict[str, str] = Field(description="oauth2: authorization, token and userinfo endpoints.")
    claims: dict[str, str] = Field(description="oauth2: which upstream claim gives id, email, name, picture.")
    scopes: list[str]
    emailDomains: list[str] = Field(description="Email domains sent straight to this provider (enterprise SSO).")
    linkByEmail: bool = Field(
        description="Whether a first sign-in with an email the provider says is verified joins the existing user "
        "with that email."
    )
    tokenAuth: TokenAuth
    secretSet: bool = Field(description="Whether the client secret has been set in the console.")
    secretLastFour: str | None = Field(description="The last four characters of the secret, to tell secrets apart.")
    waitingForSecret: bool = Field(description="True until a person sets the client secret at secretUrl.")
    callbackUrl: str = Field(description="Register exactly this redirect (callback) URL at the provider.")
    createdAt: datetime | None


class ConnectorWithLink(ConnectorInfo):
    secretUrl: str = Field(
        description="A console page (for a signed-in administrator of this tenant, valid 30 minutes) where a person "
        "pastes the client secret. Never ask for the secret in the chat."
    )
    next: str = Field(description="What to do next.")


class ConnectorList(BaseModel):
    connectors: list[ConnectorInfo]
    presets: list[str] = Field(description="Presets createConnector accepts.")


class UpdatedConnector(ConnectorWithLink):
    changed: list[str] = Field(description="The fields that changed; empty when the values were the same already.")


class DeletedConnector(BaseModel):
    connectorId: str
    name: str
    deleted: bool
    identitiesRemoved: int = Field(description="How many users' identities at this provider were removed.")


class ConnectorTest(BaseModel):
    connectorId: str
    ok: bool
    problems: list[str] = Field(description="What is wrong, each with what to fix; empty when all is well.")
    authorizationEndpoint: str | None
    tokenEndpoint: str | None
    userinfoEndpoint: str | None
    jwksUri: str | None
    signingKeys: int = Field(description="How many keys the provider's JWKS holds (oidc).")
    callbackUrl: str


class UnlinkedIdentity(BaseModel):
    userId: str
    connectorId: str
    removed: bool


def _info(ctx: ToolContext, connector: Connector) -> dict[str, Any]:
    return {
        "connectorId": connector.id, "kind": connector.kind, "preset": connector.preset, "name": connector.name,
        "label": connector.label, "clientId": connector.client_id, "issuer": connector.issuer,
        "endpoints": connector.endpoints, "claims": connector.claims, "scopes": list(connector.scopes),
        "emailDomains": list(connector.email_domains), "linkByEmail": connector.link_by_email,
        "tokenAuth": connector.token_auth, "secretSet": connector.has_secret,
        "secretLastFour": connector.secret_last_four, "waitingForSecret": connector.waiting_for_secret,
        "callbackUrl": connector_callback_url(ctx.settings, connector.tenant_id, connector.id),
        "createdAt": connector.created_at,
    }  # fmt: skip


async def _with_link(ctx: ToolContext, connector: Connector) -> dict[str, Any]:
    expires, signature = await run_in_threadpool(ctx.core.connectors.secret_link, connector.tenant_id, connector.id)
    url = connector_secret_url(ctx.settings, connector.tenant_id, connector.id, expires, signature)
    callback = connector_callback_url(ctx.settings, connector.tenant_id, connector.id)
    steps = [f"Register the callback URL {callback} at the provider (see getInstructions social-sign-in)."]
    if connector.waiting_for_secret:
        steps.append(
            f"Ask the user to open {url} in their browser and paste the client secret there (never in this chat); "
            "the link works for 30 minutes."
        )
    steps.append("Then call testConnector, and updateSignInMethod with social: [connectorId] to show its button.")
    if connector.email_domains:
        steps.append("Users typing an address of its email domains go straight to this provider.")
    return {**_info(ctx, connector), "secretUrl": url, "next": " ".join(steps)}


# --- createConnector --------------------------------------------------------------------------------------------


class CreateConnectorInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind | None = Field(
        default=None,
        description="oidc: an OpenID provider (give issuer); oauth2: a plain OAuth 2.0 provider (give endpoints). "
        "Implied by a preset.",
    )
    preset: PresetName | None = Field(
        default=None,
        description="Fills in endpoints, scopes, claims and the button: google, microsoft, github, gitlab.",
    )
    name: str = Field(
        min_length=1, max_length=128, description="A name for administrators, e.g. 'Google' or 'Acme SSO'."
    )
    clientId: str = Field(min_length=1, max_length=512, description="The client id the provider gave you.")
    issuer: Url | None = Field(
        default=None,
        description="oidc: the provider's issuer URL (https). For microsoft, https://login.microsoftonline.com/"
        "<directory id>/v2.0 limits sign-in to one directory (default: common).",
    )
    endpoints: Endpoints | None = Field(default=None, description="oauth2: the provider's endpoints.")
    claims: ClaimMapping | None = Field(default=None, description="oauth2: where id, email, name and picture are.")
    scopes: list[Scope] | None = Field(default=None, max_length=20, description="Scopes to ask for (preset default).")
    emailDomains: list[Domain] | None = Field(
        default=None, max_length=50, description="Enterprise SSO: email domains (acme.com) that go to this provider."
    )
    linkByEmail: bool = Field(
        default=False,
        description="Join a first sign-in to the existing user with the same email, only when the provider says "
        "the email is verified. Turn on only for providers you trust to verify emails.",
    )
    tokenAuth: TokenAuth | None = Field(
        default=None,
        description="How the client authenticates at the token endpoint; none for a public (PKCE-only) client that "
        "has no secret.",
    )


async def create_connector(ctx: ToolContext, args: CreateConnectorInput) -> ConnectorWithLink:
    """Create a connector (without its secret) and return where a person sets the secret."""
    given = ConnectorInput(
        kind=args.kind, preset=args.preset, name=args.name, client_id=args.clientId, issuer=args.issuer,
        endpoints=args.endpoints.model_dump(exclude_none=True) if args.endpoints else None,
        claims=args.claims.model_dump(exclude_none=True) if args.claims else None,
        scopes=args.scopes, email_domains=args.emailDomains, link_by_email=args.linkByEmail,
        token_auth=args.tokenAuth,
    )  # fmt: skip
    connector = await run_in_threadpool(ctx.core.connectors.create, ctx.actor.tenant_id, given, ctx.actor)
    result = await _with_link(ctx, connector)
    if connector.waiting_for_secret and ctx.open_url is not None:
        # The client can send its user to the page itself (URL-mode elicitation): the secret never enters the chat.
        opened = await ctx.open_url(
            f"Paste the client secret of the connector '{connector.name}' on this page (for a signed-in administrator "
            "of this tenant; the link works for 30 minutes).",
            result["secretUrl"],
        )
        if opened:
            result["next"] = "The user was sent to secretUrl to paste the client secret. " + result["next"]
    return ConnectorWithLink(**result)


# --- listConnectors, getConnector ---------------------------------------------------------------------------------


async def list_connectors(ctx: ToolContext, _: NoInput) -> ConnectorList:
    """Every connector of the tenant."""
    connectors = await run_in_threadpool(ctx.core.connectors.list, ctx.actor.tenant_id)
    return ConnectorList(connectors=[ConnectorInfo(**_info(ctx, c)) for c in connectors], presets=list(PRESETS))


class ConnectorRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connectorId: ConnectorId


async def get_connector(ctx: ToolContext, args: ConnectorRef) -> ConnectorWithLink:
    """One connector, with a fresh secretUrl."""
    connector = await run_in_threadpool(ctx.core.connectors.get, ctx.actor.tenant_id, args.connectorId)
    return ConnectorWithLink(**await _with_link(ctx, connector))


# --- updateConnector ----------------------------------------------------------------------------------------------


class UpdateConnectorInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connectorId: ConnectorId
    name: str | None = Field(default=None, min_length=1, max_length=128)
    clientId: str | None = Field(default=None, min_length=1, max_length=512)
    issuer: Url | None = Field(default=None, description="oidc only.")
    endpoints: Endpoints | None = Field(default=None, description="oauth2 only; the endpoints given replace those.")
    claims: ClaimMapping | None = Field(default=None, description="The mappings given replace those.")
    scopes: list[Scope] | None = Field(default=None, max_length=20, description="The complete new list.")
    emailDomains: list[Domain] | None = Field(default=None, max_length=50, description="The complete new list.")
    linkByEmail: bool | None = None
    tokenAuth: TokenAuth | None = None


async def update_connector(ctx: ToolContext, args: UpdateConnectorInput) -> UpdatedConnector:
    """Change the fields given; the others stay as they are."""
    given = args.model_dump(exclude_unset=True, exclude_none=True)
    if not set(given) - {"connectorId"}:
        raise ToolFailure(
            "Give at least one field to change: name, clientId, issuer, endpoints, claims, scopes, emailDomains, "
            "linkByEmail or tokenAuth. The secret is changed by a person at secretUrl (getConnector)."
        )
    changes = ConnectorChanges(
        name=args.name, client_id=args.clientId, issuer=args.issuer,
        endpoints=args.endpoints.model_dump(exclude_none=True) if args.endpoints else None,
        claims=args.claims.model_dump(exclude_none=True) if args.claims else None,
        scopes=args.scopes, email_domains=args.emailDomains, link_by_email=args.linkByEmail,
        token_auth=args.tokenAuth,
    )  # fmt: skip
    connector, changed = await run_in_threadpool(
        ctx.core.connectors.update, ctx.actor.tenant_id, args.connectorId, changes, ctx.actor
    )
    return UpdatedConnector(**await _with_link(ctx, connector), changed=changed)


# --- deleteConnector ----------------------------------------------------------------------------------------------


class DeleteConnectorInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connectorId: ConnectorId
    confirm: bool = confirm_field()


async def delete_connector(ctx: ToolContext, args: DeleteConnectorInput) -> DeletedConnector:
    """Delete a connector after the user confirmed it."""

    def question() -> str:
        connector = ctx.core.connectors.get(ctx.actor.tenant_id, args.connectorId)
        return (
            f"Delete the connector '{connector.name}' (id {connector.id})? Its button disappears, and users who "
            "signed in only through it can no longer sign in."
        )

    await confirm_first(ctx, question, confirmed=args.confirm, tool="deleteConnector")
    deleted, identities = await run_in_threadpool(
        ctx.core.connectors.delete, ctx.actor.tenant_id, args.connectorId, ctx.actor
    )
    return DeletedConnector(connectorId=deleted.id, name=deleted.name, deleted=True, identitiesRemoved=identities)


# --- testConnector ------------------------------------------------------------------------------------------------


async def run_connector_test(ctx: ToolContext, args: ConnectorRef) -> ConnectorTest:
    """Fetch the connector's discovery document and keys now and report what is wrong."""
    connector = await run_in_threadpool(ctx.core.connectors.get, ctx.actor.tenant_id, args.connectorId)
    # Without the discovery and key caches: the test must see the provider as it is now. The app's one upstream
    # client (its caps on requests in flight count these too).
    upstream = UpstreamSignIn(ctx.upstream, allow_http_loopback=ctx.settings.cimd_allow_private_addresses, cache=False)
    report = await upstream.test(connector)
    endpoints = report.endpoints
    return ConnectorTest(
        connectorId=connector.id, ok=report.ok, problems=report.problems,
        authorizationEndpoint=endpoints.authorization if endpoints else None,
        tokenEndpoint=endpoints.token if endpoints else None,
        userinfoEndpoint=endpoints.userinfo if endpoints else None,
        jwksUri=endpoints.jwks_uri if endpoints else None, signingKeys=report.keys,
        callbackUrl=connector_callback_url(ctx.settings, connector.tenant_id, connector.id),
    )  # fmt: skip


# --- unlinkIdentity -----------------------------------------------------------------------------------------------


class UnlinkIdentityInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    userId: Annotated[str, Field(min_length=1, max_length=64, description="The user's id, from listUsers.")]
    connectorId: ConnectorId


async def unlink_identity(ctx: ToolContext, args: UnlinkIdentityInput) -> UnlinkedIdentity:
    """Remove a user's identity at a connector, unless it is their last way to sign in."""
    await run_in_threadpool(ctx.core.connectors.unlink, ctx.actor.tenant_id, args.userId, args.connectorId, ctx.actor)
    return UnlinkedIdentity(userId=args.userId, connectorId=args.connectorId, removed=True)


TOOLS: list[ToolSpec[Any]] = [
    ToolSpec(
        name="createConnector",
        title="Create connector",
        description="Add an upstream identity provider (Google, Microsoft, GitHub, GitLab, any OpenID or OAuth 2.0 "
        "provider) users can sign in with; the answer gives the callbackUrl to register and a secretUrl where a "
        "person sets the client secret.",
        input_model=CreateConnectorInput,
        output_model=ConnectorWithLink,
        handler=create_connector,
        scope=SCOPE_WRITE,
        toolset="connectors",
        read_only=False,
    ),
    ToolSpec(
        name="listConnectors",
        title="List connectors",
        description="List the tenant's connectors (upstream identity providers) with their ids, callback URLs and "
        "whether each still waits for its secret.",
        input_model=NoInput,
        output_model=ConnectorList,
        handler=list_connectors,
        scope=SCOPE_READ,
        toolset="connectors",
        read_only=True,
    ),
    ToolSpec(
        name="getConnector",
        title="Get connector",
        description="Read one connector's settings, its callbackUrl and a fresh secretUrl (never the secret itself).",
        input_model=ConnectorRef,
        output_model=ConnectorWithLink,
        handler=get_connector,
        scope=SCOPE_READ,
        toolset="connectors",
        read_only=True,
    ),
    ToolSpec(
        name="updateConnector",
        title="Update connector",
        description="Change a connector's name, client id, issuer, endpoints, claim mapping, scopes, email domains, "
        "email linking or token authentication; only the fields given change.",
        input_model=UpdateConnectorInput,
        output_model=UpdatedConnector,
        handler=update_connector,
        scope=SCOPE_WRITE,
        toolset="connectors",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
    ToolSpec(
        name="deleteConnector",
        title="Delete connector",
        description="Delete a connector and its users' identities at that provider, after the user confirms. Use it "
        "only when the user asked to remove that sign-in method.",
        input_model=DeleteConnectorInput,
        output_model=DeletedConnector,
        handler=delete_connector,
        scope=SCOPE_WRITE,
        toolset="connectors",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
    ToolSpec(
        name="testConnector",
        title="Test connector",
        description="Fetch a connector's discovery document and keys now and report what is wrong (unreachable, not "
        "https, issuer mismatch, missing endpoints, secret not set).",
        input_model=ConnectorRef,
        output_model=ConnectorTest,
        handler=run_connector_test,
        scope=SCOPE_READ,
        toolset="connectors",
        read_only=True,
    ),
    ToolSpec(
        name="unlinkIdentity",
        title="Unlink identity",
        description="Remove a user's identity at a connector so that provider no longer signs them in; refused when "
        "it is their last way to sign in.",
        input_model=UnlinkIdentityInput,
        output_model=UnlinkedIdentity,
        handler=unlink_identity,
        scope=SCOPE_WRITE,
        toolset="connectors",
        read_only=False,
        idempotent=True,
        destructive=True,
    ),
]
