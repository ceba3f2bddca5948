"""The hosted sign-in page of each tenant, and RP-initiated logout. The policy (what the user must do, what
the client gets) lives in the authorization flow; this module renders and relays."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from idp_mcp.core.connectors import Connector, PendingLogin
from idp_mcp.core.mfa import AMR_PASSWORD, PENDING_TTL, MfaDecision, acr_for_request
from idp_mcp.core.sessions import BrowserSession, Interaction
from idp_mcp.core.sign_in import InteractionPage
from idp_mcp.domain import SCOPE_DESCRIPTIONS, SCOPE_OPENID, Tenant, as_utc
from idp_mcp.errors import CsrfFailed, IdpError, InteractionExpired, TenantNotFound
from idp_mcp.oauth.tenants import TenantProvider, TenantProviders
from idp_mcp.web.hosted_experience import NOT_FOUND, ExperienceView
from idp_mcp.web.pages import EXPIRED, MAX_FIELD, Pages, client_host

if TYPE_CHECKING:  # web/mfa.py builds on this module; only the type is needed here
    from idp_mcp.web.mfa import MfaPages

LOGOUT_FIELDS = ("client_id", "post_logout_redirect_uri", "state", "ui_locales")  # carried through confirmation
MAX_LOGOUT_FIELD = 8192  # an id_token_hint is a JWT: longer than the page fields


@dataclass(frozen=True)
class Consent:
    """What the consent page of a third-party application shows."""

    tenant: Tenant
    client_name: str
    scopes: list[str]
    permissions: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class NextStep:
    """Where a signed-in (or just signing-in) browser goes next, decided in one thread hop and one transaction;
    exactly one of ``location`` (a redirect), ``consent``, ``second_factor``, ``error`` (the error page) and
    ``sign_in_error`` (the sign-in page again) is set. ``session``: a session that just started (its cookie to set).
    """

    location: str | None = None
    consent: Consent | None = None
    second_factor: MfaDecision | None = None
    error: IdpError | None = None
    sign_in_error: IdpError | None = None
    session: str | None = None


class HostedPages:
    def __init__(self, pages: Pages, providers: TenantProviders) -> None:
        self.pages = pages
        self.providers = providers
        self.core = pages.core
        self.cookies = pages.cookies
        self.view = ExperienceView(pages)  # the tenant's branding and sign-in methods
        # Set by the connector pages: sends the browser to the provider of an enterprise connector whose domain the
        # email address is of, for the upstream sign-in started in the sign-in's transaction.
        self.home_realm: Callable[[Request, TenantProvider, Connector, PendingLogin], Awaitable[Response]] | None = None
        self.mfa_pages: MfaPages | None = None  # the second-factor pages set themselves here (web/mfa.py)
        # Set by the passkey pages: after a sign-in, where to offer adding a passkey before going on to the application
        # (tenant, interaction, user -> a location, or None); called in the sign-in's thread and transaction.
        self.offer_passkey: Callable[[str, str, str], str | None] | None = None

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/t/{tenant}/interaction/{id}", self.interaction_page, methods=["GET"]),
            Route("/t/{tenant}/sign-in", self.sign_in_submit, methods=["POST"]),
            Route("/t/{tenant}/interaction/{id}/consent", self.consent_submit, methods=["POST"]),
            Route("/t/{tenant}/oidc/end-session", self.end_session, methods=["GET", "POST"]),
        ]

    async def provider(self, request: Request) -> TenantProvider | None:
        try:
            return await run_in_threadpool(self.providers.get, request.path_params["tenant"])
        except TenantNotFound:
            return None

    def interaction_sync(self, provider: TenantProvider, interaction_id: str) -> Interaction | None:
        """The tenant's pending interaction ``interaction_id`` (in the caller's unit of work, if any)."""
        interaction = self.core.sessions.get_interaction(interaction_id[:MAX_FIELD])
        return interaction if interaction and interaction.tenant_id == provider.tenant_id else None

    async def posted(self, request: Request) -> tuple[TenantProvider, dict[str, Any]] | Response:
        """For a POST to a hosted page: the tenant and the CSRF-checked form; or the error page to show (unknown
        tenant, bad CSRF token). No transaction: the tenant's provider comes from its cache once filled."""
        provider = await self.provider(request)
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", NOT_FOUND, 404)
        try:
            return provider, await self.pages.read_form(request)
        except CsrfFailed as exc:
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)

    async def _render_sign_in(
        self, request: Request, provider: TenantProvider, interaction: Interaction, *, error: str | None = None,
        identifier: str = "", status: int = 200,
    ) -> Response:  # fmt: skip
        page, application = await run_in_threadpool(  # one read: the page and the application's name
            self.core.hosted_sign_in.application_page, provider.tenant_id, interaction.client_id
        )
        return await self.view.sign_in(
            request, provider.tenant_id, interaction_id=interaction.id, application=application, error=error,
            identifier=identifier, status=status, page=page,
        )  # fmt: skip

    # --- after a sign-in: one hop, one transaction ------------------------------------------------------------
    # The steps below are synchronous and run in the caller's unit of work (see Database.unit_of_work): a page
    # hands the whole decision (second factor? session, passkey offer, consent, code) to one worker thread and one
    # transaction, then renders the NextStep it gets back.

    def _complete_sync(self, provider: TenantProvider, interaction: Interaction, session: BrowserSession) -> NextStep:
        """Once the user is signed in: first-party applications get what they asked for; a third-party one
        needs the user's consent, asked once per set of scopes."""
        try:
            consent = provider.flow.describe(interaction)
            if consent.client.metadata.get("third_party") and not self.core.grants.has_consent(
                provider.tenant_id, session.user_id, consent.client.client_id, consent.scopes
            ):
                tenant = self.core.tenants.get(provider.tenant_id)
                return NextStep(consent=Consent(tenant, consent.client.name, consent.scopes, consent.permissions))
            return NextStep(location=self._approve_sync(provider, interaction, session, consent.scopes))
        except InteractionExpired as exc:
            return NextStep(error=exc)

    def _approve_sync(
        self, provider: TenantProvider, interaction: Interaction, session: BrowserSession, scopes: list[str]
    ) -> str:
        """Issue the code for what the application asked; returns where to send the browser."""
        return provider.flow.approve(
            interaction, user_id=session.user_id, auth_time=session.auth_time, scopes=scopes, acting_tenant_id=None,
            amr=session.amr, acr=acr_for_request(session.acr, interaction.params),
        )  # fmt: skip

    def with_session_sync(
        self, provider: TenantProvider, interaction: Interaction, session: BrowserSession
    ) -> NextStep:
        """An existing session approves this request only if it is enough for it (the policy changed since it
        started, or the application asks for MFA now: step-up); else the second factor comes first. Every path
        that approves a request with an existing session goes through here."""
        try:
            decision = self.core.mfa.for_session(provider.tenant_id, interaction.id, session)
        except IdpError as exc:  # required, and nothing the user can set up here
            return NextStep(error=exc)
        if decision.outcome != "complete":
            return NextStep(second_factor=decision)
        return self._complete_sync(provider, interaction, session)

    def started_sync(self, provider: TenantProvider, interaction: Interaction, raw: str) -> NextStep:
        """The session ``raw`` just started: offer a passkey, or finish the request."""
        session = self.core.sessions.get(raw)
        assert session is not None and session.tenant_id == provider.tenant_id
        offer = self.offer_passkey(provider.tenant_id, interaction.id, session.user_id) if self.offer_passkey else None
        step = NextStep(location=offer) if offer else self._complete_sync(provider, interaction, session)
        return replace(step, session=raw)

    def first_factor_done_sync(
        self, provider: TenantProvider, interaction: Interaction, user_id: str, amr: tuple[str, ...], *,
        device: str, previous_pending: str | None,
    ) -> NextStep:  # fmt: skip
        """After a first factor (``amr``: how the user proved who they are, RFC 8176): core.mfa decides whether the
        session starts now or a second factor (or its enrollment) comes first; a started session finishes the
        request. In the caller's unit of work: a sign-in calls this inside its own transaction."""
        try:
            decision = self.core.mfa.after_first_factor(
                provider.tenant_id, interaction.id, user_id, amr, device=device, previous_pending=previous_pending
            )
        except IdpError as exc:  # the policy requires a factor and none can be set up
            return NextStep(sign_in_error=exc)
        if decision.outcome != "complete":
            return NextStep(second_factor=decision)
        assert decision.session is not None
        return self.started_sync(provider, interaction, decision.session)

    async def respond(
        self, request: Request, provider: TenantProvider, interaction: Interaction, step: NextStep,
        device: str | None = None,
    ) -> Response:  # fmt: skip
        """The response for ``step``; a session that started sets its cookies (and the browser becomes, or stays,
        a known ``device`` of the user)."""
        if step.second_factor is not None:
            return self._to_second_factor(provider, interaction, step.second_factor)
        if step.sign_in_error is not None:
            exc = step.sign_in_error
            return await self._render_sign_in(request, provider, interaction, error=exc.message, status=exc.status)
        if step.error is not None:
            response = await self.pages.error_page(request, step.error.code, step.error.message, step.error.status)
        elif step.consent is not None:
            response = self._render_consent(request, interaction, step.consent)
        else:
            assert step.location is not None
            response = RedirectResponse(step.location, status_code=303)
        if step.session is not None:
            self.cookies.set_session(response, step.session, provider.tenant_id)
            if device is not None:
                self.cookies.set_device(response, device)
            self.cookies.clear_mfa_pending(response, provider.tenant_id)
        return response

    def _render_consent(self, request: Request, interaction: Interaction, consent: Consent) -> Response:
        # API permissions are named with their API and description; the others are OpenID scopes.
        api_permissions = {name for _, name, _ in consent.permissions}
        described = [
            SCOPE_DESCRIPTIONS.get(scope, scope)
            for scope in consent.scopes
            if scope != SCOPE_OPENID and scope not in api_permissions
        ]
        described += [f"{api}: {description or name} ({name})" for api, name, description in consent.permissions]
        return self.pages.render(
            request, "hosted_consent.html", tenant=consent.tenant, client_name=consent.client_name, scopes=described,
            interaction_id=interaction.id,
        )  # fmt: skip

    async def consent_submit(self, request: Request) -> Response:
        posted = await self.posted(request)
        if isinstance(posted, Response):
            return posted
        provider, form = posted
        approve = form.get("action") == "approve"
        tenant_id = provider.tenant_id
        session_id = self.cookies.session_id(request, tenant_id)

        def decide() -> tuple[Interaction | None, BrowserSession | None, NextStep | None]:
            # One transaction: the interaction and session, the second-factor check, and the code (or the denial).
            with self.core.db.unit_of_work(writes=True):
                interaction = self.core.sessions.get_interaction(request.path_params["id"][:MAX_FIELD])
                if interaction is None or interaction.tenant_id != tenant_id:
                    return None, None, None
                session = self.core.sessions.get(session_id)
                if session is None or session.tenant_id != tenant_id:
                    return interaction, None, None
                if not approve:
                    try:
                        return interaction, session, NextStep(location=provider.flow.deny(interaction))
                    except InteractionExpired as exc:
                        return interaction, session, NextStep(error=exc)
                step = self.core.mfa.for_session(tenant_id, interaction.id, session)
                if step.outcome != "complete":
                    return interaction, session, NextStep(second_factor=step)
                try:
                    consent = provider.flow.describe(interaction)
                    location = self._approve_sync(provider, interaction, session, consent.scopes)
                except InteractionExpired as exc:
                    return interaction, session, NextStep(error=exc)
                return interaction, session, NextStep(location=location)

        try:
            interaction, session, step = await run_in_threadpool(decide)
        except IdpError as exc:  # a second factor is required, and nothing the user can set up here
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)
        if interaction is None:
            return await self.pages.error_page(request, "interaction.expired", EXPIRED, 410)
        if session is None or step is None:
            return await self._render_sign_in(request, provider, interaction)
        return await self.respond(request, provider, interaction, step)

    async def interaction_page(self, request: Request) -> Response:
        tenant_id = request.path_params["tenant"]
        session_id = self.cookies.session_id(request, tenant_id)

        def decide() -> tuple[InteractionPage, NextStep | None]:
            # One hop, one transaction: the page's data (tenant, experience, interaction, application, session);
            # a browser signed in already goes on as the flow decides, in the same transaction (a write: the code).
            with self.core.db.unit_of_work(writes=session_id is not None):
                found = self.core.hosted_sign_in.interaction_page(tenant_id, request.path_params["id"], session_id)
                interaction, session = found.interaction, found.session
                if interaction is None or session is None or self._must_sign_in(session, interaction):
                    return found, None
                return found, self.with_session_sync(self.providers.get(tenant_id), interaction, session)

        try:
            found, step = await run_in_threadpool(decide)
        except TenantNotFound:
            return self.view.error(request, None, "tenant.not_found", NOT_FOUND, 404)
        interaction = found.interaction
        if interaction is None:
            return self.view.error(request, found.page, "interaction.expired", EXPIRED, 410)
        if step is None:
            return await self.view.sign_in(
                request, tenant_id, interaction_id=interaction.id, application=found.application, page=found.page
            )
        provider = await self.provider(request)  # cached by now: the flow above used it
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", "This sign-in page does not exist.", 404)
        return await self.respond(request, provider, interaction, step)

    def _must_sign_in(self, session: BrowserSession, interaction: Interaction) -> bool:
        """prompt=login, or a session older than max_age (OIDC Core §3.1.2.1): the user signs in again."""
        prompts = " ".join(interaction.params.get("prompt", [])).split()
        return "login" in prompts or self._too_old(session, interaction)

    def _too_old(self, session: BrowserSession, interaction: Interaction) -> bool:
        """OIDC Core §3.1.2.1 max_age: the user signs in again when the session's sign-in is older."""
        values = interaction.params.get("max_age") or []
        raw = values[0] if isinstance(values, list) and values else values
        if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 10:
            return False
        return (self.core.clock() - as_utc(session.auth_time)).total_seconds() > int(raw)

    async def sign_in_submit(self, request: Request) -> Response:
        posted = await self.posted(request)
        if isinstance(posted, Response):
            return posted
        provider, form = posted
        tenant_id = provider.tenant_id
        identifier = (form.get("identifier") or "")[:MAX_FIELD]
        password = (form.get("password") or "")[:MAX_FIELD]
        known_device = self.cookies.device_id(request)
        device = self.cookies.device_for_sign_in(request)
        previous = self.cookies.mfa_pending(request, tenant_id)
        sign_in = self.core.hosted_sign_in

        def attempt() -> tuple[Interaction, NextStep | IdpError | tuple[Connector, PendingLogin]] | None:
            # Two transactions, with Argon2id between them and outside both (see TRANSACTION_BUDGETS): the request,
            # home-realm discovery, the account and the attempt's count; then the sign-in, the session and the code.
            with self.core.db.unit_of_work(writes=True):
                interaction = self.interaction_sync(provider, form.get("interaction") or "")
                if interaction is None:
                    return None
                if self.home_realm is not None:  # an enterprise connector's domain: its sign-in starts, no password
                    upstream = self.core.connectors.start_for_email(tenant_id, identifier.strip(), interaction.id)
                    if upstream is not None:
                        return interaction, upstream
                try:  # only the identifiers the tenant's sign-in experience allows with a password
                    begun = sign_in.begin_password(
                        tenant_id, identifier, password, client_address=client_host(request), device=known_device
                    )
                except IdpError as exc:
                    return interaction, exc
            try:
                return interaction, sign_in.finish_password(
                    begun, password,
                    lambda user: self.first_factor_done_sync(
                        provider, interaction, user.id, (AMR_PASSWORD,), device=device, previous_pending=previous
                    ),
                )  # fmt: skip
            except IdpError as exc:
                return interaction, exc

        attempted = await run_in_threadpool(attempt)
        if attempted is None:
            return await self.pages.error_page(request, "interaction.expired", EXPIRED, 410)
        interaction, outcome = attempted
        if isinstance(outcome, tuple):
            assert self.home_realm is not None
            return await self.home_realm(request, provider, *outcome)
        if isinstance(outcome, IdpError):
            return await self._render_sign_in(
                request, provider, interaction, error=outcome.message, identifier=identifier, status=outcome.status
            )
        return await self.respond(request, provider, interaction, outcome, device)

    def _to_second_factor(self, provider: TenantProvider, interaction: Interaction, decision: MfaDecision) -> Response:
        """To the second-factor page (challenge or enrollment), with the partial sign-in's cookie."""
        assert decision.pending is not None
        response = RedirectResponse(f"/t/{provider.tenant_id}/interaction/{interaction.id}/mfa", status_code=303)
        self.cookies.set_mfa_pending(response, decision.pending, provider.tenant_id, int(PENDING_TTL.total_seconds()))
        return response

    async def end_session(self, request: Request) -> Response:
        """RP-initiated logout: end the tenant session, then return to a registered post-logout URI.

        A request with a valid ``id_token_hint`` (signed by this tenant, for the signed-in user) proceeds at once.
        Without one anyone could sign the user out with a link or an image (logout CSRF), so the user is asked to
        confirm first (OpenID RP-Initiated Logout 1.0 §2, §6): a form posted back here with the page's CSRF token.
        """
        provider = await self.provider(request)
        if provider is None:
            return await self.pages.error_page(request, "tenant.not_found", "This page does not exist.", 404)
        params = {k: v[:MAX_LOGOUT_FIELD] for k, v in request.query_params.items() if "\x00" not in v}
        confirmed = False
        if request.method == "POST":
            form = await request.form()
            params.update({k: v for k, v in form.items() if isinstance(v, str) and "\x00" not in v})
            confirmed = params.get("confirm") == "yes"
        forged: CsrfFailed | None = None
        if confirmed:
            try:
                self.cookies.check_csrf(request, params.get("csrf_token"))
            except CsrfFailed as exc:
                forged = exc
        session_id = self.cookies.session_id(request, provider.tenant_id)
        try:
            logout = await run_in_threadpool(
                lambda: provider.flow.end_session(
                    session_id, id_token_hint=params.get("id_token_hint"), client_id=params.get("client_id"),
                    uri=params.get("post_logout_redirect_uri"), confirmed=confirmed, forged=forged,
                )
            )  # fmt: skip
        except IdpError as exc:
            return await self.pages.error_page(request, exc.code, exc.message, exc.status)
        if logout.ask:
            return self._confirm_logout(request, provider, params)
        target = logout.target
        if target:
            state = params.get("state")
            location = f"{target}{'&' if '?' in target else '?'}{urlencode({'state': state})}" if state else target
            response: Response = RedirectResponse(location, status_code=303)
        else:
            response = self.pages.render(request, "signed_out.html")
        self.cookies.clear_session(response, provider.tenant_id)
        return response

    def _confirm_logout(self, request: Request, provider: TenantProvider, params: dict[str, str]) -> Response:
        carried = {k: params[k] for k in LOGOUT_FIELDS if params.get(k)}
        return self.pages.render(
            request, "confirm_sign_out.html", action=f"/t/{provider.tenant_id}/oidc/end-session", fields=carried
        )
